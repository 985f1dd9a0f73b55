"""Airflow assets shared by the DAGs that produce and consume them."""

from __future__ import annotations

from airflow.sdk import Asset

# the daily bars of the configured symbols have landed in raw.bars (market_ingest emits it once the
# stream has written them; dbt_daily runs on it)
DAILY_BARS = Asset(name="raw_bars_daily", uri="x-marketpipe://raw/bars/1d")
