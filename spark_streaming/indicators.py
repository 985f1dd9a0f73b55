"""Incremental technical indicators and pattern signals on 1-minute bars: pure, vectorised numpy.

Each symbol's indicator state is one float64 row of a fixed layout (:data:`LAYOUT`), so the state of
many symbols is a matrix and one :func:`step` advances all of them by one bar at once. The maths
mirrors TA-Lib's C code operation by operation (seeding, MACD's aligned fast EMA, Wilder's RSI, the
zero test), so values equal ``talib.EMA/MACD/RSI/SMA`` after TA-Lib's own warm-up:

- EMA n: seeded with the SMA of the first n closes (index n-1), then ``((x - ema) * k) + ema``,
  k = 2 / (n + 1).
- MACD 12/26/9: slow EMA seeded with the SMA of closes 0..25; the fast EMA is seeded at index 25 with
  the SMA of closes 14..25 (TA-Lib aligns both EMAs); macd = fast - slow from index 25; the signal is
  the EMA 9 of macd seeded with the SMA of macd 25..33; macd, signal and histogram are output from
  index 33.
- RSI 14: Wilder averages seeded with the mean gain and loss of diffs 1..14, output from index 14;
  ``100 * gain / (gain + loss)``, 0 when ``gain + loss`` is within 1e-8 of zero.
- SMA n: mean of the last n closes, from index n-1.
- Session VWAP: sum(price * size) / sum(size) over the UTC day's ticks up to and including the bar.

Gaps in a symbol's minutes are not filled: the indicators run over the bars that exist, as TA-Lib does
over the series it is given.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SMA_PERIODS = (20, 50, 200)
EMA_FAST, EMA_SLOW, MACD_SIGNAL, RSI_PERIOD = 12, 26, 9, 14
CLOSES_WINDOW = 200
ZSCORE_WINDOW = 20

_SCALARS = (
    "n",  # final bars seen
    "ema12",
    "ema26",
    "macd_fast",  # MACD's own fast EMA, aligned with the slow one (TA-Lib)
    "macd_seed",  # running sum of macd values 25..33 (signal seed)
    "signal",
    "gain",  # RSI: running sum during warm-up, then Wilder average
    "loss",
    "sess_day",  # UTC day number of the session
    "sess_pv",
    "sess_v",
    "out_sma20",  # the last final bar's outputs, for crossovers
    "out_sma50",
    "out_macd",
    "out_signal",
    "out_rsi",
)
S = {name: i for i, name in enumerate(_SCALARS)}
CLOSES = slice(len(_SCALARS), len(_SCALARS) + CLOSES_WINDOW)
VOLUMES = slice(CLOSES.stop, CLOSES.stop + ZSCORE_WINDOW)
WIDTH = VOLUMES.stop
"""Number of float64 values in one symbol's state row."""

OUTPUTS = (
    "ema_12",
    "ema_26",
    "macd",
    "macd_signal",
    "macd_hist",
    "rsi_14",
    "sma_20",
    "sma_50",
    "sma_200",
    "session_vwap",
)

SIGNAL_TYPES = (
    "sma_cross_up",
    "sma_cross_down",
    "macd_cross_up",
    "macd_cross_down",
    "rsi_cross_above_30",
    "rsi_cross_below_30",
    "rsi_cross_above_70",
    "rsi_cross_below_70",
    "volume_spike",
    "price_spike_up",
    "price_spike_down",
    "gap_up",
    "gap_down",
)


def empty_state(rows: int) -> np.ndarray:
    """State rows of symbols that have seen no bar: counters and sums 0, everything else NaN."""
    state = np.full((rows, WIDTH), np.nan)
    for name in ("n", "macd_seed", "gain", "loss", "sess_pv", "sess_v"):
        state[:, S[name]] = 0.0
    state[:, S["sess_day"]] = -1.0
    return state


@dataclass(frozen=True)
class Bars:
    """One bar per state row: the inputs :func:`step` needs (arrays of equal length)."""

    open: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    pv: np.ndarray  # sum of price * size of the bar's ticks
    day: np.ndarray  # UTC day number of the bar start (session key)


def _k(period: int) -> float:
    return 2.0 / (period + 1)


def _ema_update(prev: np.ndarray, x: np.ndarray, period: int) -> np.ndarray:
    return ((x - prev) * _k(period)) + prev


def _seq_mean(window: np.ndarray) -> np.ndarray:
    """Mean of each row summed left to right, as TA-Lib seeds its averages."""
    total = np.zeros(window.shape[0])
    for j in range(window.shape[1]):
        total = total + window[:, j]
    return total / window.shape[1]


