"""stream_supervisor (through `airflow dags test`) leaves a healthy streaming job alone and restarts one
the test killed with SIGKILL; the restarted job beats again.

With the job in two shards (AF_STREAM_SHARDS=2), each shard is judged on its own heartbeat row, ledger,
checkpoint and Kafka partitions, and only a failed shard is restarted, within its own hourly cap. Those
tests write the heartbeat and ledger rows into a private database and the offset log into the shard's
checkpoint folder as the job does, and put real processes (a sleeping `sleep`) in the shards' pid files:
the supervisor reads pids, rows, files and Kafka's end offsets, so no Spark needs to run; a restart
starts the real job command, which the test stops at once."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
import uuid
from pathlib import Path

import psutil
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from common.contract import Topic
from common.db import transaction
from common.migrate import drop_database, recreate_database
from common.settings import PostgresSettings
from devstack.demo import Background
from devstack.process import spawn
from orchestration.settings import AirflowSettings
from orchestration.stream_supervisor import (
    HEALTHY,
    HUNG,
    STUCK,
    judge,
    observe,
    shards,
    stream_process,
    supervise,
)
from tests.conftest import free_ports
from tests.spark_streaming.helpers import private_topics

SHARDS_DATABASE = "market_supervisor_test"


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


@pytest.mark.slow
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
    (report,) = supervise(settings)
    assert (report.verdict, report.action) == ("stopped", "none")
    assert stream_process(settings).pid() is None and not (tmp_path / "stream" / "restarts.jsonl").exists()


# --- two shards ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shards_db(stack) -> PostgresSettings:
    pg = recreate_database(SHARDS_DATABASE)
    yield pg
    drop_database(pg)


@pytest.fixture
def shard_topics(bootstrap_servers, monkeypatch) -> dict[Topic, str]:
    """Private copies of the job's three topics (the contract's partition counts), which the job's
    settings name (STREAM_*_TOPIC) for the supervisor and for the shard rule."""
    names = private_topics(bootstrap_servers, f"sup.{uuid.uuid4().hex[:8]}")
    monkeypatch.setenv("STREAM_TICKS_TOPIC", names[Topic.TICKS])
    monkeypatch.setenv("STREAM_BARS_TOPIC", names[Topic.BARS])
    monkeypatch.setenv("STREAM_DEADLETTER_TOPIC", names[Topic.DEADLETTER])
    yield names
    AdminClient({"bootstrap.servers": bootstrap_servers}).delete_topics(list(names.values()))


def _two_shards(tmp_path: Path, pg: PostgresSettings, name: str) -> AirflowSettings:
    statsd, metrics = free_ports(2)  # alerts go to a port nobody reads; a restarted shard's metrics
    return AirflowSettings(
        stream_shards=2,
        stream_query_name=name,
        stream_home=tmp_path / "demo",
        stream_checkpoint_dir=tmp_path / "checkpoints" / name,
        stream_database=pg.database,
        stream_metrics_port=metrics,
        statsd_port=statsd,
        stream_start_grace_s=0,
    )


def _heartbeat_row(
    pg: PostgresSettings, query_name: str, beat_age_s: float, batch_id: int | None = None, batch_age_s=None
) -> None:
    """The shard's heartbeat row, and its ledger row of `batch_id`, as the job's sink writes them."""
    query_id = f"id-{query_name}"
    with transaction("writer", pg) as cur:
        cur.execute(
            "insert into rt.stream_heartbeat (query_name, query_id, last_batch_id, last_batch_at, beat_at,"
            " status) values (%s, %s, %s, now() - make_interval(secs => %s),"
            " now() - make_interval(secs => %s), 'running')"
            " on conflict (query_name) do update set beat_at = excluded.beat_at,"
            " last_batch_at = excluded.last_batch_at, last_batch_id = excluded.last_batch_id",
            (query_name, query_id, batch_id, batch_age_s, beat_age_s),
        )
        if batch_id is not None:
            cur.execute(
                "insert into rt.stream_ledger (query_id, batch_id, query_name, input_rows, tick_rows,"
                " dead_rows) values (%s, %s, %s, 0, 0, 0)",
                (query_id, batch_id, query_name),
            )


def _offset_log(checkpoint: Path, batch_id: int, ends: dict[str, dict[int, int]]) -> None:
    """offsets/<batch id> as Spark writes it: a version, the batch's metadata, the source's end offsets."""
    folder = checkpoint / "offsets"
    folder.mkdir(parents=True, exist_ok=True)
    source = {topic: {str(p): o for p, o in parts.items()} for topic, parts in ends.items()}
    meta = {"batchWatermarkMs": 0, "batchTimestampMs": 0, "conf": {}}
    (folder / str(batch_id)).write_text(f"v1\n{json.dumps(meta)}\n{json.dumps(source)}\n")


def _sleeper(proc: Background) -> int:
    """A real process in the shard's pid file, reaped by a thread when it ends (as init would)."""
    proc.home.mkdir(parents=True, exist_ok=True)
    pid = spawn(["sleep", "300"], proc.log_file, proc.pid_file)
    threading.Thread(target=_reap, args=(pid,), daemon=True).start()
    return pid


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):  # already reaped by psutil's wait in a stop
        os.waitpid(pid, 0)


