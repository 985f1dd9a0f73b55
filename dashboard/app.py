"""The dashboard's entry point: `streamlit run dashboard/app.py` (or `python -m dashboard`)."""

from __future__ import annotations

import streamlit as st

from dashboard.metrics import PAGE_RUNS

st.set_page_config(page_title="marketpipe", page_icon="📈", layout="wide")
page = st.navigation(
    [
        st.Page(
            "views/market.py", title="Market", icon=":material/candlestick_chart:", default=True
        ),  # served at /
        st.Page("views/compare.py", title="Compare", icon=":material/compare_arrows:", url_path="compare"),
        st.Page("views/quality.py", title="Data quality", icon=":material/fact_check:", url_path="quality"),
        st.Page("views/health.py", title="System health", icon=":material/monitor_heart:", url_path="health"),
    ]
)
PAGE_RUNS.labels(page.title).inc()
page.run()
