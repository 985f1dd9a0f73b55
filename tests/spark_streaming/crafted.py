"""Crafted bar series for each signal type: a base series plus a final bar whose one parameter
(close, open or volume) is set just past the point where the signal starts to fire, or just short of it.

The firing point is found by bisection with the pure functions themselves, so the series stay valid
whatever the thresholds; the near miss is 2% of the distance to the base value short of it.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from spark_streaming import indicators as ind

N_BASE = 80


def base_series(kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(closes, volumes) of the bars before the trigger bar."""
    t = np.arange(N_BASE, dtype=float)
    rng = np.random.default_rng(sum(kind.encode()))
    vols = 100.0 + rng.normal(0, 10, N_BASE)
    if kind == "sma_cross_up":
        closes = 100.0 - 0.1 * t
    elif kind == "sma_cross_down":
        closes = 100.0 + 0.1 * t
    elif kind == "macd_cross_up":
        closes = 100.0 - 0.002 * t**2
    elif kind == "macd_cross_down":
        closes = 100.0 + 0.002 * t**2
    elif kind == "rsi_cross_above_30":
        closes = 100.0 - 0.1 * t
    elif kind == "rsi_cross_below_70":
        closes = 100.0 + 0.1 * t
    elif kind in ("rsi_cross_below_30", "rsi_cross_above_70"):
        closes = 100.0 + 0.1 * (t % 2)
    else:  # spikes and gaps: a noisy random walk
        closes = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.001, N_BASE)))
    return closes, vols


_PARAM = {"volume_spike": "volume", "gap_up": "open", "gap_down": "open"}
_DIRECTION = {  # +1: the signal fires when the parameter is large enough; -1: small enough
    "sma_cross_up": 1,
    "sma_cross_down": -1,
    "macd_cross_up": 1,
    "macd_cross_down": -1,
    "rsi_cross_above_30": 1,
    "rsi_cross_below_30": -1,
    "rsi_cross_above_70": 1,
    "rsi_cross_below_70": -1,
    "volume_spike": 1,
    "price_spike_up": 1,
    "price_spike_down": -1,
    "gap_up": 1,
    "gap_down": -1,
}


def _bar(opens: np.ndarray, closes: np.ndarray, vols: np.ndarray, i: int) -> ind.Bars:
    """Bar `i` of a series as a one-symbol step input."""
    return ind.Bars(
        open=opens[i : i + 1],
        close=closes[i : i + 1],
        volume=vols[i : i + 1],
        pv=closes[i : i + 1] * vols[i : i + 1],
        day=np.zeros(1),
    )


def run_series(
    opens: np.ndarray, closes: np.ndarray, vols: np.ndarray, th: ind.SignalThresholds = ind.SignalThresholds()
) -> list[tuple[int, str]]:
    """All signals (bar index, type) of one symbol's bar series, through the pure step/detect."""
    state = ind.empty_state(1)
    found = []
    for i in range(len(closes)):
        bars = _bar(opens, closes, vols, i)
        after, out = ind.step(state, bars)
        found += [(i, kind) for _, kind, _, _ in ind.detect(state, after, bars, out, th)]
        state = after
    return found


def _series_with(kind: str, x: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    closes, vols = base_series(kind)
    opens = np.concatenate([[closes[0]], closes[:-1]])
    last_close, last_open, last_vol = closes[-1], closes[-1], float(np.mean(vols))
    param = _PARAM.get(kind, "close")
    if param == "close":
        last_close = x
    elif param == "open":
        last_open = x
        last_close = x
    else:
        last_vol = x
    return (np.append(opens, last_open), np.append(closes, last_close), np.append(vols, last_vol))


@cache
def _state_before_trigger(kind: str) -> np.ndarray:
    closes, vols = base_series(kind)
    opens = np.concatenate([[closes[0]], closes[:-1]])
    state = ind.empty_state(1)
    for i in range(len(closes)):
        bars = _bar(opens, closes, vols, i)
        state, _ = ind.step(state, bars)
    return state


def _fires(kind: str, x: float) -> bool:
    o, c, v = _series_with(kind, x)
    state = _state_before_trigger(kind)
    bars = ind.Bars(open=o[-1:], close=c[-1:], volume=v[-1:], pv=c[-1:] * v[-1:], day=np.zeros(1))
    after, out = ind.step(state, bars)
    return any(k == kind for _, k, _, _ in ind.detect(state, after, bars, out, ind.SignalThresholds()))


@cache
def crafted(kind: str, near_miss: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(opens, closes, volumes): the trigger bar fires `kind`, or, with near_miss, just does not."""
    closes, vols = base_series(kind)
    base = float(np.mean(vols)) if _PARAM.get(kind) == "volume" else float(closes[-1])
    d = _DIRECTION[kind]
    far = base * (8.0 if _PARAM.get(kind) == "volume" else (3.0 if d > 0 else 0.2))
    if not _fires(kind, far) or _fires(kind, base):
        raise AssertionError(f"crafted series for {kind} cannot be tuned (base {base}, far {far})")
    lo, hi = base, far  # lo does not fire, hi fires
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if _fires(kind, mid) else (mid, hi)
    edge = hi
    step = abs(edge - base) * 0.02 * (1 if d > 0 else -1)
    x = edge - step if near_miss else edge + step
    return _series_with(kind, x)
