"""`make chaos`, short form (issue 12): the whole demo on a private stack, each part broken in turn.

A second stack of its own (PostgreSQL server, Kafka broker, Prometheus with the project's alert rules,
the PostgreSQL exporter, statsd_exporter, Airflow, the demo's ingest, streaming job and dashboard), on
free loopback ports and a state folder of its own, started by the same commands a user runs:
`devstack up`, `devstack demo` (smaller than the default), `devstack airflow --unpause`, then
`devstack chaos` with short holds:

  kafka      stopped 30 s           TargetDown seen (pending or firing), cleared after the restart
  stream     SIGKILL, 15 s          TargetDown seen; started again (by the supervisor DAG or by
                                    chaos), caught up
  postgres   stopped 35 s           PostgresDown seen (its `for` is 30 s: often firing), cleared
  scheduler  SIGKILL, 15 s          started again; its alert needs a flat heartbeat for 2 minutes,
                                    longer than this hold: `make chaos` holds it 210 s

Afterwards chaos's accounting must find every offset written to the ticks topic during the run in
raw.ticks or raw.dead_letters exactly once (or a duplicate of a landed tick, dropped by design),
nothing lost, and every closed 1-minute bar equal to its ticks; every Prometheus target is up again.
The alerts' `for` durations are proven by `promtool test rules` (tests/foundation/test_alert_rules.py);
the full-length run with every alert firing is `make chaos` (figures in docs/OPERATIONS.md).
About 8 minutes on 2 cores (Airflow starts while the demo runs).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from common.settings import stack_settings
from devstack.process import wait_until
from tests.conftest import free_ports
from tests.foundation.private_stack import devstack, private_env

pytestmark = pytest.mark.slow

HOLDS = {"kafka": 30, "stream": 15, "postgres": 35, "scheduler": 15}
ALERT_SEEN = {"kafka", "stream", "postgres"}  # TargetDown, TargetDown, PostgresDown: active within a scrape


def _check(result, what: str) -> None:
    assert result.returncode == 0, (
        f"{what} failed (exit {result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )


def _targets(prometheus_port: int) -> dict[str, str]:
    url = f"http://127.0.0.1:{prometheus_port}/api/v1/targets?state=active"
    with urllib.request.urlopen(url, timeout=5) as resp:
        body = json.load(resp)
    return {t["labels"]["job"]: t["health"] for t in body["data"]["activeTargets"]}


def test_chaos_short_form_loses_nothing_and_alerts(tmp_path):
    # not under pytest's tmp folder: the postgres user must traverse the path to its data directory
    state = Path(tempfile.mkdtemp(prefix="chaos-", dir="/tmp"))
    state.chmod(0o755)
    (state / "bin").symlink_to(stack_settings().state_dir.resolve() / "bin")  # statsd_exporter (make setup)
    ingest, stream, api, statsd, statsd_exporter, dashboard, dashboard_metrics = free_ports(7)
    env = private_env(
        state,
        INGEST_METRICS_PORT=str(ingest),
        STREAM_METRICS_PORT=str(stream),
        AF_API_PORT=str(api),
        AF_STATSD_PORT=str(statsd),
        AF_STATSD_EXPORTER_PORT=str(statsd_exporter),
        DASHBOARD_PORT=str(dashboard),
        DASHBOARD_METRICS_PORT=str(dashboard_metrics),
    )
    report = tmp_path / "chaos.json"
    try:
        _check(devstack(env, "up", timeout=300), "devstack up")
        with ThreadPoolExecutor(1) as pool:  # Airflow starts while the demo runs (both need the stack only)
            airflow = pool.submit(devstack, env, "airflow", "--unpause", timeout=600)
            demo = devstack(
                env, "demo", "--symbols", "5", "--history-days", "210", "--rate", "200", timeout=600
            )
            _check(demo, "devstack demo")
            _check(airflow.result(), "devstack airflow")
        assert "live ticks on the dashboard" in demo.stdout + demo.stderr, demo.stderr[-2000:]
        holds = [arg for name, s in HOLDS.items() for arg in ("--hold", f"{name}={s}")]
        chaos = devstack(env, "chaos", *holds, "--report", str(report), timeout=1_800)
        _check(chaos, "devstack chaos")

        result = json.loads(report.read_text())
        faults = {f["name"]: f for f in result["faults"]}
        assert set(faults) == set(HOLDS)
        for name, fault in faults.items():
            assert fault["back_after_s"] is not None, f"{name} never came back"
            assert fault["caught_up_after_s"] is not None, f"the stream never caught up after {name}"
            assert fault["alert_cleared"], f"{fault['expected_alert']} still active after {name}"
        for name in ALERT_SEEN:
            assert faults[name]["alert_pending_after_s"] is not None, (
                f"{faults[name]['expected_alert']} never became active while {name} was down"
            )
        acc = result["accounting"]
        assert acc["written"] > 0 and acc["landed_once"] > 0
        assert acc["lost"] == 0 and acc["landed_twice"] == 0, acc
        assert acc["bars_checked"] > 0 and acc["bars_differing"] == 0, acc
        # chaos resumed ingest at its end: every target answers again within a few scrapes
        port = int(env["PROMETHEUS_PORT"])
        all_up = wait_until(lambda: all(h == "up" for h in _targets(port).values()), 90, interval_s=2.0)
        assert all_up, _targets(port)
        jobs = {"prometheus", "kafka", "postgres", "ingest", "stream", "dashboard", "airflow"}
        assert set(_targets(port)) == jobs
    finally:
        devstack(env, "demo-stop", timeout=120)
        devstack(env, "down", timeout=300)
        shutil.rmtree(state, ignore_errors=True)
