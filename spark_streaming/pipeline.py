"""Overlap the sink of batch N with Spark's read of batch N+1, one batch in flight at most.

The foreachBatch handler reads and parses its batch, waits for the previous batch's transaction to
commit, hands its own to a background thread and returns: Spark then commits the batch in its
checkpoint and starts reading the next one while PostgreSQL writes this one. Batches are written in
order on that one thread, so indicator state advances exactly as without the overlap.

The price is a window in which Spark has committed batch N but PostgreSQL has not (yet): a crash there
would lose it, so the job replays such a batch from Kafka before it starts the query again
(:func:`spark_streaming.checkpoint.batch_range`, ``StreamingJob.replay_uncommitted``); the ledger makes
the replay a no-op when the batch did commit. At most the newest committed batch can be missing: its
handler waited for every earlier one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

log = logging.getLogger(__name__)


class SinkPipeline:
    """One background writer; ``submit`` first waits for (and re-raises the failure of) the previous."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sink")
        self._pending: Future | None = None

    @property
    def busy(self) -> bool:
        return self._pending is not None and not self._pending.done()

    def wait(self) -> None:
        """Block until the batch in flight is written; raise its failure (then nothing is in flight)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def submit(self, write: Callable[[], object]) -> None:
        """Wait for the batch in flight, then start writing this one."""
        self.wait()
        self._pending = self._pool.submit(write)

    def drain(self) -> bool:
        """Finish the batch in flight; a failure is logged (its batch is replayed at the next start).
        True when nothing was lost here."""
        try:
            self.wait()
        except Exception as exc:  # any failure: the replay at the next start covers its batch
            first_line = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            log.error("event=pipelined_batch_failed error=%s", first_line)
            return False
        return True

    def close(self) -> None:
        self.drain()
        self._pool.shutdown(wait=True)
