"""The orchestration layer: what Airflow's DAGs (dags/) call. DAG files stay declarative; the logic
(Cosmos rendering, the quality gate, alerts, deadlines, the stream supervisor, scheduled ingest)
lives here, importable and testable without Airflow's scheduler."""
