"""The dashboard's custom indicators equal TA-Lib, warm-up (NaN) included; the chart helpers' maths."""

from __future__ import annotations

import numpy as np
import pytest
import talib

from dashboard import indicators as ind
from tests.dashboard.helpers import assert_close


def _walk(seed: int, n: int = 600, scale: float = 0.015) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 100 * np.exp(np.cumsum(rng.normal(0, scale, n)))


SERIES = {
    "walk1": _walk(1),
    "walk2": _walk(2, 2600, 0.02),
    "flat": np.full(80, 42.0),
    "short": _walk(3, 12),
    "steps": np.repeat([10.0, 11.0, 10.5, 12.0], 25),
}


@pytest.mark.parametrize("name", sorted(SERIES))
@pytest.mark.parametrize("period", [2, 5, 14, 20, 50, 200])
def test_sma_ema_rsi_equal_talib(name, period):
    x = SERIES[name]
    assert_close(ind.sma(x, period), talib.SMA(x, period), f"SMA {period} {name}", rel=1e-9)
    assert_close(ind.ema(x, period), talib.EMA(x, period), f"EMA {period} {name}", rel=1e-9)
    assert_close(ind.rsi(x, period), talib.RSI(x, period), f"RSI {period} {name}", rel=1e-9)


@pytest.mark.parametrize("name", sorted(SERIES))
@pytest.mark.parametrize("period", [2, 5, 20, 50])
def test_bollinger_bands_equal_talib(name, period):
    x = SERIES[name]
    upper, middle, lower = ind.bbands(x, period)
    ref_upper, ref_middle, ref_lower = talib.BBANDS(x, period, 2.0, 2.0, talib.MA_Type.SMA)
    assert_close(upper, ref_upper, f"upper {period} {name}", rel=1e-9)
    assert_close(middle, ref_middle, f"middle {period} {name}", rel=1e-9)
    assert_close(lower, ref_lower, f"lower {period} {name}", rel=1e-9)


@pytest.mark.parametrize("step", [1e-9, 1e-12, 1e-15])
def test_tiny_moves_are_not_rounded_to_zero_as_talib(step):
    x = np.array([1.0, 1.0 + step] * 30)
    assert_close(ind.rsi(x, 3), talib.RSI(x, 3), "RSI of tiny moves", rel=1e-9)
    ref_upper, ref_middle, _ = talib.BBANDS(x, 2, 2.0, 2.0, talib.MA_Type.SMA)
    upper, middle, _ = ind.bbands(x, 2)
    assert_close(upper - middle, ref_upper - ref_middle, "band width of tiny moves", rel=1e-6)


def test_flat_series_gives_rsi_zero_and_bands_on_the_mean_as_talib():
    x = SERIES["flat"]
    assert ind.rsi(x, 14)[20] == 0.0 == talib.RSI(x, 14)[20]
    upper, middle, lower = ind.bbands(x, 20)
    assert upper[30] == middle[30] == lower[30] == 42.0


@pytest.mark.parametrize("period", [1, 0, -3, 501])
def test_periods_outside_the_allowed_range_are_refused(period):
    with pytest.raises(ValueError, match="outside"):
        ind.sma(SERIES["walk1"], period)


def test_compute_names_each_series_by_its_label():
    x = SERIES["walk1"]
    assert list(ind.compute(ind.CustomIndicator("BBANDS", 20), x)) == [
        "BBANDS 20 upper",
        "BBANDS 20 middle",
        "BBANDS 20 lower",
    ]
    assert_close(ind.compute(ind.CustomIndicator("EMA", 9), x)["EMA 9"], talib.EMA(x, 9), "EMA 9", rel=1e-9)


def test_rebase_volume_profile_change_and_momentum():
    assert ind.rebase([50.0, 55.0, 45.0]).tolist() == pytest.approx([100.0, 110.0, 90.0], rel=1e-15)
    levels, volume = ind.volume_profile([1.0, 2.0, 3.0, 3.0], [10.0, 20.0, 30.0, 5.0], bins=2)
    assert levels.tolist() == [1.5, 2.5] and volume.tolist() == [10.0, 55.0]
    assert ind.change(110.0, 100.0) == (10.0, 10.0)
    assert ind.momentum(np.arange(1.0, 13.0), 10) == pytest.approx((12 / 2 - 1) * 100)
    assert np.isnan(ind.momentum([1.0, 2.0], 10))
