"""Duplicate and out-of-order detection: per-key memory of recent event times.

A record (key, t) is
- a ``duplicate`` when t was already accepted for that key and is still remembered,
- ``out_of_order`` when t is older than the newest accepted t of that key by more than the allowed
  lateness,
- accepted otherwise (late records within the lateness are fine: Spark's watermark handles them).

Memory is bounded: per key, the accepted times within the dedupe window, at most `max_per_key` of
them (the most recent). A duplicate older than those is not caught here; Spark's watermark
deduplication is the second line.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable

from common.contract import RejectReason
from ingest.rules import Rejection


class SequenceGuard:
    """Remembers, per key, the newest accepted event time and the recent accepted times."""

    __slots__ = ("_lateness", "_max", "_newest", "_order", "_seen", "_window")

    def __init__(self, allowed_lateness_ms: int, dedupe_window_ms: int, max_per_key: int = 512) -> None:
        if dedupe_window_ms < allowed_lateness_ms:
            raise ValueError("dedupe_window_ms must be >= allowed_lateness_ms")
        self._lateness = allowed_lateness_ms
        self._window = dedupe_window_ms
        self._max = max_per_key
        self._newest: dict[Hashable, int] = {}
        self._seen: dict[Hashable, set[int]] = {}
        self._order: dict[Hashable, deque[int]] = {}

    def check(self, key: Hashable, event_ms: int) -> Rejection | None:
        """Judge (key, event_ms) and remember it when accepted."""
        newest = self._newest.get(key)
        if newest is None:
            self._newest[key] = event_ms
            self._seen[key] = {event_ms}
            self._order[key] = deque((event_ms,))
            return None
        seen = self._seen[key]
        if event_ms <= newest:
            if event_ms in seen:
                return Rejection(RejectReason.DUPLICATE, f"{key} at {event_ms} was already accepted")
            if event_ms < newest - self._lateness:
                late = newest - event_ms
                return Rejection(
                    RejectReason.OUT_OF_ORDER, f"{key} at {event_ms} is {late} ms behind its newest event"
                )
        else:
            self._newest[key] = event_ms
            newest = event_ms
        seen.add(event_ms)
        order = self._order[key]
        order.append(event_ms)
        if len(order) > self._max or order[0] < newest - self._window:
            seen.discard(order.popleft())  # one out per one in: memory stays bounded, cost O(1)
        return None

    def __len__(self) -> int:
        return len(self._newest)
