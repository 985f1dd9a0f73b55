"""Compare: several symbols' performance on one chart, rebased to 100 at the range's start."""

from __future__ import annotations

from datetime import date, timedelta

import pandas as pd
import streamlit as st

from dashboard import figures, queries
from dashboard.settings import dashboard_settings
from dashboard.ui import shown_errors

settings = dashboard_settings()
st.title("Compare")

with shown_errors():
    symbols = queries.read_symbols()
if symbols.empty:
    st.info("No symbols yet: load data and run `dbt build` (or `make demo`).")
    st.stop()

options = symbols["symbol"].tolist()
last_day = symbols["last_trade_date"].dropna().max()
last_day = last_day if pd.notna(last_day) else date.today()
cols = st.columns([3, 2])
chosen = cols[0].multiselect(
    "Symbols",
    options,
    default=options[: min(3, len(options))],
    key="compare_symbols",
    max_selections=settings.max_compare_symbols,
)
picked = cols[1].date_input(
    "Range", value=(last_day - timedelta(days=settings.default_days), last_day), key="compare_range"
)
if not chosen:
    st.info("Choose one or more symbols.")
    st.stop()
if not (isinstance(picked, tuple | list) and len(picked) == 2):
    st.info("Choose the range's end date.")
    st.stop()
start, end = picked
with shown_errors():
    closes = queries.read_compare(chosen, start, end)
if closes.empty:
    st.info(f"No daily prices for {', '.join(chosen)} between {start} and {end}.")
    st.stop()

st.plotly_chart(figures.compare_figure(closes), key="compare_chart")
summary = (
    closes.groupby("symbol", sort=True)["close"]
    .agg(first="first", last="last", days="count")
    .assign(performance=lambda f: (f["last"] / f["first"] - 1) * 100)
    .reset_index()
)
st.dataframe(
    summary,
    key="compare_table",
    hide_index=True,
    column_config={"performance": st.column_config.NumberColumn("performance %", format="%+.2f")},
)