def _dead(proc: Background) -> int:
    """A pid file naming a process that has exited: the shard crashed."""
    proc.home.mkdir(parents=True, exist_ok=True)
    pid = spawn(["true"], proc.log_file, proc.pid_file)
    # spawn drops its Popen: another thread's next Popen may reap the exited child first (subprocess's
    # _cleanup), and then waitpid finds no child (seen in a full run). Gone either way.
    _reap(pid)
    return pid


def _cap_reached(proc: Background, times: int) -> None:
    proc.home.mkdir(parents=True, exist_ok=True)
    with (proc.home / "restarts.jsonl").open("a") as fh:
        for _ in range(times):
            fh.write(json.dumps({"at": time.time(), "verdict": "dead", "reason": "test", "pid": 1}) + "\n")


def test_each_shard_is_judged_on_its_own_heartbeat_and_partitions(
    shards_db, shard_topics, bootstrap_servers, tmp_path
):
    s = _two_shards(tmp_path, shards_db, "judged")
    first, second = shards(s)
    assert [sh.query_name for sh in (first, second)] == ["judged-s0of2", "judged-s1of2"]
    ticks, bars, dead = (shard_topics[t] for t in (Topic.TICKS, Topic.BARS, Topic.DEADLETTER))
    out = Producer({"bootstrap.servers": bootstrap_servers})
    for partition in (0, 1):  # one record on shard 0's partition 0, one on shard 1's partition 1
        out.produce(ticks, b"x", partition=partition)
    assert out.flush(10) == 0
    # shard 0's last batch ended before its record, shard 1's after its own; both batches 10 min old
    _offset_log(first.checkpoint_dir, 3, {ticks: {0: 0, 2: 0, 4: 0}, bars: {0: 0, 2: 0}, dead: {0: 0}})
    _offset_log(second.checkpoint_dir, 5, {ticks: {1: 1, 3: 0, 5: 0}, bars: {1: 0}})
    _heartbeat_row(shards_db, first.query_name, beat_age_s=1, batch_id=3, batch_age_s=600)
    _heartbeat_row(shards_db, second.query_name, beat_age_s=1, batch_id=5, batch_age_s=600)
    procs = [stream_process(s, sh) for sh in (first, second)]
    for proc in procs:
        _sleeper(proc)
    try:
        seen = [observe(s, shard=sh) for sh in (first, second)]
        assert [o.last_batch_id for o in seen] == [3, 5]
        # shard 1 is idle, not stuck: the record on partition 0 is shard 0's to read
        assert [o.lag for o in seen] == [1, 0], [o.lag_by_topic for o in seen]
        assert [judge(o, s)[0] for o in seen] == [STUCK, HEALTHY]

        _heartbeat_row(shards_db, second.query_name, beat_age_s=600, batch_id=None, batch_age_s=600)
        seen = [observe(s, shard=sh) for sh in (first, second)]
        assert [judge(o, s)[0] for o in seen] == [STUCK, HUNG]
    finally:
        for proc in procs:
            proc.stop()


def test_only_the_hung_shard_is_restarted_within_its_own_cap(shards_db, tmp_path):
    s = _two_shards(tmp_path, shards_db, "restarted")
    first, second = shards(s)
    healthy, hung = (stream_process(s, sh) for sh in (first, second))
    _heartbeat_row(shards_db, first.query_name, beat_age_s=1)
    _heartbeat_row(shards_db, second.query_name, beat_age_s=600)
    _cap_reached(healthy, s.stream_max_restarts_per_hour)  # shard 0's cap, not shard 1's
    pid0, pid1 = _sleeper(healthy), _sleeper(hung)
    try:
        reports = supervise(s)
        new_pid = hung.pid()
        assert [(r.query_name, r.verdict, r.action) for r in reports] == [
            ("restarted-s0of2", HEALTHY, "none"),
            ("restarted-s1of2", HUNG, "restarted"),
        ], [r.reason for r in reports]
        assert healthy.pid() == pid0
        assert new_pid and new_pid != pid1 and reports[1].new_pid == new_pid
        assert not psutil.pid_exists(pid1) or psutil.Process(pid1).status() == psutil.STATUS_ZOMBIE
        cmd = psutil.Process(new_pid).cmdline()
        assert cmd[cmd.index("--shards") :][:4] == ["--shards", "2", "--shard", "1"], cmd
        assert cmd[cmd.index("--query-name") + 1] == "restarted"  # the job adds the shard's suffix
        (line,) = (hung.home / "restarts.jsonl").read_text().splitlines()
        assert json.loads(line)["verdict"] == HUNG and json.loads(line)["pid"] == new_pid
        assert len((healthy.home / "restarts.jsonl").read_text().splitlines()) == 3
    finally:
        hung.stop()  # the real job, stopped before it gets far
        healthy.stop()


def test_a_dead_shard_past_its_own_cap_is_left_alone_the_other_untouched(shards_db, tmp_path):
    s = _two_shards(tmp_path, shards_db, "capped")
    first, second = shards(s)
    dead, healthy = (stream_process(s, sh) for sh in (first, second))
    _heartbeat_row(shards_db, first.query_name, beat_age_s=1)
    _heartbeat_row(shards_db, second.query_name, beat_age_s=1)
    _cap_reached(dead, s.stream_max_restarts_per_hour)
    _dead(dead)
    pid1 = _sleeper(healthy)
    try:
        reports = supervise(s)
        assert [(r.verdict, r.action) for r in reports] == [("dead", "capped"), (HEALTHY, "none")]
        assert dead.pid() is None and healthy.pid() == pid1
        assert not (healthy.home / "restarts.jsonl").exists()
    finally:
        healthy.stop()
