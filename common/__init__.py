"""Shared contracts and settings used by every component (ingest, streaming, dbt helpers, DAGs)."""
