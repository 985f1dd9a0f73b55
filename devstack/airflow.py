"""Airflow 3 as local processes (api-server, scheduler, dag-processor; the triggerer if asked) with its
metadata in a database and role of its own in the project's PostgreSQL, and statsd_exporter beside it.

Everything Airflow is told comes from orchestration.settings.AirflowSettings (rendered into
``AIRFLOW__SECTION__KEY`` variables here) and the project's PG_* settings (passed to dbt in tasks).
Secrets are generated once into ``<home>/secrets.json`` and the UI password into
``<home>/passwords.json`` (both mode 0600, never in the repository).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import subprocess
import sys
import urllib.request
from base64 import urlsafe_b64encode
from dataclasses import dataclass, field
from pathlib import Path

from psycopg2 import sql

from common.db import DatabaseUnavailable, connect
from common.settings import PROJECT_ROOT, PostgresSettings, postgres_settings
from dbt_project.runner import dbt_env
from devstack.errors import StackError
from devstack.process import PidFileProcess, require_free_ports, spawn, tail, wait_until
from orchestration.settings import AirflowSettings

log = logging.getLogger(__name__)

STATSD_MAPPING = PROJECT_ROOT / "monitoring" / "statsd_mapping.yml"
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
_HEALTH_KEYS = {"scheduler": "scheduler", "dag-processor": "dag_processor", "triggerer": "triggerer"}


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def _write_private(path: Path, text: str) -> None:
    """Write `text` to a file only its owner can read, created with that mode (no readable moment)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    path.chmod(0o600)


def health(settings: AirflowSettings, timeout: float = 2.0) -> dict | None:
    """The api-server's /api/v2/monitor/health JSON (public), or None when it does not answer."""
    try:
        with urllib.request.urlopen(f"{settings.api_url}/api/v2/monitor/health", timeout=timeout) as resp:
            return json.loads(resp.read())
    except (OSError, ValueError):
        return None


@dataclass
class AirflowSecrets:
    db_password: str
    jwt_secret: str
    api_secret_key: str
    fernet_key: str
    ui_password: str