def step(state: np.ndarray, bars: Bars) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Advance each state row by its bar; returns the new state and the bar's indicator values.

    Pure: `state` is not modified. Values not yet defined (warm-up) are NaN.
    """
    st = state.copy()
    rows = st.shape[0]
    x = bars.close
    idx = st[:, S["n"]].copy()  # index of this bar in the symbol's series
    prev_close = st[:, CLOSES.stop - 1].copy()

    closes = np.concatenate([st[:, CLOSES][:, 1:], x[:, None]], axis=1)
    st[:, CLOSES] = closes

    out: dict[str, np.ndarray] = {}
    # EMA 12 and 26: SMA seed at index n-1, recursive afterwards
    for name, period in (("ema12", EMA_FAST), ("ema26", EMA_SLOW)):
        seeded = idx == period - 1
        running = idx > period - 1
        val = np.full(rows, np.nan)
        if seeded.any():
            val[seeded] = _seq_mean(closes[seeded, -period:])
        if running.any():
            val[running] = _ema_update(st[running, S[name]], x[running], period)
        st[:, S[name]] = val
    out["ema_12"] = st[:, S["ema12"]].copy()
    out["ema_26"] = st[:, S["ema26"]].copy()

    # MACD: fast EMA aligned at index 25, macd from 25, signal seeded over macd 25..33
    start = EMA_SLOW - 1
    fast = np.full(rows, np.nan)
    seeded = idx == start
    running = idx > start
    if seeded.any():
        fast[seeded] = _seq_mean(closes[seeded, -EMA_FAST:])
    if running.any():
        fast[running] = _ema_update(st[running, S["macd_fast"]], x[running], EMA_FAST)
    st[:, S["macd_fast"]] = fast
    macd_line = fast - st[:, S["ema26"]]
    sig_start = start + MACD_SIGNAL - 1
    in_seed = (idx >= start) & (idx <= sig_start)
    st[in_seed, S["macd_seed"]] = st[in_seed, S["macd_seed"]] + macd_line[in_seed]
    signal = np.full(rows, np.nan)
    seeded = idx == sig_start
    running = idx > sig_start
    signal[seeded] = st[seeded, S["macd_seed"]] / MACD_SIGNAL
    if running.any():
        signal[running] = _ema_update(st[running, S["signal"]], macd_line[running], MACD_SIGNAL)
    st[:, S["signal"]] = signal
    shown = idx >= sig_start
    out["macd"] = np.where(shown, macd_line, np.nan)
    out["macd_signal"] = np.where(shown, signal, np.nan)
    out["macd_hist"] = np.where(shown, macd_line - signal, np.nan)

    # RSI 14 (Wilder), TA-Lib's operation order
    diff = x - prev_close
    gain, loss = st[:, S["gain"]].copy(), st[:, S["loss"]].copy()
    warm = (idx >= 1) & (idx <= RSI_PERIOD)
    wilder = idx > RSI_PERIOD
    up, down = diff >= 0, diff < 0
    gain[warm & up] = gain[warm & up] + diff[warm & up]
    loss[warm & down] = loss[warm & down] - diff[warm & down]
    seeded = idx == RSI_PERIOD
    gain[seeded] = gain[seeded] / RSI_PERIOD
    loss[seeded] = loss[seeded] / RSI_PERIOD
    if wilder.any():
        g = gain[wilder] * (RSI_PERIOD - 1)
        lo = loss[wilder] * (RSI_PERIOD - 1)
        d = diff[wilder]
        lo = np.where(d < 0, lo - d, lo)
        g = np.where(d < 0, g, g + d)
        gain[wilder] = g / RSI_PERIOD
        loss[wilder] = lo / RSI_PERIOD
    st[:, S["gain"]], st[:, S["loss"]] = gain, loss
    total = gain + loss
    rsi = np.where(np.abs(total) < 1e-8, 0.0, 100.0 * (gain / np.where(total == 0, 1.0, total)))
    out["rsi_14"] = np.where(idx >= RSI_PERIOD, rsi, np.nan)

    # SMAs over the closes window
    for period in SMA_PERIODS:
        ready = idx >= period - 1
        val = np.full(rows, np.nan)
        if ready.any():
            val[ready] = closes[ready, -period:].sum(axis=1) / period
        out[f"sma_{period}"] = val

    # session VWAP (UTC day)
    new_day = st[:, S["sess_day"]] != bars.day
    st[new_day, S["sess_pv"]] = 0.0
    st[new_day, S["sess_v"]] = 0.0
    st[:, S["sess_day"]] = bars.day
    st[:, S["sess_pv"]] += bars.pv
    st[:, S["sess_v"]] += bars.volume
    sess_v = st[:, S["sess_v"]]
    out["session_vwap"] = np.where(sess_v > 0, st[:, S["sess_pv"]] / np.where(sess_v > 0, sess_v, 1), np.nan)

    st[:, VOLUMES] = np.concatenate([st[:, VOLUMES][:, 1:], bars.volume[:, None]], axis=1)
    st[:, S["out_sma20"]] = out["sma_20"]
    st[:, S["out_sma50"]] = out["sma_50"]
    st[:, S["out_macd"]] = out["macd"]
    st[:, S["out_signal"]] = out["macd_signal"]
    st[:, S["out_rsi"]] = out["rsi_14"]
    st[:, S["n"]] = idx + 1
    return st, out


@dataclass(frozen=True)
class SignalThresholds:
    zscore: float = 3.0
    gap_pct: float = 0.005
    rsi_low: float = 30.0
    rsi_high: float = 70.0


def _zscore(value: np.ndarray, window: np.ndarray) -> np.ndarray:
    """z of `value` against each row's window (sample std); NaN where the window is incomplete or flat."""
    mean = window.mean(axis=1)
    std = window.std(axis=1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (value - mean) / std
    return np.where(np.isfinite(z) & (std > 0), z, np.nan)


def detect(
    before: np.ndarray, after: np.ndarray, bars: Bars, out: dict[str, np.ndarray], th: SignalThresholds
) -> list[tuple[int, str, float, float]]:
    """Signals of a closed bar: (row, signal_type, value, threshold) from the state before and after it.

    - sma_cross_up/down: SMA 20 crosses above/below SMA 50 (value = SMA 20 - SMA 50);
    - macd_cross_up/down: MACD crosses above/below its signal line (value = histogram);
    - rsi_cross_above/below_30/70: RSI 14 crosses the level (value = RSI);
    - volume_spike: volume's z-score against the previous 20 bars >= zscore;
    - price_spike_up/down: the close-to-close return's z against the previous 20 returns >= zscore
      or <= -zscore;
    - gap_up/down: open vs previous close by at least gap_pct (value = relative gap).
    A comparison with an undefined (warm-up) value never fires.
    """
    found: list[tuple[int, str, float, float]] = []

    def emit(mask: np.ndarray, kind: str, value: np.ndarray, threshold: float) -> None:
        for i in np.flatnonzero(mask):
            found.append((int(i), kind, float(value[i]), float(threshold)))

    d_prev = before[:, S["out_sma20"]] - before[:, S["out_sma50"]]
    d_now = out["sma_20"] - out["sma_50"]
    with np.errstate(invalid="ignore"):
        emit((d_prev <= 0) & (d_now > 0), "sma_cross_up", d_now, 0.0)
        emit((d_prev >= 0) & (d_now < 0), "sma_cross_down", d_now, 0.0)
        h_prev = before[:, S["out_macd"]] - before[:, S["out_signal"]]
        h_now = out["macd_hist"]
        emit((h_prev <= 0) & (h_now > 0), "macd_cross_up", h_now, 0.0)
        emit((h_prev >= 0) & (h_now < 0), "macd_cross_down", h_now, 0.0)
        r_prev, r_now = before[:, S["out_rsi"]], out["rsi_14"]
        for level, name in ((th.rsi_low, "30"), (th.rsi_high, "70")):
            emit((r_prev <= level) & (r_now > level), f"rsi_cross_above_{name}", r_now, level)
            emit((r_prev >= level) & (r_now < level), f"rsi_cross_below_{name}", r_now, level)

        n_before = before[:, S["n"]]
        vol_window = before[:, VOLUMES]
        zv = np.where(n_before >= ZSCORE_WINDOW, _zscore(bars.volume, vol_window), np.nan)
        emit(zv >= th.zscore, "volume_spike", zv, th.zscore)

        closes = before[:, CLOSES][:, -(ZSCORE_WINDOW + 1) :]
        returns = closes[:, 1:] / closes[:, :-1] - 1.0
        r = bars.close / before[:, CLOSES.stop - 1] - 1.0
        zp = np.where(n_before >= ZSCORE_WINDOW + 1, _zscore(r, returns), np.nan)
        emit(zp >= th.zscore, "price_spike_up", zp, th.zscore)
        emit(zp <= -th.zscore, "price_spike_down", zp, -th.zscore)

        prev_close = before[:, CLOSES.stop - 1]
        gap = np.where(n_before >= 1, bars.open / prev_close - 1.0, np.nan)
        emit(gap >= th.gap_pct, "gap_up", gap, th.gap_pct)
        emit(gap <= -th.gap_pct, "gap_down", gap, -th.gap_pct)
    return found
