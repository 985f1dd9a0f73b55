"""Market: candles with MA50/200, volume, RSI, MACD, volume profile, crosses and signals; live or daily."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pandas as pd
import streamlit as st

from dashboard import figures, indicators, queries
from dashboard.settings import dashboard_settings
from dashboard.ui import fmt, shown_errors

LIVE, DAILY, PAST_DAY = "Live 1-minute (today)", "Daily", "1-minute (a past day)"
TIMEFRAMES = {"live": LIVE, "daily": DAILY, "day": PAST_DAY}

settings = dashboard_settings()
st.title("Market")

with shown_errors():
    try:
        symbols = queries.read_symbols()
    except queries.NotBuilt as exc:  # live symbols can be shown before dbt has built the marts
        st.info(str(exc))
        symbols = pd.DataFrame(columns=["symbol", "first_trade_date", "last_trade_date"])

# query parameters (bookmarkable): symbol, timeframe, start, end, day; refused when not what they say
params = st.query_params
options = symbols["symbol"].tolist()
wanted = params.get("symbol")
if wanted is not None:
    with shown_errors(stop=False):
        queries.check_symbol(wanted)
        if wanted not in options:  # a symbol new in the stream is not in dim_symbols until dbt runs
            options.insert(0, wanted)
            st.caption(f"{wanted} is not in marts.dim_symbols (yet): live data only, if any.")
if not options:
    st.info("No symbols yet: load data and run `dbt build` (or `make demo`).")
    st.stop()
default_index = options.index(wanted) if wanted in options else 0

top = st.columns([2, 3, 3])
symbol = top[0].selectbox("Symbol", options, index=default_index, key="symbol", help="Type to search")
timeframe_default = TIMEFRAMES.get(params.get("timeframe", "daily"), DAILY)
timeframe = top[1].radio(
    "Timeframe",
    list(TIMEFRAMES.values()),
    index=list(TIMEFRAMES.values()).index(timeframe_default),
    horizontal=True,
    key="timeframe",
)
known = symbols.set_index("symbol")["last_trade_date"]
last_day = known.get(symbol)
last_day = last_day if last_day is not None and pd.notna(last_day) else date.today()

# custom indicators: kind and period of the user's choice, kept for the session
custom: list[indicators.CustomIndicator] = st.session_state.setdefault("custom_indicators", [])
with st.expander("Custom indicators", expanded=bool(custom)):
    c = st.columns([2, 2, 1, 1])
    kind = c[0].selectbox("Indicator", indicators.KINDS, key="indicator_kind")
    period = c[1].number_input(
        "Period",
        min_value=indicators.MIN_PERIOD,
        max_value=indicators.MAX_PERIOD,
        value=20,
        step=1,
        key="indicator_period",
    )
    if c[2].button("Add", key="indicator_add"):
        chosen = indicators.CustomIndicator(kind, int(period))
        if chosen not in custom:
            custom.append(chosen)
    if c[3].button("Clear", key="indicator_clear"):
        custom.clear()
    if custom:
        st.caption("On the chart: " + ", ".join(i.label for i in custom))


def header(last_price: float, reference: float | None, closes, as_of: str, lookback: int, unit: str) -> None:
    diff, pct = indicators.change(last_price, reference) if reference else (float("nan"), float("nan"))
    mom = indicators.momentum(closes, lookback)
    cols = st.columns(4)
    cols[0].metric(
        "Last price", fmt(last_price), delta=None if diff != diff else f"{diff:+,.2f} ({pct:+.2f}%)"
    )
    cols[1].metric(f"Momentum ({lookback} {unit})", fmt(mom, "+.2f", "–") + (" %" if mom == mom else ""))
    cols[2].metric("As of (UTC)", as_of)
    cols[3].metric("Symbol", symbol)


def latest_tick() -> tuple[float, datetime] | None:
    tick = queries.read_latest_tick(symbol)
    if tick.empty:
        return None
    return float(tick["price"].iloc[0]), tick["event_time"].iloc[0]


def draw_intraday(bars: pd.DataFrame, signals: pd.DataFrame, key: str) -> None:
    fig = figures.market_figure(
        bars,
        time_column="bar_start",
        ma_columns=("sma_50", "sma_200"),
        signals=signals,
        custom=custom,
        intraday=True,
    )
    st.plotly_chart(fig, key=key)


if timeframe == DAILY:
    default_start = last_day - timedelta(days=settings.default_days)
    start, end = default_start, last_day
    if "start" in params or "end" in params:
        with shown_errors(stop=False):
            asked = (
                queries.parse_date(params.get("start", default_start.isoformat())),
                queries.parse_date(params.get("end", last_day.isoformat())),
            )
            start, end = queries.check_range(*asked)
    picked = top[2].date_input("Range", value=(start, end), key="daily_range")
    if isinstance(picked, tuple | list) and len(picked) == 2:
        start, end = picked
    with shown_errors():
        prices = queries.read_daily(symbol, start, end)
        crosses = queries.read_crosses(symbol, start, end)
        tick = latest_tick()
    if prices.empty:
        st.info(f"No daily prices for {symbol} between {start} and {end}.")
        st.stop()
    last_close = float(prices["close"].iloc[-1])
    if tick is not None:
        price, when = tick
        before = prices[prices["trade_date"] < when.date()]
        reference = float(before["close"].iloc[-1]) if len(before) else None
        as_of = f"{when:%Y-%m-%d %H:%M:%S}"
    else:
        price, as_of = last_close, str(prices["trade_date"].iloc[-1])
        reference = float(prices["close"].iloc[-2]) if len(prices) > 1 else None
    header(price, reference, prices["close"].to_numpy(float), as_of, 10, "days")
    fig = figures.market_figure(
        prices, time_column="trade_date", ma_columns=("ma_50", "ma_200"), crosses=crosses, custom=custom
    )
    st.plotly_chart(fig, key="daily_chart")

elif timeframe == PAST_DAY:
    day = datetime.now(UTC).date() - timedelta(days=1)
    if "day" in params:
        with shown_errors(stop=False):
            day = queries.parse_date(params["day"])
    day = top[2].date_input("Day (UTC)", value=day, key="intraday_day")
    with shown_errors():
        bars, signals = queries.read_intraday(symbol, day)
    if bars.empty:
        st.info(f"No 1-minute bars for {symbol} on {day} in the stream marts.")
        st.stop()
    header(
        float(bars["close"].iloc[-1]),
        float(bars["open"].iloc[0]),
        bars["close"].to_numpy(float),
        f"{bars['bar_start'].iloc[-1]:%Y-%m-%d %H:%M}",
        10,
        "bars",
    )
    draw_intraday(bars, signals, "intraday_chart")

else:
    top[2].caption(
        f"Header redrawn every {settings.tick_refresh_s:g} s, chart every {settings.live_refresh_s:g} s, "
        "from the stream's tables."
    )

    # two fragments: the header (one small query) more often than the chart (figure and its transfer)
    @st.fragment(run_every=timedelta(seconds=settings.tick_refresh_s))
    def live_header() -> None:
        with shown_errors():
            bars = queries.read_live_bars(symbol)
            tick = latest_tick()
        if bars.empty and tick is None:
            st.info(f"No ticks or 1-minute bars for {symbol} from the stream in the last 7 days.")
            return
        if tick is not None:
            price, when = tick
        else:
            price, when = float(bars["close"].iloc[-1]), bars["bar_start"].iloc[-1]
        header(
            price,
            float(bars["open"].iloc[0]) if len(bars) else None,
            bars["close"].to_numpy(float),
            f"{pd.Timestamp(when).tz_convert(UTC):%H:%M:%S.%f}"[:-3],  # ms: the benchmark reads it
            10,
            "bars",
        )

    @st.fragment(run_every=timedelta(seconds=settings.live_refresh_s))
    def live_chart() -> None:
        with shown_errors():
            bars = queries.read_live_bars(symbol)
            if bars.empty:
                return
            signals = queries.read_live_signals(symbol, bars["bar_start"].iloc[0])
        draw_intraday(bars, signals, "live_chart")

    live_header()
    live_chart()
