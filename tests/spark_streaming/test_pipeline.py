"""The pipelined sink's writer: batches in order, one in flight, a failure surfaces at the next batch."""

from __future__ import annotations

import threading

import pytest

from spark_streaming.pipeline import SinkPipeline


def test_batches_are_written_in_order_one_at_a_time():
    pipeline = SinkPipeline()
    written, in_flight, most = [], [0], [0]
    lock = threading.Lock()

    def write(i: int) -> None:
        with lock:
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
        threading.Event().wait(0.002)
        written.append(i)
        with lock:
            in_flight[0] -= 1

    for i in range(50):
        pipeline.submit(lambda i=i: write(i))
    pipeline.close()
    assert written == list(range(50))
    assert most[0] == 1


def test_submit_returns_while_the_batch_is_written():
    pipeline = SinkPipeline()
    release = threading.Event()
    pipeline.submit(release.wait)
    assert pipeline.busy  # the handler got control back before the write finished
    release.set()
    pipeline.wait()
    assert not pipeline.busy
    pipeline.close()


def test_a_failed_write_is_raised_by_the_next_batch_and_not_again():
    pipeline = SinkPipeline()

    def fail() -> None:
        raise ConnectionError("postgres went away")

    pipeline.submit(fail)
    with pytest.raises(ConnectionError, match="went away"):
        pipeline.submit(lambda: None)  # the next batch must not be handed over: Spark must not commit it
    pipeline.wait()  # nothing in flight any more
    pipeline.submit(fail)
    assert pipeline.drain() is False  # a stop logs it; the replay at the next start covers the batch
    assert pipeline.drain() is True
    pipeline.close()
