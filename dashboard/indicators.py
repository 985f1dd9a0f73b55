"""Pure maths of the dashboard: custom indicators equal to TA-Lib, and the small helpers the charts need.

Functions of numpy arrays only (no I/O, no Streamlit), NaN where TA-Lib returns NaN (its warm-up):

- SMA n: mean of the last n values, from index n-1.
- EMA n: seeded with the SMA of the first n values (index n-1), then ``((x - ema) * k) + ema``,
  k = 2 / (n + 1) (TA-Lib's classic mode).
- Bollinger bands n, k: middle = SMA n; deviation = population standard deviation of the window
  around that SMA (two passes: TA-Lib 0.8.2 gives a deviation of 1e-15 on a window of 1 and
  1 + 1e-15, which a mean of squares minus a squared mean cannot); upper/lower = middle +- k * deviation.
- RSI n (Wilder): average gain and loss seeded with the plain means of the first n changes, output
  from index n, then ``avg = (avg * (n - 1) + change) / n``; ``100 * gain / (gain + loss)``, 0 when
  gain + loss is 0 (TA-Lib 0.8.2 still divides at 1e-15).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_PERIOD = 2
MAX_PERIOD = 500


@dataclass(frozen=True)
class CustomIndicator:
    """One indicator the user added to the chart: kind (SMA, EMA, BBANDS, RSI) and period."""

    kind: str
    period: int

    @property
    def label(self) -> str:
        return f"{self.kind} {self.period}"


KINDS = ("SMA", "EMA", "BBANDS", "RSI")


def _as_array(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)


def _check_period(period: int) -> int:
    if isinstance(period, bool) or not isinstance(period, int | np.integer):
        raise TypeError(f"period must be an integer, got {period!r}")
    if not MIN_PERIOD <= period <= MAX_PERIOD:
        raise ValueError(f"period {period} is outside {MIN_PERIOD}..{MAX_PERIOD}")
    return int(period)


def _window_sums(x: np.ndarray, period: int) -> np.ndarray:
    """Sum of each full window of `period` values (exact per window, no running-sum drift)."""
    return np.lib.stride_tricks.sliding_window_view(x, period).sum(axis=1)


def sma(values, period: int) -> np.ndarray:
    x = _as_array(values)
    n = _check_period(period)
    out = np.full(x.shape, np.nan)
    if x.size >= n:
        out[n - 1 :] = _window_sums(x, n) / n
    return out


def ema(values, period: int) -> np.ndarray:
    x = _as_array(values)
    n = _check_period(period)
    out = np.full(x.shape, np.nan)
    if x.size < n:
        return out
    k = 2.0 / (n + 1)
    total = 0.0
    for v in x[:n]:
        total += v
    prev = total / n
    out[n - 1] = prev
    for i in range(n, x.size):
        prev = ((x[i] - prev) * k) + prev
        out[i] = prev
    return out


def bbands(values, period: int, deviations: float = 2.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(upper, middle, lower) Bollinger bands over an SMA, as talib.BBANDS(x, n, k, k, MA_Type.SMA)."""
    x = _as_array(values)
    n = _check_period(period)
    middle = sma(x, n)
    upper = np.full(x.shape, np.nan)
    lower = np.full(x.shape, np.nan)
    if x.size < n:
        return upper, middle, lower
    mean = middle[n - 1 :]
    windows = np.lib.stride_tricks.sliding_window_view(x, n)
    variance = ((windows - mean[:, None]) ** 2).sum(axis=1) / n
    deviation = np.sqrt(np.maximum(variance, 0.0))
    upper[n - 1 :] = mean + deviations * deviation
    lower[n - 1 :] = mean - deviations * deviation
    return upper, middle, lower


def rsi(values, period: int) -> np.ndarray:
    x = _as_array(values)
    n = _check_period(period)
    out = np.full(x.shape, np.nan)
    if x.size <= n:
        return out
    gain = loss = 0.0
    for i in range(1, n + 1):
        change = x[i] - x[i - 1]
        if change < 0:
            loss -= change
        else:
            gain += change
    gain /= n
    loss /= n
    out[n] = _rsi_value(gain, loss)
    for i in range(n + 1, x.size):
        change = x[i] - x[i - 1]
        gain *= n - 1
        loss *= n - 1
        if change < 0:
            loss -= change
        else:
            gain += change
        gain /= n
        loss /= n
        out[i] = _rsi_value(gain, loss)
    return out


def _rsi_value(gain: float, loss: float) -> float:
    total = gain + loss
    return 0.0 if total == 0.0 else 100.0 * (gain / total)


def compute(indicator: CustomIndicator, closes) -> dict[str, np.ndarray]:
    """The series one custom indicator draws, by name (a band indicator draws three)."""
    label = indicator.label
    if indicator.kind == "SMA":
        return {label: sma(closes, indicator.period)}
    if indicator.kind == "EMA":
        return {label: ema(closes, indicator.period)}
    if indicator.kind == "BBANDS":
        upper, middle, lower = bbands(closes, indicator.period)
        return {f"{label} upper": upper, f"{label} middle": middle, f"{label} lower": lower}
    if indicator.kind == "RSI":
        return {label: rsi(closes, indicator.period)}
    raise ValueError(f"unknown indicator {indicator.kind!r}; expected one of {', '.join(KINDS)}")


def rebase(values, base: float = 100.0) -> np.ndarray:
    """The series scaled so that its first value is `base` (performance since the range's start)."""
    x = _as_array(values)
    if x.size == 0:
        return x
    return x / x[0] * base


def volume_profile(prices, volumes, bins: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """Volume traded per price level: (level mid-prices, summed volume) over `bins` equal levels."""
    p = _as_array(prices)
    v = _as_array(volumes)
    if p.size == 0:
        return np.array([]), np.array([])
    low, high = float(p.min()), float(p.max())
    if high == low:
        return np.array([low]), np.array([float(v.sum())])
    edges = np.linspace(low, high, bins + 1)
    idx = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, bins - 1)
    summed = np.bincount(idx, weights=v, minlength=bins)
    return (edges[:-1] + edges[1:]) / 2, summed


def change(last: float, previous: float) -> tuple[float, float]:
    """(absolute, percent) change from `previous` to `last`."""
    diff = last - previous
    return diff, (diff / previous * 100.0 if previous else float("nan"))


def momentum(values, lookback: int = 10) -> float:
    """Rate of change over the last `lookback` steps, in percent (NaN when the series is shorter)."""
    x = _as_array(values)
    if x.size <= lookback or x[-1 - lookback] == 0:
        return float("nan")
    return (x[-1] / x[-1 - lookback] - 1.0) * 100.0
