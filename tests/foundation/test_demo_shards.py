"""`make status` and `make demo-stop` with the demo's streaming job in two shard processes
(STREAM_SHARDS=2), on a private state folder: each shard is listed on its own row with its metrics
address, pid and state, and demo-stop stops every shard, also after STREAM_SHARDS changed (the demo
remembers how many it started).

The shards' processes are real processes that serve /metrics on the shard's port, not Spark: the
tooling reads pid files and probes ports (two Spark drivers would take minutes and most of the cores).
That `make demo` starts each shard with `--shards 2 --shard i` and its own pid file and log is checked on
the commands it runs; the supervisor's tests start a shard's real command."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
from dataclasses import asdict
from pathlib import Path

from devstack.demo import DemoPlan, processes
from devstack.process import port_open, spawn, wait_until
from spark_streaming.settings import StreamingSettings
from tests.conftest import free_ports
from tests.foundation.private_stack import PYTHON, make, private_env

SERVE = (
    "import sys, time; from prometheus_client import start_http_server; "
    "start_http_server(int(sys.argv[1]), addr='127.0.0.1'); time.sleep(300)"
)
SHARDS = ("stream-s0of2", "stream-s1of2")


def _rows(output: str) -> dict[str, tuple[str, str, str]]:
    """`make status`'s rows by service: (address, pid, state)."""
    rows = {}
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip("│┃ ").split("│")]
        if len(cells) >= 4 and cells[0].startswith("stream"):  # service, address, pid, state, memory
            rows[cells[0]] = (cells[1], cells[2], cells[3])
    return rows


def _serve_metrics(home: Path, name: str, port: int) -> int:
    """A process in the shard's pid file serving /metrics on its port; reaped when it ends."""
    pid = spawn([PYTHON, "-c", SERVE, str(port)], home / name / f"{name}.log", home / name / f"{name}.pid")
    threading.Thread(target=lambda: os.waitpid(pid, 0), daemon=True).start()
    return pid


def test_demo_starts_one_process_per_shard_with_its_own_pid_file_log_and_port():
    one = processes(DemoPlan(stream_shards=1))
    two = processes(DemoPlan(stream_shards=2))
    assert list(one) == ["stream", "ticks", "dashboard"]  # as before sharding
    assert list(two) == [*SHARDS, "ticks", "dashboard"]
    first, second = (two[name] for name in SHARDS)
    assert [p.args[p.args.index("--shards") :][:4] for p in (first, second)] == [
        ["--shards", "2", "--shard", "0"],
        ["--shards", "2", "--shard", "1"],
    ]
    assert "--shard" not in one["stream"].args
    assert one["stream"].pid_file.parent.name == "stream"  # .state/demo/stream/stream.pid, as before
    assert len({p.pid_file for p in (first, second, one["stream"])}) == 3
    assert len({p.log_file for p in (first, second, one["stream"])}) == 3
    port = StreamingSettings().metrics_port
    step = StreamingSettings().shard_port_step
    assert [p.address for p in (one["stream"], first, second)] == [
        f"127.0.0.1:{port}",
        f"127.0.0.1:{port}",
        f"127.0.0.1:{port + step}",
    ]


def test_status_lists_each_shard_and_demo_stop_stops_them_all(tmp_path):
    base, other = sorted(free_ports(2))
    ports = {"stream-s0of2": base, "stream-s1of2": other}
    state = tmp_path / "state"
    env = private_env(
        state,
        STREAM_SHARDS="2",
        STREAM_METRICS_PORT=str(base),
        STREAM_SHARD_PORT_STEP=str(other - base),
        COLUMNS="200",
    )
    home = state / "demo"
    pids = {name: _serve_metrics(home, name, port) for name, port in ports.items()}
    try:
        assert wait_until(lambda: all(port_open("127.0.0.1", p) for p in ports.values()), 30)
        status = make(env, "status")
        assert status.returncode == 0, status.stderr
        assert _rows(status.stdout) == {
            name: (f"127.0.0.1:{ports[name]}", str(pids[name]), "healthy") for name in SHARDS
        }, status.stdout

        os.kill(pids["stream-s1of2"], signal.SIGKILL)  # one shard dies: its row says so, the other's not
        assert wait_until(lambda: not port_open("127.0.0.1", other), 10)
        status = make(env, "status")
        assert {name: row[2] for name, row in _rows(status.stdout).items()} == {
            "stream-s0of2": "healthy",
            "stream-s1of2": "stopped",
        }, status.stdout

        # the demo remembers its shards: demo-stop stops them though STREAM_SHARDS changed since
        (home / "plan.json").write_text(json.dumps(asdict(DemoPlan(stream_shards=2))))
        pids["stream-s1of2"] = _serve_metrics(home, "stream-s1of2", other)
        stop = make({**env, "STREAM_SHARDS": "1"}, "demo-stop")
        assert stop.returncode == 0, stop.stderr
        assert "stopped: stream-s0of2, stream-s1of2" in " ".join(stop.stderr.split()), stop.stderr
        assert not any((home / name / f"{name}.pid").exists() for name in SHARDS)
        assert wait_until(lambda: not any(port_open("127.0.0.1", p) for p in ports.values()), 10)
    finally:
        for pid in pids.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
