# The project's images for docker-compose.yml, one Dockerfile, two targets (pinned bases):
#   pipeline: init (migrations, topics, seeds), ingest, streaming (Spark on Java 17), the dashboard
#   airflow:  the official Airflow image of the version in requirements.txt, with the project's
#             packages, dags/ and dbt project baked in (api-server, scheduler, dag-processor)
FROM python:3.11-slim AS pipeline
RUN apt-get update && apt-get install -y --no-install-recommends openjdk-17-jre-headless maven make \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY requirements.txt constraints.txt ./
RUN pip install --no-cache-dir -r requirements.txt -c constraints.txt
COPY jvm/ jvm/
RUN mvn -q -B -f jvm/spark/pom.xml dependency:copy-dependencies -DincludeScope=runtime \
      -DoutputDirectory=/app/.state/jars/spark
COPY . .
ENV PYTHONPATH=/app MP_STATE_DIR=/app/.state AIRFLOW__CORE__LOAD_EXAMPLES=False \
    AIRFLOW__COSMOS__ENABLE_TELEMETRY=False

FROM apache/airflow:3.3.2-python3.11 AS airflow
WORKDIR /app
COPY requirements.txt constraints.txt ./
RUN pip install --no-cache-dir -r requirements.txt -c constraints.txt
COPY --chown=airflow:0 . .
ENV PYTHONPATH=/app MP_STATE_DIR=/opt/airflow/state AF_HOME=/opt/airflow \
    MP_AIRFLOW_DBT_TARGET=/opt/airflow/dbt-target
