# Market-data pipeline: one Makefile drives the local stack, tests, benchmarks and the demo.
# Every generated thing lives in $(STATE) (ignored by git).

SHELL := /bin/bash
.DEFAULT_GOAL := help

STATE   ?= .state
PYTHON  ?= python3
VENV    := $(STATE)/venv
PY      := $(VENV)/bin/python
JARS    := $(STATE)/jars
APT_PACKAGES := postgresql prometheus prometheus-postgres-exporter chromium maven strace
PYTEST_ARGS ?=
SOURCE  ?= synthetic

export PYTHONPATH := $(CURDIR)
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__COSMOS__ENABLE_TELEMETRY := False
export DO_NOT_TRACK := 1

.PHONY: chaos help setup apt venv jars env statsd-exporter airflow up down status migrate partitions demo-stop docs dashboard test test-fast lint demo bench clean-state lock

help: ## Show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

setup: apt env venv jars statsd-exporter ## Install whatever is missing: Debian packages, .env, virtualenv, JVM jars, statsd_exporter

apt:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	command -v java >/dev/null 2>&1 || missing="$$missing openjdk-17-jre-headless"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

env: .env
.env: .env.example
	@$(PYTHON) devstack/envfile.py .env.example .env

venv: $(VENV)/.installed
$(VENV)/.installed: requirements.txt constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing Python packages into $(VENV) (first run takes a few minutes)"
	@$(PY) -m pip install -q --upgrade pip wheel
	@$(PY) -m pip install -q -r requirements.txt -c constraints.txt
	@$(PY) -m pip check
	@touch $@

jars: $(JARS)/kafka/.installed $(JARS)/spark/.installed
$(JARS)/kafka/.installed: jvm/kafka/pom.xml
	@echo "fetching the Kafka broker jars"
	@rm -rf $(JARS)/kafka.new && mvn -q -B -f jvm/kafka/pom.xml dependency:copy-dependencies \
	  -DincludeScope=runtime -DoutputDirectory=$(CURDIR)/$(JARS)/kafka.new
	@rm -rf $(JARS)/kafka && mv $(JARS)/kafka.new $(JARS)/kafka && touch $@
$(JARS)/spark/.installed: jvm/spark/pom.xml
	@echo "fetching the Spark Kafka connector and PostgreSQL JDBC jars"
	@rm -rf $(JARS)/spark.new && mvn -q -B -f jvm/spark/pom.xml dependency:copy-dependencies \
	  -DincludeScope=runtime -DoutputDirectory=$(CURDIR)/$(JARS)/spark.new
	@rm -rf $(JARS)/spark && mv $(JARS)/spark.new $(JARS)/spark && touch $@

# Airflow's StatsD metrics reach Prometheus through statsd_exporter (no Debian package): built once
# from the Go module proxy with the machine's Go toolchain
STATSD_EXPORTER_VERSION := v0.31.0
statsd-exporter: $(STATE)/bin/statsd_exporter
$(STATE)/bin/statsd_exporter:
	@command -v go >/dev/null 2>&1 || { echo "the Go toolchain is needed to build statsd_exporter"; exit 1; }
	@echo "building statsd_exporter $(STATSD_EXPORTER_VERSION) (go install)"
	@mkdir -p $(STATE)/bin && GOBIN=$(abspath $(STATE)/bin) GOFLAGS=-buildvcs=false \
	  go install github.com/prometheus/statsd_exporter@$(STATSD_EXPORTER_VERSION)

up: setup ## Start PostgreSQL, Kafka and Prometheus; apply migrations; create topics
	@$(PY) -m devstack up

down: demo-stop ## Stop the demo processes and the local stack (data is kept)
	@test -x $(PY) && $(PY) -m devstack down || true

airflow: up ## Start Airflow (UI, scheduler, dag-processor) and statsd_exporter; print the UI's address
	@$(PY) -m devstack airflow

status: ## Show each service, its port and whether it answers
	@$(PY) -m devstack status

migrate: ## Apply pending database migrations
	@$(PY) -m devstack migrate

partitions: ## Make partitions ahead and drop those past retention
	@$(PY) -m devstack partitions

test: up ## Install what is missing, start the stack, run every test
	@$(PY) -m pytest $(PYTEST_ARGS)

lint: venv ## ruff over the Python code
	@$(VENV)/bin/ruff check .

demo: export MP_DEMO_STARTED := $(shell date +%s.%N)
demo: up ## Start the stack and run the whole pipeline on the offline synthetic source (SOURCE=yahoo: live Yahoo)
	@$(PY) -m devstack demo --source $(SOURCE)
	@$(PY) -m devstack airflow --unpause
	@$(PY) -m devstack status

chaos: up ## Break Kafka, the stream, PostgreSQL and Airflow's scheduler in turn under the running demo; check nothing was lost
	@$(PY) -m devstack chaos

demo-stop: ## Stop the demo's background ingest and streaming processes
	@test -x $(PY) && $(PY) -m devstack demo-stop || true

docs: up ## Generate the dbt docs and serve them on 127.0.0.1:8580
	@$(PY) -m dbt_project docs

dashboard: up ## Serve the Streamlit dashboard on 127.0.0.1:8501 (DASHBOARD_PORT), as market_reader
	@$(PY) -m dashboard

bench: up ## Run the benchmarks under bench/ (figures as ratios to same-run baselines)
	@$(PY) -m bench

lock: ## Regenerate constraints.txt from the current virtualenv
	@$(PY) -m pip freeze --exclude-editable > constraints.txt

clean-state: demo-stop down ## Delete all local state except the virtualenv and jars (databases, Kafka logs, checkpoints)
	@rm -rf $(STATE)/postgres $(STATE)/kafka $(STATE)/prometheus $(STATE)/postgres-exporter $(STATE)/checkpoints $(STATE)/airflow
