"""A DeadlineAlert that is missed fires its callback through the running scheduler and its executor:
the alert module counts it (a 5 s deadline on a run the test holds open until then)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_a_missed_deadline_fires_the_alert_callback(airflow_instance):
    af = airflow_instance
    release = af.settings.home / "deadline_probe.release"
    release.unlink(missing_ok=True)
    known = af.wait_for(
        lambda: af.metadata("select 1 from dag where dag_id = 'deadline_probe' and not is_stale"), 120
    )
    assert known, "the dag-processor did not parse deadline_probe"
    assert af.cli("dags", "unpause", "deadline_probe").returncode == 0
    before = af.alerts("deadline", "deadline_probe")
    trigger = af.cli("dags", "trigger", "deadline_probe")
    assert trigger.returncode == 0, trigger.stderr[-2000:]
    try:
        fired = af.wait_for(lambda: af.alerts("deadline", "deadline_probe") > before, 120)
        assert fired, "the deadline callback did not count an alert within 120 s"
        run_id, state = af.latest_run("deadline_probe")
        assert state == "running", "the alert came while the run was still going"
        missed = af.metadata(
            "select d.missed from deadline d join dag_run r on r.id = d.dagrun_id"
            " where r.dag_id = 'deadline_probe' and r.run_id = %s",
            (run_id,),
        )
        assert missed == [(True,)]
    finally:
        release.touch()
    assert af.wait_for(lambda: af.latest_run("deadline_probe")[1] == "success", 120)
    af.cli("dags", "pause", "deadline_probe")
