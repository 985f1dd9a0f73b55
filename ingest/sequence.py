"""Duplicate and out-of-order detection: per-key memory of recent event times.

A record (key, t) is
- a ``duplicate`` when t was already accepted for that key within the dedupe window,
- ``out_of_order`` when t is older than the newest accepted t of that key by more than the allowed
  lateness,
- accepted otherwise (late records within the lateness are fine: Spark's watermark handles them).
"""

from __future__ import annotations

from collections.abc import Hashable

from common.contract import RejectReason
from ingest.rules import Rejection


class SequenceGuard:
    """Remembers, per key, the newest accepted event time and the times accepted in the window."""

    __slots__ = ("_lateness", "_newest", "_prune_every", "_seen", "_window")

    def __init__(self, allowed_lateness_ms: int, dedupe_window_ms: int) -> None:
        if dedupe_window_ms < allowed_lateness_ms:
            raise ValueError("dedupe_window_ms must be >= allowed_lateness_ms")
        self._lateness = allowed_lateness_ms
        self._window = dedupe_window_ms
        self._newest: dict[Hashable, int] = {}
        self._seen: dict[Hashable, set[int]] = {}
        self._prune_every = 4096

    def check(self, key: Hashable, event_ms: int) -> Rejection | None:
        """Judge (key, event_ms) and remember it when accepted."""
        newest = self._newest.get(key)
        if newest is None:
            self._newest[key] = event_ms
            self._seen[key] = {event_ms}
            return None
        seen = self._seen[key]
        if event_ms > newest:
            self._newest[key] = event_ms
            seen.add(event_ms)
            if len(seen) >= self._prune_every:
                self._prune(key, event_ms)
            return None
        if event_ms in seen:
            return Rejection(RejectReason.DUPLICATE, f"{key} at {event_ms} was already accepted")
        if event_ms < newest - self._lateness:
            late = newest - event_ms
            return Rejection(
                RejectReason.OUT_OF_ORDER, f"{key} at {event_ms} is {late} ms behind its newest event"
            )
        seen.add(event_ms)
        return None

    def _prune(self, key: Hashable, newest: int) -> None:
        horizon = newest - self._window
        kept = {t for t in self._seen[key] if t >= horizon}
        self._seen[key] = kept
        # grow the threshold when the window itself holds many events, so pruning stays amortised O(1)
        self._prune_every = max(self._prune_every, 2 * len(kept))

    def __len__(self) -> int:
        return len(self._newest)