@dataclass
class Airflow:
    """The Airflow stack: metadata database, configuration, secrets and its four processes."""

    settings: AirflowSettings
    pg: PostgresSettings = field(default_factory=postgres_settings)

    # --- files ------------------------------------------------------------------------------------
    @property
    def secrets_file(self) -> Path:
        return self.settings.home / "secrets.json"

    @property
    def passwords_file(self) -> Path:
        return self.settings.passwords_file

    @property
    def dbt_target(self) -> Path:
        """dbt artifacts Cosmos renders the DAGs from (manifest.json), made at start."""
        return self.settings.home / "dbt-target"

    @property
    def dbt_docs(self) -> Path:
        """`dbt docs generate` output the UI's dbt docs view (Cosmos plugin) serves."""
        return self.settings.home / "dbt-docs"

    def secrets(self) -> AirflowSecrets:
        """Generated on the first call, kept in secrets.json (0600); AF_DB_PASSWORD wins when set."""
        stored: dict[str, str] = {}
        if self.secrets_file.exists():
            stored = json.loads(self.secrets_file.read_text())
        wanted = {
            "db_password": lambda: secrets.token_urlsafe(18),
            "jwt_secret": lambda: secrets.token_urlsafe(32),
            "api_secret_key": lambda: secrets.token_urlsafe(32),
            "fernet_key": lambda: urlsafe_b64encode(os.urandom(32)).decode(),
            "ui_password": lambda: secrets.token_urlsafe(12),
        }
        missing = {k: make() for k, make in wanted.items() if k not in stored}
        if missing:
            stored.update(missing)
            _write_private(self.secrets_file, json.dumps(stored, indent=1) + "\n")
        given = self.settings.db_password.get_secret_value()
        if given:
            stored["db_password"] = given
        return AirflowSecrets(**{k: stored[k] for k in wanted})

    # --- configuration ----------------------------------------------------------------------------
    def sql_alchemy_conn(self, s: AirflowSecrets) -> str:
        return (
            f"postgresql+psycopg2://{self.settings.db_user}:{s.db_password}@{self.pg.host}:{self.pg.port}/"
            f"{self.settings.database}"
        )

    def environment(self) -> dict[str, str]:
        """Airflow's configuration for every process and CLI call, and the PG_* settings dbt reads."""
        st, s = self.settings, self.secrets()
        env = dbt_env(self.pg, base={})
        env.update(
            {
                "PYTHONPATH": str(PROJECT_ROOT),
                "AIRFLOW_HOME": str(st.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(st.dags_folder),
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": str(st.parallelism),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__FERNET_KEY": s.fernet_key,
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{st.api_url}/execution/",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{st.ui_user}:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.passwords_file),
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.sql_alchemy_conn(s),
                "AIRFLOW__API__HOST": st.host,
                "AIRFLOW__API__PORT": str(st.api_port),
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API__BASE_URL": st.api_url,
                "AIRFLOW__API__SECRET_KEY": s.api_secret_key,
                "AIRFLOW__API_AUTH__JWT_SECRET": s.jwt_secret,
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": str(st.dag_refresh_interval_s),
                "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
                "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": str(st.scheduler_idle_sleep_s),
                "AIRFLOW__METRICS__STATSD_ON": "True",
                "AIRFLOW__METRICS__STATSD_HOST": st.host,
                "AIRFLOW__METRICS__STATSD_PORT": str(st.statsd_port),
                "AIRFLOW__METRICS__STATSD_PREFIX": "airflow",
                "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
                "AIRFLOW__COSMOS__CACHE_DIR": str(st.home / "cosmos-cache"),
                "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(st.home / "logs"),
                "DO_NOT_TRACK": "1",
                "SCARF_ANALYTICS": "false",
                "MP_AIRFLOW_DBT_TARGET": str(self.dbt_target),
                # Cosmos's Airflow 3 plugin serves the dbt docs under /cosmos/marketpipe/ (Browse menu)
                "AIRFLOW__COSMOS__DBT_DOCS_PROJECTS": json.dumps(
                    {"marketpipe": {"dir": str(self.dbt_docs), "index": "index.html", "name": "dbt docs"}}
                ),
            }
        )
        # the AF_* settings themselves, so the DAGs and callbacks see exactly what devstack was told
        for name, value in st.model_dump().items():
            if value is not None and name != "db_password":
                env[f"AF_{name.upper()}"] = str(value)
        return env

    def airflow_cli(
        self, *args: str, timeout: float = 300, check: bool = True
    ) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [_bin("airflow"), *args],
            env={**os.environ, **self.environment()},
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise StackError(
                f"`airflow {' '.join(args)}` failed (exit {proc.returncode}): "
                f"{' | '.join((proc.stderr or proc.stdout).strip().splitlines()[-3:])}"
            )
        return proc

    # --- database, migrations, dbt manifest ---------------------------------------------------------
    def ensure_database(self) -> bool:
        """Role and database of their own (idempotent); True when the database was created."""
        s, st = self.secrets(), self.settings
        conn = connect("admin", self.pg, database="postgres")
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute("select 1 from pg_roles where rolname = %s", (st.db_user,))
                verb = "alter" if cur.fetchone() else "create"
                cur.execute(
                    sql.SQL(verb + " role {} login password %s").format(sql.Identifier(st.db_user)),
                    (s.db_password,),
                )
                cur.execute("select 1 from pg_database where datname = %s", (st.database,))
                if cur.fetchone():
                    return False
                cur.execute(
                    sql.SQL("create database {} owner {}").format(
                        sql.Identifier(st.database), sql.Identifier(st.db_user)
                    )
                )
                cur.execute(
                    sql.SQL("revoke all on database {} from public").format(sql.Identifier(st.database))
                )
                return True
        finally:
            conn.close()

    def _migrated_stamp(self) -> Path:
        return self.settings.home / ".migrated"

    def _stamp_value(self) -> str:
        from importlib.metadata import version

        return f"{version('apache-airflow-core')} {self.pg.host}:{self.pg.port}/{self.settings.database}"

    def migrate(self, created: bool) -> bool:
        """`airflow db migrate` when the database is new or Airflow's version changed."""
        stamp = self._migrated_stamp()
        if not created and stamp.exists() and stamp.read_text() == self._stamp_value():
            return False
        log.info("airflow db migrate (database %s)", self.settings.database)
        self.airflow_cli("db", "migrate", timeout=600)
        stamp.write_text(self._stamp_value())
        return True

    def dbt_manifest(self) -> Path:
        """dbt parse into the Airflow home when the project changed since the last manifest."""
        manifest = self.dbt_target / "manifest.json"
        project = PROJECT_ROOT / "dbt_project"
        newest = max(
            p.stat().st_mtime
            for d in ("models", "macros", "seeds", "tests")
            for p in (project / d).rglob("*")
            if p.is_file()
        )
        newest = max(newest, *(p.stat().st_mtime for p in project.glob("*.yml")))
        if manifest.exists() and manifest.stat().st_mtime >= newest:
            return manifest
        from dbt_project.runner import run_dbt

        result = run_dbt(["parse"], pg=self.pg, target_path=self.dbt_target)
        if not result.ok:
            raise StackError(f"dbt parse for Airflow failed: {(result.stdout + result.stderr)[-500:]}")
        return manifest

    def dbt_docs_site(self, refresh: bool = False) -> Path:
        """dbt docs generate into the Airflow home, once (or when asked): the UI's Browse > dbt docs."""
        index = self.dbt_docs / "index.html"
        if index.exists() and not refresh:
            return index
        from dbt_project.runner import run_dbt

        result = run_dbt(["docs", "generate"], pg=self.pg, target_path=self.dbt_docs)
        if not result.ok:
            log.warning("dbt docs generate for Airflow failed: %s", (result.stdout + result.stderr)[-300:])
        return index

    def write_local_settings(self) -> None:
        """<home>/config/airflow_local_settings.py (Airflow puts that folder on sys.path): preloads dbt
        in the scheduler before it forks the executor's workers (orchestration/preload.py)."""
        path = self.settings.home / "config" / "airflow_local_settings.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        text = (
            ""
            if not self.settings.preload_dbt
            else (
                "# written by devstack/airflow.py\n"
                "from orchestration.preload import preload_for_workers\n\n"
                "preload_for_workers()\n"
            )
        )
        path.write_text(text)

    def write_passwords(self) -> None:
        """The UI user's password, where SimpleAuthManager reads it (it generates none then)."""
        wanted = {self.settings.ui_user: self.secrets().ui_password}
        if self.passwords_file.exists() and json.loads(self.passwords_file.read_text() or "{}") == wanted:
            self.passwords_file.chmod(0o600)
            return
        _write_private(self.passwords_file, json.dumps(wanted) + "\n")

    # --- processes --------------------------------------------------------------------------------
    def components(self) -> dict[str, AirflowComponent]:
        """The processes to run; the triggerer only when AF_TRIGGERER is on (or it still runs from a
        start when it was, so that `make down` stops it)."""
        comps = {name: AirflowComponent(name, self) for name in COMPONENTS}
        if not self.settings.triggerer and not comps["triggerer"].running():
            del comps["triggerer"]
        return comps

    def prepare(self) -> None:
        """Everything before the processes: home, secrets, database, migrations, manifest."""
        self.settings.home.mkdir(parents=True, exist_ok=True)
        self.write_passwords()
        self.write_local_settings()
        try:
            created = self.ensure_database()
        except DatabaseUnavailable as exc:
            raise StackError(f"Airflow needs PostgreSQL first (`make up`): {exc}") from exc
        self.migrate(created)
        self.dbt_manifest()
        self.dbt_docs_site()


