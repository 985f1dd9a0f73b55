"""fct_daily_prices equals TA-Lib on the same closes, after a full build and after incremental runs."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
import talib

from dbt_project import sample_data
from tests.dbt.conftest import DAILY_SYMBOLS, GAPPY_SYMBOL

pytestmark = pytest.mark.slow

RTOL = 1e-9
COLUMNS = ("ma_50", "ma_200", "rsi_14", "macd", "macd_signal", "macd_hist")


def ta_lib_indicators(close: np.ndarray) -> dict[str, np.ndarray]:
    macd, signal, hist = talib.MACD(close, fastperiod=12, slowperiod=26, signalperiod=9)
    return {
        "ma_50": talib.SMA(close, 50),
        "ma_200": talib.SMA(close, 200),
        "rsi_14": talib.RSI(close, 14),
        "macd": macd,
        "macd_signal": signal,
        "macd_hist": hist,
    }


def mart_series(db, symbol: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rows = db.query(
        f"select close, {', '.join(COLUMNS)} from marts.fct_daily_prices"
        " where symbol = %s order by trade_date",
        (symbol,),
    )
    data = np.array([[np.nan if v is None else v for v in row] for row in rows], dtype=float)
    return data[:, 0], {c: data[:, i + 1] for i, c in enumerate(COLUMNS)}


def assert_equals_ta_lib(db, symbol: str) -> None:
    close, got = mart_series(db, symbol)
    expected = ta_lib_indicators(close)
    for column in COLUMNS:
        want = expected[column]
        # null exactly during TA-Lib's warm-up, equal after it
        np.testing.assert_array_equal(
            np.isnan(got[column]), np.isnan(want), err_msg=f"{symbol} {column} warm-up"
        )
        ready = ~np.isnan(want)
        assert ready.sum() > 50, f"{symbol} {column}: too short a series to compare"
        np.testing.assert_allclose(
            got[column][ready], want[ready], rtol=RTOL, atol=0, err_msg=f"{symbol} {column}"
        )


@pytest.mark.parametrize("symbol", [*DAILY_SYMBOLS, GAPPY_SYMBOL])
def test_daily_indicators_equal_ta_lib_after_full_build(dbt_db, symbol):
    assert_equals_ta_lib(dbt_db, symbol)


def test_gappy_symbol_really_has_gaps(dbt_db):
    close, _ = mart_series(dbt_db, GAPPY_SYMBOL)
    assert len(dbt_db.days) * 0.7 < len(close) < len(dbt_db.days) * 0.95


def test_incremental_new_days_equal_ta_lib_and_touch_only_their_partition(dbt_db):
    # two new weekdays at the start of a month after the history: a month with no partition yet
    last = dbt_db.days[-1]
    month = (last.replace(day=1) + timedelta(days=62)).replace(day=1)
    new_days = [d for d in (month + timedelta(days=i) for i in range(7)) if d.weekday() < 5][:2]
    symbols = [DAILY_SYMBOLS[0], GAPPY_SYMBOL]
    extra = [
        sample_data.daily_series(s, new_days, seed=900 + i, start_price=120.0) for i, s in enumerate(symbols)
    ]
    writer = dbt_db.connect("writer")
    try:
        sample_data.load_daily_bars(writer, extra)
    finally:
        writer.close()
    (xid_before,) = dbt_db.query("select txid_current()")[0]
    counts_before = dict(dbt_db.query("select symbol, count(*) from marts.fct_daily_prices group by symbol"))

    result = dbt_db.dbt("build")
    assert result.ok, result.stdout[-3000:]

    counts_after = dict(dbt_db.query("select symbol, count(*) from marts.fct_daily_prices group by symbol"))
    for s in symbols:
        assert counts_after[s] == counts_before[s] + len(new_days)
        assert_equals_ta_lib(dbt_db, s)
    # the untouched symbols' rows were not rewritten
    rewritten = dbt_db.query(
        "select distinct symbol from intermediate.int_daily_indicators_computed where xmin::text::bigint > %s"
        " order by 1",
        (xid_before,),
    )
    assert [r[0] for r in rewritten] == sorted(symbols)
    # staging wrote into the new month's partition only
    partitions = dbt_db.query(
        "select distinct tableoid::regclass::text from staging.stg_raw__bars where xmin::text::bigint > %s",
        (xid_before,),
    )
    assert partitions == [(f"staging.stg_raw__bars_p{month:%Y%m}",)]


def test_late_corrections_resume_from_kept_state_or_recompute_the_symbol(dbt_db):
    # a close corrected 5 trading days back resumes from the state kept on the day before it; one
    # corrected 150 days back (older than var ta_state_days = 30) recomputes its symbol from day one
    recent_symbol, old_symbol = DAILY_SYMBOLS[1], DAILY_SYMBOLS[2]
    corrections = {recent_symbol: dbt_db.days[-5], old_symbol: dbt_db.days[-150]}
    writer = dbt_db.connect("writer")
    try:
        with writer.cursor() as cur:
            for symbol, day in corrections.items():
                cur.execute(
                    "update raw.bars set close = (high + low) / 2 + 0.001 * (high - low), landed_at = now()"
                    " where symbol = %s and interval = '1d' and bar_start = %s",
                    (symbol, sample_data.session_start_utc(day)),
                )
                assert cur.rowcount == 1
        writer.commit()
    finally:
        writer.close()
    (xid_before,) = dbt_db.query("select txid_current()")[0]

    result = dbt_db.dbt("build")
    assert result.ok, result.stdout[-3000:]

    for symbol, day in corrections.items():
        assert_equals_ta_lib(dbt_db, symbol)
        ((stored_close, raw_close),) = dbt_db.query(
            "select p.close, r.close from marts.fct_daily_prices p join raw.bars r"
            " on r.symbol = p.symbol and r.interval = '1d' and r.bar_start = %s"
            " where p.symbol = %s and p.trade_date = %s",
            (sample_data.session_start_utc(day), symbol, day),
        )
        assert stored_close == raw_close
    rewritten = dict(
        dbt_db.query(
            "select symbol, min(trade_date) from intermediate.int_daily_indicators_computed"
            " where xmin::text::bigint > %s group by symbol",
            (xid_before,),
        )
    )
    first_day = dict(
        dbt_db.query("select symbol, min(trade_date) from marts.fct_daily_prices group by symbol")
    )
    assert rewritten == {recent_symbol: corrections[recent_symbol], old_symbol: first_day[old_symbol]}
