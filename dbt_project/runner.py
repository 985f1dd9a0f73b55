"""Run the dbt CLI on this project with connection settings from common.settings.

profiles.yml reads every connection setting with env_var() under the PG_* names of
common.settings.PostgresSettings; dbt_env() puts those values into a subprocess environment, so the
same .env drives Python components and dbt.

run_dbt() starts the `dbt` executable as a subprocess (used by the tests and `docs serve`).
run_dbt_in_process() (used by `python -m dbt_project build|dbt` and the benchmark) calls
dbt's programmatic entry point, dbtRunner, in the calling interpreter, the way Airflow with Cosmos
(InvocationMode.DBT_RUNNER) runs it in a worker that has dbt imported already: the same command
without a new Python process and dbt's imports.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from common.settings import PostgresSettings, postgres_settings
from dbt_project.settings import TransformSettings

log = logging.getLogger(__name__)

PROJECT_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class DbtResult:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def dbt_env(
    pg: PostgresSettings | None = None,
    transform: TransformSettings | None = None,
    database: str | None = None,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment profiles.yml expects: PG_* connection settings and dbt's own switches."""
    s = pg or postgres_settings()
    t = transform or TransformSettings()
    env = dict(os.environ if base is None else base)
    env.update(
        {
            "PG_HOST": s.host,
            "PG_PORT": str(s.port),
            "PG_DATABASE": database or s.database,
            "PG_WRITER_USER": s.writer_user,
            "PG_WRITER_PASSWORD": s.writer_password.get_secret_value(),
            "PG_CONNECT_TIMEOUT_S": str(s.connect_timeout_s),
            "TRANSFORM_THREADS": str(t.threads),
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
            "DBT_LOG_LEVEL_FILE": t.log_level_file,
            # data tests group and sort whole marts: give their sessions room (models set it per transaction)
            "PGOPTIONS": f"-c work_mem={t.test_work_mem} -c jit={'on' if t.jit else 'off'}",
            "DO_NOT_TRACK": "1",
        }
    )
    return env


def run_dbt(
    args: Sequence[str],
    database: str | None = None,
    pg: PostgresSettings | None = None,
    transform: TransformSettings | None = None,
    capture: bool = True,
    target_path: Path | None = None,
) -> DbtResult:
    """Run `dbt <args>` on this project; returns its exit code and output (never raises on failure).

    `target_path` keeps compiled files, artifacts and logs apart, so that two runs (a test and a
    benchmark, say) can share the project folder.
    """
    t = transform or TransformSettings()
    cmd = [
        str(t.dbt_executable),
        *args,
        "--project-dir",
        str(PROJECT_DIR),
        "--profiles-dir",
        str(PROJECT_DIR),
    ]
    if target_path is not None:
        cmd += ["--target-path", str(target_path), "--log-path", str(target_path / "logs")]
    started = time.perf_counter()
    proc = subprocess.run(
        cmd,
        env=dbt_env(pg, t, database),
        cwd=PROJECT_DIR,
        capture_output=capture,
        text=True,
        timeout=t.timeout_s,
        check=False,
    )
    seconds = time.perf_counter() - started
    log.info("dbt_run args=%s returncode=%s seconds=%.2f", " ".join(args), proc.returncode, seconds)
    return DbtResult(tuple(args), proc.returncode, proc.stdout or "", proc.stderr or "", seconds)


@contextmanager
def _environment(env: Mapping[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def run_dbt_in_process(
    args: Sequence[str],
    database: str | None = None,
    pg: PostgresSettings | None = None,
    transform: TransformSettings | None = None,
    target_path: Path | None = None,
) -> DbtResult:
    """`dbt <args>` through dbtRunner in this interpreter, with run_dbt()'s environment and paths.

    dbt's console output goes to this process's stdout (DbtResult.stdout stays empty); returncode
    follows the CLI's: 0 success, 1 a node failed, 2 dbt raised. Not for concurrent use (dbt keeps
    global state per invocation); the environment is restored afterwards.
    """
    from dbt.cli.main import dbtRunner  # imported on first use: a second or more of imports

    t = transform or TransformSettings()
    cli = [*args, "--project-dir", str(PROJECT_DIR), "--profiles-dir", str(PROJECT_DIR)]
    if target_path is not None:
        cli += ["--target-path", str(target_path), "--log-path", str(target_path / "logs")]
    started = time.perf_counter()
    with _environment(dbt_env(pg, t, database)):
        result = dbtRunner().invoke(cli)
    seconds = time.perf_counter() - started
    returncode = 0 if result.success else (2 if result.exception is not None else 1)
    log.info("dbt_run_in_process args=%s returncode=%s seconds=%.2f", " ".join(args), returncode, seconds)
    return DbtResult(tuple(args), returncode, "", repr(result.exception) if result.exception else "", seconds)
