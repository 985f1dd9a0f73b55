"""Every page run by Streamlit's AppTest on a seeded real PostgreSQL: what it shows equals the marts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import talib

from tests.dashboard.conftest import LIVE_MINUTES, LIVE_SYMBOL, SYMBOLS
from tests.dashboard.helpers import (
    assert_close,
    decode,
    floats,
    metrics,
    no_exception,
    only_figure,
    run_page,
    traces,
)

DAILY_COLUMNS = (
    "trade_date, open, high, low, close, volume, ma_50, ma_200, rsi_14, macd, macd_signal, macd_hist"
)


def _mart(db, symbol: str, start, end) -> pd.DataFrame:
    rows = db.query(
        f"select {DAILY_COLUMNS} from marts.fct_daily_prices where symbol = %s"
        " and trade_date between %s and %s order by trade_date",
        (symbol, start, end),
    )
    return pd.DataFrame(rows, columns=[c.strip() for c in DAILY_COLUMNS.split(",")]).astype(
        {c: float for c in DAILY_COLUMNS.split(", ")[1:]}
    )


def _daily(db, symbol: str = "DASHB", **extra) -> tuple:
    start, end = db.days[0], db.days[-1]
    at = run_page(
        "market", {"symbol": symbol, "timeframe": "daily", "start": str(start), "end": str(end), **extra}
    )
    no_exception(at)
    return at, _mart(db, symbol, start, end)


def test_market_daily_chart_draws_the_marts_rows_indicators_and_crosses(dashboard_db):
    at, mart = _daily(dashboard_db)
    fig = only_figure(at)
    t = traces(fig)
    dates = [d.isoformat() for d in mart["trade_date"]]
    assert t["price"]["type"] == "candlestick" and decode(t["price"]["x"]) == dates
    for field in ("open", "high", "low", "close"):
        assert_close(floats(t["price"][field]), mart[field], field)
    assert_close(floats(t["volume"]["y"]), mart["volume"], "volume")
    for name, column in (
        ("MA50", "ma_50"),
        ("MA200", "ma_200"),
        ("RSI 14", "rsi_14"),
        ("MACD", "macd"),
        ("signal", "macd_signal"),
        ("histogram", "macd_hist"),
    ):
        assert_close(floats(t[name]["y"]), mart[column], name)
    assert mart["ma_200"].notna().sum() == len(mart) - 199  # the range covers MA200's warm-up
    # RSI's 30/70 lines, weekends hidden, the volume profile holds every unit of volume
    assert sorted(s["y0"] for s in fig["layout"]["shapes"]) == [30, 70]
    assert {"bounds": ["sat", "mon"]} in fig["layout"]["xaxis"]["rangebreaks"]
    assert t["volume profile"]["orientation"] == "h"
    assert floats(t["volume profile"]["x"]).sum() == pytest.approx(mart["volume"].sum(), rel=1e-12)
    # golden and death crosses where fct_ma_crosses has them, named on hover
    crosses = dashboard_db.query(
        "select trade_date, cross_type, ma_50 from marts.fct_ma_crosses where symbol = 'DASHB' order by 1"
    )
    assert crosses, "the seeded series should cross at least once"
    for kind in ("golden", "death"):
        expected = [(d.isoformat(), m) for d, k, m in crosses if k == kind]
        if not expected:
            assert f"{kind} cross" not in t
            continue
        marker = t[f"{kind} cross"]
        assert list(zip(decode(marker["x"]), floats(marker["y"]), strict=True)) == expected
        assert set(decode(marker["text"])) == {f"{kind} cross"}
    shown = metrics(at)
    assert shown["Last price"] == f"{mart['close'].iloc[-1]:,.2f}"
    assert shown["As of (UTC)"] == str(mart["trade_date"].iloc[-1])
    expected_momentum = (mart["close"].iloc[-1] / mart["close"].iloc[-11] - 1) * 100
    assert shown["Momentum (10 days)"] == f"{expected_momentum:+.2f} %"


def test_market_header_shows_the_latest_tick_and_its_change_from_the_previous_close(dashboard_db):
    at, mart = _daily(dashboard_db, LIVE_SYMBOL)
    shown = metrics(at)
    assert shown["Last price"] == f"{dashboard_db.tick_price:,.2f}"
    assert shown["As of (UTC)"] == f"{dashboard_db.tick_time:%Y-%m-%d %H:%M:%S}"
    delta = next(m for m in at.metric if m.label == "Last price").delta
    diff = dashboard_db.tick_price - mart["close"].iloc[-1]
    assert delta == f"{diff:+,.2f} ({diff / mart['close'].iloc[-1] * 100:+.2f}%)"


def test_market_live_view_draws_todays_stream_bars_forming_bar_and_signals(dashboard_db):
    at = run_page("market", {"symbol": LIVE_SYMBOL, "timeframe": "live"})
    no_exception(at)
    rows = dashboard_db.query(
        "select bar_start, open, high, low, close, volume, is_final from rt.bars_1m where symbol = %s"
        " and bar_start >= (select date_trunc('day', max(bar_start) at time zone 'UTC') at time zone 'UTC'"
        " from rt.bars_1m where symbol = %s) order by bar_start",
        (LIVE_SYMBOL, LIVE_SYMBOL),
    )
    assert 0 < len(rows) <= LIVE_MINUTES and rows[-1][-1] is False
    t = traces(only_figure(at))
    final = [r for r in rows if r[-1]]
    assert len(decode(t["price"]["x"])) == len(final)
    assert_close(floats(t["price"]["close"]), [r[4] for r in final], "closed bars' closes")
    assert_close(floats(t["forming bar"]["close"]), [rows[-1][4]], "forming bar's close")
    assert t["forming bar"]["opacity"] < 1
    assert_close(floats(t["volume"]["y"]), [r[5] for r in rows], "volume")
    signals = dashboard_db.query(
        "select signal_type, signal_time from rt.signals where symbol = %s and signal_time >= %s"
        " order by signal_time",
        (LIVE_SYMBOL, rows[0][0]),
    )
    if signals:
        assert decode(t["signals"]["text"]) == [s for s, _ in signals]
        shown_at = pd.to_datetime(decode(t["signals"]["x"]), utc=True)
        assert list(shown_at) == [pd.Timestamp(at).floor("min") for _, at in signals]
    assert metrics(at)["Last price"] == f"{dashboard_db.tick_price:,.2f}"
    assert metrics(at)["As of (UTC)"] == f"{dashboard_db.tick_time:%H:%M:%S.%f}"[:-3]
    closes = np.array([r[4] for r in rows])
    if len(closes) > 10:
        assert metrics(at)["Momentum (10 bars)"] == f"{(closes[-1] / closes[-11] - 1) * 100:+.2f} %"


def test_market_past_day_draws_the_stream_marts_bars_and_signals(dashboard_db):
    day = dashboard_db.query(
        "select (max(bar_start) at time zone 'UTC')::date from marts.fct_intraday_bars_1m where symbol = %s",
        (LIVE_SYMBOL,),
    )[0][0]
    at = run_page("market", {"symbol": LIVE_SYMBOL, "timeframe": "day", "day": str(day)})
    no_exception(at)
    rows = dashboard_db.query(
        "select close, volume, is_final from marts.fct_intraday_bars_1m where symbol = %s"
        " and bar_start >= %s::date and bar_start < %s::date + 1 order by bar_start",
        (LIVE_SYMBOL, day, day),
    )
    signals = dashboard_db.query(
        "select signal_type, signal_time from marts.fct_intraday_signals where symbol = %s"
        " and signal_time >= %s::date and signal_time < %s::date + 1 order by signal_time",
        (LIVE_SYMBOL, day, day),
    )
    assert rows and len(signals) >= 2
    t = traces(only_figure(at))
    assert_close(floats(t["price"]["close"]), [r[0] for r in rows if r[2]], "closed bars' closes")
    assert_close(floats(t["volume"]["y"]), [r[1] for r in rows], "volume")
    assert decode(t["signals"]["text"]) == [s for s, _ in signals]
    shown_at = pd.to_datetime(decode(t["signals"]["x"]), utc=True)
    assert list(shown_at) == [pd.Timestamp(at).floor("min") for _, at in signals]


def test_custom_indicators_added_by_the_user_equal_talib_on_the_marts_closes(dashboard_db):
    at, mart = _daily(dashboard_db, "DASHC")
    for kind, period in (("SMA", 20), ("EMA", 30), ("BBANDS", 15), ("RSI", 9)):
        at.selectbox(key="indicator_kind").select(kind)
        at.number_input(key="indicator_period").set_value(period)
        at.button(key="indicator_add").click()
        at.run()
        no_exception(at)
    t = traces(only_figure(at))
    closes = mart["close"].to_numpy()
    upper, middle, lower = talib.BBANDS(closes, 15, 2.0, 2.0, talib.MA_Type.SMA)
    for name, expected in (
        ("SMA 20", talib.SMA(closes, 20)),
        ("EMA 30", talib.EMA(closes, 30)),
        ("BBANDS 15 upper", upper),
        ("BBANDS 15 middle", middle),
        ("BBANDS 15 lower", lower),
        ("RSI 9", talib.RSI(closes, 9)),
    ):
        assert_close(floats(t[name]["y"]), expected, name, rel=1e-9)
    assert t["RSI 9"]["yaxis"] == t["RSI 14"]["yaxis"]  # in the RSI panel, not on the prices
    assert t["SMA 20"]["yaxis"] == t["price"]["yaxis"]


def test_compare_rebases_each_symbol_to_100_at_the_ranges_start(dashboard_db):
    at = run_page("compare")
    no_exception(at)
    t = traces(only_figure(at))
    start, end = at.date_input(key="compare_range").value
    assert set(t) == set(SYMBOLS)
    for symbol in SYMBOLS:
        rows = dashboard_db.query(
            "select close from marts.fct_daily_prices where symbol = %s"
            " and trade_date between %s and %s order by trade_date",
            (symbol, start, end),
        )
        closes = np.array([c for (c,) in rows])
        assert_close(floats(t[symbol]["y"]), closes / closes[0] * 100, symbol)
        assert floats(t[symbol]["y"])[0] == 100.0
    table = at.dataframe[0].value.set_index("symbol")
    assert sorted(table.index) == sorted(SYMBOLS)


def test_quality_page_shows_the_scores_failing_tests_and_dead_letters(dashboard_db):
    at = run_page("quality")
    no_exception(at)
    latest = dashboard_db.query(
        "select score, tests_failed from quality.run_scores order by run_started_at desc limit 1"
    )[0]
    assert latest[1] > 0, "the planted negative volume should fail a test"
    shown = metrics(at)
    assert shown["Score (latest run)"] == f"{latest[0]:,.2f}"
    assert shown["Tests failed"] == str(latest[1])
    failing = next(d.value for d in at.dataframe if "test_name" in d.value.columns)
    expected = dashboard_db.query(
        "select t.test_name from quality.test_results t join (select invocation_id"
        " from quality.run_scores order by run_started_at desc limit 5) r using (invocation_id)"
        " where t.status in ('fail', 'error', 'warn')"
    )
    assert sorted(failing["test_name"]) == sorted(n for (n,) in expected)
    assert "fail" in set(failing["status"])
    charts = {tuple(tr["name"] for tr in spec["data"]): spec for spec in _figures(at)}
    score_chart = next(spec for names, spec in charts.items() if "score" in names)
    scores = dashboard_db.query("select score from quality.run_scores order by run_started_at")
    assert_close(floats(traces(score_chart)["score"]["y"]), [s for (s,) in scores], "score over time")
    letters = next(spec for names, spec in charts.items() if "stream: bad_json" in names)
    from tests.dashboard.conftest import DEAD_LETTERS

    for stage, reason, count, _ in DEAD_LETTERS:
        assert floats(traces(letters)[f"{stage}: {reason}"]["y"]).sum() == count


def _figures(at):
    import json

    return [json.loads(node.proto.spec) for node in at.get("plotly_chart")]
