"""Synthetic source: seeded geometric Brownian motion with jumps and a U-shaped intraday volume curve.

The load generator for benchmarks, tests and the offline demo. Prices, sizes and the order of symbols
depend only on the seed, the rate and the number of symbols; event times come from a simulated clock
when `start_ms` is given (fully deterministic) and from the wall clock otherwise. Each symbol's event
times strictly increase (one millisecond apart at least), so keep the per-symbol rate under 1,000/s.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from common.contract import Source, Tick, Topic
from ingest.instruments import Instrument, Instruments
from ingest.sources.base import RawRecord

_YEAR_S = 252 * 6.5 * 3600  # trading seconds in a year: volatilities are annualised on them
_SESSION_OPEN_UTC_MS = 14 * 3_600_000 + 30 * 60_000
_SESSION_MS = int(6.5 * 3_600_000)


def symbol_names(n: int, prefix: str = "SYN") -> list[str]:
    return [f"{prefix}{i:04d}" for i in range(n)]


def volume_curve(event_ms: np.ndarray) -> np.ndarray:
    """Intraday volume weight (mean about 1): high at the open and close, low at midday (a U shape)."""
    u = ((event_ms - _SESSION_OPEN_UTC_MS) % 86_400_000 % _SESSION_MS) / _SESSION_MS
    return 0.4 + 2.4 * (2.0 * u - 1.0) ** 2


@dataclass(frozen=True)
class GbmParams:
    drift: float = 0.05
    vol_low: float = 0.15
    vol_high: float = 0.60
    jumps_per_day: float = 2.0
    jump_sigma: float = 0.01
    mean_size: float = 100.0


class SyntheticSource:
    """Ticks for `symbols` at `rate` ticks/s (total), from `seed`; stops after `count` or `duration_s`."""

    name = Source.SYNTHETIC

    def __init__(
        self,
        symbols: list[str] | int = 10,
        rate: float = 1_000.0,
        seed: int = 42,
        *,
        count: int | None = None,
        duration_s: float | None = None,
        paced: bool = True,
        start_ms: int | None = None,
        params: GbmParams | None = None,
        chunk_rounds: int | None = None,
    ) -> None:
        self.symbols = symbol_names(symbols) if isinstance(symbols, int) else list(symbols)
        if not self.symbols:
            raise ValueError("synthetic source needs at least one symbol")
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self.rate = float(rate)
        self.seed = seed
        self.count = count
        self.duration_s = duration_s
        self.paced = paced
        self.start_ms = start_ms
        self.params = params or GbmParams()
        n = len(self.symbols)
        # ~50 ms of ticks per chunk; chunking fixes the order of random draws, so it depends only on
        # the rate (paced or not): same seed, rate and symbols -> same prices and sizes
        per_chunk = max(1, min(8192, int(self.rate / 20)))
        self.chunk_rounds = chunk_rounds or max(1, per_chunk // n)
        self._closed = False
        rng = np.random.default_rng(seed)
        self._rng = rng
        self._vol = rng.uniform(self.params.vol_low, self.params.vol_high, n)
        self._log_price = np.log(rng.uniform(20.0, 500.0, n))
        self._order = rng.permutation(n)
        self._keys = [self.symbols[i] for i in self._order]
        self._last_ms = np.zeros(n, dtype=np.int64)

    def instruments(self) -> Instruments:
        """The generated symbols as instruments (24/7 calendar, cent ticks), so validation knows them."""
        return Instruments([Instrument(s, "equity", "24/7", 0.01, "USD") for s in self.symbols])

    def close(self) -> None:
        self._closed = True

    def _round_ms(self) -> float:
        return 1000.0 * len(self.symbols) / self.rate

    def _chunk(self, first_round: int, wall_ms: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(prices, sizes, event times) of `chunk_rounds` rounds; one tick per symbol per round."""
        p, rng, n, k = self.params, self._rng, len(self.symbols), self.chunk_rounds
        dt = self._round_ms() / 1000.0 / _YEAR_S
        sigma = self._vol[self._order]
        shocks = rng.standard_normal((k, n)) * (sigma * math.sqrt(dt)) + (p.drift - 0.5 * sigma**2) * dt
        jump_prob = p.jumps_per_day * self._round_ms() / (6.5 * 3_600_000)
        jumps = (rng.random((k, n)) < jump_prob) * rng.normal(0.0, p.jump_sigma, (k, n))
        log_prices = self._log_price[self._order] + np.cumsum(shocks + jumps, axis=0)
        self._log_price[self._order] = log_prices[-1]
        if self.start_ms is None and self.paced:
            self.start_ms = wall_ms  # paced: a simulated clock that starts now tracks the wall clock
        if self.start_ms is not None:
            rounds = np.arange(first_round, first_round + k, dtype=np.float64)
            base = (self.start_ms + np.floor(rounds * self._round_ms())).astype(np.int64)
        else:
            base = wall_ms + np.arange(k, dtype=np.int64)
        times = np.repeat(base[:, None], n, axis=1)
        last = self._last_ms[self._order]
        # strictly increasing per symbol: at least 1 ms after the symbol's previous tick
        times = np.maximum(times, last + 1 + np.arange(k, dtype=np.int64)[:, None])
        times = np.maximum.accumulate(times, axis=0)
        self._last_ms[self._order] = times[-1]
        sizes = np.maximum(
            1.0, np.round(rng.lognormal(math.log(p.mean_size), 1.0, (k, n)) * volume_curve(times))
        )
        return np.exp(log_prices).ravel(), sizes.ravel(), times.ravel()

    def arrays(self) -> Iterator[tuple[list[str], np.ndarray, np.ndarray, np.ndarray, int]]:
        """Chunks of (symbols, prices, sizes, event times, read time ms), paced to `rate` when `paced`."""
        keys = self._keys
        produced = 0
        round_no = 0
        started = time.monotonic()
        per_chunk = self.chunk_rounds * len(keys)
        while not self._closed:
            elapsed = time.monotonic() - started
            if self.duration_s is not None and elapsed >= self.duration_s:
                return
            if self.paced:
                ahead = produced / self.rate - elapsed
                if ahead > 0:
                    time.sleep(ahead)
            wall = time.time_ns() // 1_000_000
            prices, sizes, times = self._chunk(round_no, wall)
            round_no += self.chunk_rounds
            take = per_chunk if self.count is None else min(per_chunk, self.count - produced)
            symbols = keys * self.chunk_rounds
            yield symbols[:take], prices[:take], sizes[:take], times[:take], wall
            produced += take
            if self.count is not None and produced >= self.count:
                return

    def records(self) -> Iterator[RawRecord]:
        """Raw tick records (mappings of contract fields), one by one."""
        ticks, synthetic = Topic.TICKS, Source.SYNTHETIC
        for symbols, prices, sizes, times, received in self.arrays():
            rows = zip(symbols, prices.tolist(), sizes.tolist(), times.tolist(), strict=True)
            for sym, price, size, t in rows:
                yield RawRecord(
                    ticks,
                    {"symbol": sym, "event_time_ms": t, "price": price, "size": size},
                    synthetic,
                    received,
                )


def ticks(
    count: int, symbols: list[str] | int = 10, seed: int = 42, start_ms: int | None = None
) -> Iterator[Tick]:
    """`count` contract Tick messages (unpaced), e.g. for notebooks and tests of downstream parts."""
    source = SyntheticSource(symbols, rate=1_000.0, seed=seed, count=count, paced=False, start_ms=start_ms)
    for raw in source.records():
        yield Tick(**raw.value, source=Source.SYNTHETIC, ingest_time_ms=raw.received_ms)
