"""Duplicate and out-of-order detection: per-key memory of recent event times.

A record (key, t) is
- a ``duplicate`` when t was already accepted for that key and is still remembered,
- ``out_of_order`` when t is older than the newest accepted t of that key by more than the allowed
  lateness,
- accepted otherwise (late records within the lateness are fine: Spark's watermark handles them).

Memory is bounded: a key remembers its last `max_per_key` accepted times, and of those only the ones
inside the dedupe window behind its newest time count. A duplicate older than that is not caught
here; Spark's watermark deduplication is the second line.

State lives in numpy arrays (one row per key: newest time, accepted count, a ring of recent times),
so the scalar :meth:`SequenceGuard.check` (one record) and the vectorised
:meth:`SequenceGuard.accept_in_order` (a chunk of ticks) share it and judge every record alike.
"""

from __future__ import annotations

from collections.abc import Hashable

import numpy as np

from common.contract import RejectReason
from ingest.rules import Rejection


class SequenceGuard:
    """Remembers, per key, the newest accepted event time and the recent accepted times."""

    __slots__ = ("_count", "_lateness", "_max", "_newest", "_ring", "_slots", "_window")

    def __init__(self, allowed_lateness_ms: int, dedupe_window_ms: int, max_per_key: int = 512) -> None:
        if dedupe_window_ms < allowed_lateness_ms:
            raise ValueError("dedupe_window_ms must be >= allowed_lateness_ms")
        if max_per_key < 1:
            raise ValueError(f"max_per_key must be >= 1, got {max_per_key}")
        self._lateness = allowed_lateness_ms
        self._window = dedupe_window_ms
        self._max = max_per_key
        self._slots: dict[Hashable, int] = {}
        capacity = 64
        self._newest = np.zeros(capacity, dtype=np.int64)
        self._count = np.zeros(capacity, dtype=np.int64)  # accepted times so far (ring write position)
        self._ring = np.zeros((capacity, max_per_key), dtype=np.int64)

    # --- keys ----------------------------------------------------------------------------------

    def slot(self, key: Hashable) -> int:
        """The row of `key` in the state arrays (allocated on first sight; stable afterwards)."""
        slot = self._slots.get(key)
        if slot is None:
            slot = len(self._slots)
            if slot == len(self._newest):
                self._grow()
            self._slots[key] = slot
        return slot

    def _grow(self) -> None:
        capacity = 2 * len(self._newest)
        self._newest = np.resize(self._newest, capacity)
        self._count = np.concatenate([self._count, np.zeros(capacity - len(self._count), dtype=np.int64)])
        ring = np.zeros((capacity, self._max), dtype=np.int64)
        ring[: len(self._ring)] = self._ring
        self._ring = ring

    # --- one record ----------------------------------------------------------------------------

    def check(self, key: Hashable, event_ms: int) -> Rejection | None:
        """Judge (key, event_ms) and remember it when accepted."""
        slot = self.slot(key)
        count = int(self._count[slot])
        if count:
            newest = int(self._newest[slot])
            if event_ms <= newest:
                if event_ms >= newest - self._window:
                    recent = self._ring[slot, : min(count, self._max)]
                    if (recent == event_ms).any():
                        return Rejection(RejectReason.DUPLICATE, f"{key} at {event_ms} was already accepted")
                if event_ms < newest - self._lateness:
                    late = newest - event_ms
                    return Rejection(
                        RejectReason.OUT_OF_ORDER, f"{key} at {event_ms} is {late} ms behind its newest event"
                    )
            else:
                self._newest[slot] = event_ms
        else:
            self._newest[slot] = event_ms
        self._ring[slot, count % self._max] = event_ms
        self._count[slot] = count + 1
        return None

    # --- a chunk ---------------------------------------------------------------------------------

    def accept_in_order(self, slots: np.ndarray, times: np.ndarray, eligible: np.ndarray) -> np.ndarray:
        """Accept, in one go, every key whose rows in this chunk are all eligible and strictly newer
        than the key's newest time and than each other (the normal case of a live feed).

        Such rows can be neither duplicates nor out of order, so they are remembered as accepted and
        marked True. The other keys' rows are marked False and untouched: the caller judges them one by
        one with :meth:`check`, in their order (keys are independent, so this equals judging the whole
        chunk row by row). `slots` come from :meth:`slot`; `eligible` marks rows that passed the
        stateless rules.
        """
        n = len(slots)
        if n == 0:
            return np.zeros(0, dtype=bool)
        order = np.argsort(slots, kind="stable")
        s_slots, s_times = slots[order], times[order]
        first = np.empty(n, dtype=bool)
        first[0] = True
        np.not_equal(s_slots[1:], s_slots[:-1], out=first[1:])
        counts = self._count[s_slots]
        previous = np.empty(n, dtype=np.int64)
        previous[0] = 0
        previous[1:] = s_times[:-1]
        head = first & (counts > 0)
        previous[first] = np.iinfo(np.int64).min
        previous[head] = self._newest[s_slots[head]]
        good = eligible[order] & (s_times > previous)
        group = np.cumsum(first) - 1
        starts = np.flatnonzero(first)
        group_ok = np.logical_and.reduceat(good, starts)
        fast_sorted = group_ok[group]
        fast = np.empty(n, dtype=bool)
        fast[order] = fast_sorted
        if not fast_sorted.any():
            return fast
        # remember the accepted rows: newest time, count and the last `max` times of each key
        ends = np.append(starts[1:], n) - 1
        sizes = ends - starts + 1
        ok_groups = np.flatnonzero(group_ok)
        g_slots = s_slots[starts[ok_groups]]
        self._newest[g_slots] = s_times[ends[ok_groups]]
        base = self._count[g_slots].copy()
        self._count[g_slots] = base + sizes[ok_groups]
        rank = np.arange(n) - starts[group]
        keep = fast_sorted & (rank >= sizes[group] - self._max)  # one write per ring position
        row_base = np.zeros(len(starts), dtype=np.int64)
        row_base[ok_groups] = base
        kept = np.flatnonzero(keep)
        self._ring[s_slots[kept], (row_base[group[kept]] + rank[kept]) % self._max] = s_times[kept]
        return fast

    def __len__(self) -> int:
        return len(self._slots)