@dataclass
class AirflowComponent(PidFileProcess):
    """One Airflow process (`airflow <name>`), pid file and log in <airflow home>/<name>/."""

    component: str
    airflow: Airflow
    stop_timeout_s: float = 30.0

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"airflow-{self.component}"

    @property
    def home(self) -> Path:
        return self.airflow.settings.home / self.component

    @property
    def pid_file(self) -> Path:
        return self.home / f"{self.component}.pid"

    @property
    def log_file(self) -> Path:
        return self.home / f"{self.component}.log"

    @property
    def address(self) -> str:
        s = self.airflow.settings
        return f"{s.host}:{s.api_port}" if self.component == "api-server" else "-"

    @property
    def ports(self) -> list[int]:
        return [self.airflow.settings.api_port] if self.component == "api-server" else []

    def start(self) -> None:
        if self.running():
            return
        if self.ports:
            require_free_ports(self.name, self.airflow.settings.host, self.ports)
        self.home.mkdir(parents=True, exist_ok=True)
        # every process shares one machine and one log folder, which the api-server reads directly: no
        # log server (it would bind every interface on a fixed port, 8793 / 8794)
        extra = ["--skip-serve-logs"] if self.component in ("scheduler", "triggerer") else []
        spawn(
            [_bin("airflow"), self.component, *extra],
            self.log_file,
            self.pid_file,
            env=self.airflow.environment(),
        )

    def healthy(self) -> bool:
        if not self.running():
            return False
        h = health(self.airflow.settings)
        if h is None:
            return False
        if self.component == "api-server":
            return True
        return (h.get(_HEALTH_KEYS[self.component]) or {}).get("status") == "healthy"


def start(airflow: Airflow, timeout_s: float = 120.0) -> list[str]:
    """Prepare and start the processes that are not running; returns the names started."""
    comps = airflow.components()
    todo = [c for c in comps.values() if not c.running()]
    if not todo:
        return []
    for c in todo:
        if c.ports:
            require_free_ports(c.name, airflow.settings.host, c.ports)
    airflow.prepare()
    started = []
    try:
        for c in todo:
            c.start()
            started.append(c.name)
        for c in comps.values():
            if not wait_until(c.healthy, timeout_s, interval_s=0.5):
                raise StackError(
                    f"{c.name} did not become healthy within {timeout_s:.0f} s; see {c.log_file}: "
                    f"{tail(c.log_file, 2)}"
                )
    except Exception:
        for c in todo:
            c.stop()
        raise
    return started


def unpause(airflow: Airflow, dag_ids: list[str]) -> None:
    for dag_id in dag_ids:
        airflow.airflow_cli("dags", "unpause", dag_id, timeout=120)


PROJECT_DAGS = ("dbt_daily", "dbt_intraday", "market_ingest", "stream_supervisor")
