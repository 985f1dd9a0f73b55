"""The job's Spark session in this process: checkpoint files written without a forked chmod, and one
progress listener per run of a job (a session that runs jobs in turns keeps none of the earlier ones)."""

from __future__ import annotations

import shutil
import subprocess
import time

import psutil
import pytest

from common.settings import postgres_settings
from spark_streaming.job import StreamingJob, build_session
from spark_streaming.metrics import StreamingMetrics
from spark_streaming.settings import StreamingSettings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def spark():
    session = build_session(StreamingSettings())
    yield session
    session.stop()


def _driver_jvm() -> psutil.Process:
    return next(c for c in psutil.Process().children(recursive=True) if c.name() == "java")


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace to see the JVM's exec calls")
def test_a_checkpointed_query_runs_batches_without_the_driver_jvm_starting_a_process(spark, tmp_path):
    batches: list[int] = []
    query = (
        spark.readStream.format("rate")
        .option("rowsPerSecond", 50)
        .load()
        .writeStream.foreachBatch(lambda df, batch_id: batches.append(batch_id))
        .option("checkpointLocation", str(tmp_path / "ckpt"))
        .trigger(processingTime="200 milliseconds")
        .start()
    )
    try:
        deadline = time.monotonic() + 120
        while len(batches) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        trace = tmp_path / "strace.txt"
        tracer = subprocess.Popen(
            [
                "strace",
                "-f",
                "-qq",
                "-e",
                "trace=execve,vfork,clone3",
                "-o",
                str(trace),
                "-p",
                str(_driver_jvm().pid),
            ]
        )
        seen = len(batches)
        while len(batches) < seen + 5 and time.monotonic() < deadline:
            time.sleep(0.2)
        tracer.terminate()
        tracer.wait(30)
    finally:
        query.stop()
    assert len(batches) >= seen + 5  # offset and commit logs were written meanwhile
    execs = [line for line in trace.read_text().splitlines() if "execve(" in line]
    # a process the JVM starts goes through jspawnhelper. Hadoop's RawLocalFileSystem starts chmod for
    # every offset- and commit-log file: at least 2 per batch, 10 or more here. An occasional process
    # that is not per batch (a CI run once saw one: Hadoop refreshing the user's groups through a shell
    # every 300 s is a likely source) must not fail the test, so it counts starts against batches.
    spawned = [line for line in execs if "jspawnhelper" in line]
    assert len(spawned) < 5, "\n".join(execs)
    offsets = sorted((tmp_path / "ckpt" / "offsets").iterdir())
    assert oct(offsets[-1].stat().st_mode & 0o777) == "0o644"  # the bits Hadoop's chmod gave


def test_a_job_run_leaves_no_progress_listener_behind(spark, tmp_path):
    manager = spark.streams._jsqm
    before = len(manager.listListeners())
    for run in range(2):
        settings = StreamingSettings(checkpoint_dir=tmp_path / f"ckpt{run}", metrics_port=0)
        job = StreamingJob(settings, postgres_settings(), StreamingMetrics())
        job.stop()  # asked to stop before it starts: run_forever adds its listener and returns
        assert job.run_forever(spark) == 0
        assert len(manager.listListeners()) == before
