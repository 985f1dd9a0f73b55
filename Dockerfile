# The pipeline's Python image for docker-compose.yml (init, ingest, streaming, dashboard, Airflow).
FROM python:3.11-slim
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
