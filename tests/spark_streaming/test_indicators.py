"""The indicator maths equals TA-Lib, and each signal fires on its crafted series but not its near miss."""

from __future__ import annotations

import numpy as np
import pytest
import talib

from spark_streaming import indicators as ind
from tests.spark_streaming.crafted import crafted, run_series


def _run(closes: np.ndarray) -> dict[str, np.ndarray]:
    """Feed closes one bar at a time through step for one symbol."""
    state = ind.empty_state(1)
    out = {k: [] for k in ind.OUTPUTS}
    for c in closes:
        bar = ind.Bars(
            open=np.array([c]), close=np.array([c]), volume=np.ones(1), pv=np.array([c]), day=np.zeros(1)
        )
        state, values = ind.step(state, bar)
        for k in ind.OUTPUTS:
            out[k].append(values[k][0])
    return {k: np.array(v) for k, v in out.items()}


def talib_reference(closes: np.ndarray) -> dict[str, np.ndarray]:
    macd, signal, hist = talib.MACD(closes, 12, 26, 9)
    return {
        "ema_12": talib.EMA(closes, 12),
        "ema_26": talib.EMA(closes, 26),
        "macd": macd,
        "macd_signal": signal,
        "macd_hist": hist,
        "rsi_14": talib.RSI(closes, 14),
        "sma_20": talib.SMA(closes, 20),
        "sma_50": talib.SMA(closes, 50),
        "sma_200": talib.SMA(closes, 200),
    }


def assert_equal_to_talib(values: dict[str, np.ndarray], closes: np.ndarray) -> None:
    for name, ref in talib_reference(closes).items():
        got = values[name]
        assert np.array_equal(np.isnan(got), np.isnan(ref)), f"{name}: warm-up differs from TA-Lib"
        ok = ~np.isnan(ref)
        if not ok.any():
            continue
        rel = np.abs(got[ok] - ref[ok]) / np.maximum(np.abs(ref[ok]), 1e-300)
        assert rel.max() <= 1e-9, f"{name}: max relative error {rel.max()}"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_step_equals_talib_on_random_walks_after_talibs_warmup(seed):
    rng = np.random.default_rng(seed)
    closes = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 400)))
    assert_equal_to_talib(_run(closes), closes)


def test_step_equals_talib_on_flat_series_with_rsi_zero_rule():
    closes = np.full(60, 42.0)
    values = _run(closes)
    assert_equal_to_talib(values, closes)
    assert values["rsi_14"][20] == 0.0


def test_many_symbols_in_one_step_equal_one_symbol_at_a_time():
    rng = np.random.default_rng(9)
    closes = 50 * np.exp(np.cumsum(rng.normal(0, 0.01, (5, 250)), axis=1))
    state = ind.empty_state(5)
    for t in range(250):
        c = closes[:, t]
        state, values = ind.step(state, ind.Bars(open=c, close=c, volume=np.ones(5), pv=c, day=np.zeros(5)))
    for s in range(5):
        single = _run(closes[s])
        for k in ind.OUTPUTS:
            assert values[k][s] == single[k][-1] or (np.isnan(values[k][s]) and np.isnan(single[k][-1]))


def test_session_vwap_resets_at_the_utc_day_boundary():
    state = ind.empty_state(1)
    for day, price, vol in ((0, 10.0, 1.0), (0, 20.0, 3.0), (1, 30.0, 2.0)):
        bar = ind.Bars(
            open=np.array([price]),
            close=np.array([price]),
            volume=np.array([vol]),
            pv=np.array([price * vol]),
            day=np.array([float(day)]),
        )
        state, out = ind.step(state, bar)
        if day == 0 and price == 20.0:
            assert out["session_vwap"][0] == pytest.approx((10 + 60) / 4)
    assert out["session_vwap"][0] == 30.0


@pytest.mark.parametrize("kind", ind.SIGNAL_TYPES)
def test_signal_fires_on_its_crafted_series(kind):
    o, c, v = crafted(kind)
    assert (len(c) - 1, kind) in run_series(o, c, v)


@pytest.mark.parametrize("kind", ind.SIGNAL_TYPES)
def test_signal_does_not_fire_on_its_near_miss(kind):
    o, c, v = crafted(kind, near_miss=True)
    assert (len(c) - 1, kind) not in run_series(o, c, v)
