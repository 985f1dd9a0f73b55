"""The dashboard's entry point: `streamlit run dashboard/app.py` (or `python -m dashboard`)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

VIEWS = Path(__file__).parent / "views"

st.set_page_config(page_title="marketpipe", page_icon="📈", layout="wide")
page = st.navigation(
    [
        st.Page(
            VIEWS / "market.py", title="Market", icon=":material/candlestick_chart:", default=True
        ),  # served at /
        st.Page(VIEWS / "compare.py", title="Compare", icon=":material/compare_arrows:", url_path="compare"),
        st.Page(VIEWS / "quality.py", title="Data quality", icon=":material/fact_check:", url_path="quality"),
        st.Page(
            VIEWS / "health.py", title="System health", icon=":material/monitor_heart:", url_path="health"
        ),
    ]
)
page.run()
