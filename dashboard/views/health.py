"""System health: throughput, latency p95, Kafka lag and components from Prometheus; DAG runs from Airflow."""

from __future__ import annotations

import streamlit as st

from dashboard import figures, health
from dashboard.settings import dashboard_settings
from dashboard.ui import fmt, shown_errors

settings = dashboard_settings()
st.title("System health")


@st.cache_data(ttl=5, show_spinner=False)
def _instant(url: str, expr: str) -> float | None:
    return health.scalar(health.prometheus_query(settings, expr))


@st.cache_data(ttl=5, show_spinner=False)
def _components(url: str):
    return health.components(settings)


@st.cache_data(ttl=15, show_spinner=False)
def _range(url: str, expr: str):
    return health.prometheus_range(settings, expr)


@st.cache_data(ttl=15, show_spinner=False)
def _dag_runs(url: str):
    return health.dag_runs(settings)


@st.cache_data(ttl=5, show_spinner=False)
def _airflow_components(url: str):
    return health.airflow_components(settings)


st.subheader("Pipeline")
with shown_errors(stop=False):
    url = settings.prometheus_url
    values = {
        name: _instant(url, expr)
        for name, expr in (
            ("ingest", health.INGEST_RATE),
            ("stream", health.STREAM_RATE),
            ("p95", health.LATENCY_P95),
            ("lag", health.KAFKA_LAG),
            ("heartbeat", health.HEARTBEAT_AGE),
        )
    }
    cols = st.columns(5)
    cols[0].metric("Ingest throughput", fmt(values["ingest"], ",.0f") + " rec/s")
    cols[1].metric("Stream throughput", fmt(values["stream"], ",.0f") + " ticks/s")
    p95 = values["p95"]
    cols[2].metric("End-to-end latency p95", fmt(p95, ".2f") + " s")
    cols[3].metric("Kafka lag (max per partition)", fmt(values["lag"], ",.0f") + " records")
    cols[4].metric("Stream heartbeat age", fmt(values["heartbeat"], ".0f") + " s")
    st.caption(f"From Prometheus at {url}; – means the component has not reported that series.")

    st.subheader("Components")
    comps = _components(url)
    st.dataframe(comps, key="components", hide_index=True)
    down = comps[comps["state"] == "down"]
    if len(down):
        st.warning("Down: " + ", ".join(down["component"]))

    left, right = st.columns(2)
    rates = {"ingest": health.INGEST_RATE, "stream": health.STREAM_RATE}
    series = {name: frame for name, expr in rates.items() for _, frame in _range(url, expr)}
    left.plotly_chart(
        figures.series_figure(series, "Throughput, last 15 min", "per second"),
        key="throughput_chart",
    )
    latency = dict(("p95", frame) for _, frame in _range(url, health.LATENCY_P95)[:1])
    right.plotly_chart(
        figures.series_figure(latency, "End-to-end latency p95, last 15 min", "seconds"),
        key="latency_chart",
    )

st.subheader("Airflow")
with shown_errors(stop=False):
    # the api-server's health first: a missing Airflow says so, not that a password is missing
    st.dataframe(_airflow_components(settings.airflow_url), key="airflow_components", hide_index=True)
    runs = _dag_runs(settings.airflow_url)
    if runs.empty:
        st.info("Airflow answers, and has no DAG runs yet.")
    else:
        st.plotly_chart(figures.dag_runs_figure(runs), key="dag_runs_chart")
        st.dataframe(runs, key="dag_runs", hide_index=True)
