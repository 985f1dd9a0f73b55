"""Data quality: the dbt quality score over time and per dimension, failing tests, dead letters."""

from __future__ import annotations

import streamlit as st

from dashboard import figures, queries
from dashboard.settings import dashboard_settings
from dashboard.ui import fmt, shown_errors

settings = dashboard_settings()
st.title("Data quality")

with shown_errors():
    scores = queries.read_quality_scores()
    failing = queries.read_failing_tests()
    letters = queries.read_dead_letters()

st.subheader("Quality score")
if scores.empty:
    st.info("No dbt run has been scored yet: run `python -m dbt_project build`.")
else:
    latest = scores.iloc[-1]
    cols = st.columns(5)
    previous = scores["score"].iloc[-2] if len(scores) > 1 else None
    delta = None if previous is None or previous != previous else f"{latest['score'] - previous:+.2f}"
    cols[0].metric("Score (latest run)", fmt(latest["score"]), delta=delta)
    cols[1].metric("Tests passed", int(latest["tests_passed"]))
    cols[2].metric("Tests warned", int(latest["tests_warned"]))
    cols[3].metric("Tests failed", int(latest["tests_failed"]))
    cols[4].metric("Latest run (UTC)", f"{latest['run_started_at']:%m-%d %H:%M}")
    left, right = st.columns([3, 2])
    left.plotly_chart(figures.quality_figure(scores), key="score_chart")
    right.plotly_chart(figures.dimension_figure(latest), key="dimension_chart")

st.subheader(f"Failing and warning tests of the latest {settings.failing_runs} runs")
if failing.empty:
    st.success("Every test of the latest runs passed.")
else:
    st.dataframe(
        failing,
        key="failing_tests",
        hide_index=True,
        column_config={"run_started_at": st.column_config.DatetimeColumn("run", format="YYYY-MM-DD HH:mm")},
    )

st.subheader(f"Dead letters of the last {settings.dead_letter_days} days, by stage and reason")
if letters.empty:
    st.success("No dead letters.")
else:
    st.plotly_chart(figures.dead_letter_figure(letters), key="dead_letter_chart")
    totals = letters.groupby(["stage", "reason"], as_index=False)["letters"].sum()
    st.dataframe(totals, key="dead_letter_totals", hide_index=True)
