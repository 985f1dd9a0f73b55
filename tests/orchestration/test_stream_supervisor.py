"""stream_supervisor (through `airflow dags test`) leaves a healthy streaming job alone and restarts one
the test killed with SIGKILL; the restarted job beats again."""

from __future__ import annotations

import json
import os
import signal
import time

import psutil
import pytest

from orchestration.settings import AirflowSettings
from orchestration.stream_supervisor import stream_process, supervise

pytestmark = pytest.mark.slow


def _beat(af) -> float | None:
    rows = af.pipeline(
        "select extract(epoch from beat_at) from rt.stream_heartbeat where query_name = %s",
        (af.settings.stream_query_name,),
    )
    return float(rows[0][0]) if rows else None


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_supervisor_leaves_a_healthy_job_alone_and_restarts_a_killed_one(airflow_instance):
    af = airflow_instance
    job = stream_process(af.settings)
    restarts = job.home / "restarts.jsonl"
    started = time.time()
    job.start()
    try:
        assert af.wait_for(lambda: (_beat(af) or 0) > started, 240, 2.0), "the job never beat"
        # past the supervisor's start grace (5 s here), judged on its heartbeat and lag
        assert af.wait_for(lambda: time.time() - job.pid_file.stat().st_mtime > 6, 30)
        pid1 = job.pid()
        proc, _, states = af.dags_test("stream_supervisor")
        assert states == {"check_and_restart": "success"}, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert job.pid() == pid1 and not restarts.exists()

        os.kill(pid1, signal.SIGKILL)
        assert af.wait_for(lambda: not _alive(pid1), 30)
        killed_at = time.time()
        before = af.alerts("stream_restart", "stream_supervisor")
        proc, _, states = af.dags_test("stream_supervisor")
        assert states == {"check_and_restart": "success"}, proc.stdout[-3000:] + proc.stderr[-3000:]
        pid2 = job.pid()
        assert pid2 and pid2 != pid1 and _alive(pid2)
        (line,) = restarts.read_text().splitlines()
        assert json.loads(line)["verdict"] == "dead" and json.loads(line)["pid"] == pid2
        assert af.wait_for(lambda: af.alerts("stream_restart", "stream_supervisor") > before, 30)
        assert af.wait_for(lambda: (_beat(af) or 0) > killed_at, 240, 2.0), "the restarted job never beat"
    finally:
        job.stop()


def test_a_job_stopped_on_purpose_is_left_alone(stack, tmp_path):
    """`make demo-stop` removes the pid file: no pid file means stopped on purpose, not crashed."""
    settings = AirflowSettings(
        stream_home=tmp_path, stream_checkpoint_dir=tmp_path / "checkpoint", stream_query_name="never_started"
    )
    report = supervise(settings)
    assert (report.verdict, report.action) == ("stopped", "none")
    assert stream_process(settings).pid() is None and not (tmp_path / "stream" / "restarts.jsonl").exists()
