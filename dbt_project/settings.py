"""Settings of the transformation component (env prefix TRANSFORM_), next to the shared PG_* ones."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict

from common.settings import PROJECT_ROOT


class TransformSettings(BaseSettings):
    """How dbt is run: which executable, how many threads, where docs are served."""

    model_config = SettingsConfigDict(
        env_prefix="TRANSFORM_", env_file=PROJECT_ROOT / ".env", env_file_encoding="utf-8", extra="ignore"
    )

    dbt_executable: Path = PROJECT_ROOT / ".state" / "venv" / "bin" / "dbt"
    threads: int = 4  # dbt waits on PostgreSQL and on its own Python per node: 4 measured faster than 2 here
    docs_host: str = "127.0.0.1"
    docs_port: int = 8580
    timeout_s: float = 1800.0
    test_work_mem: str = "128MB"
    # PostgreSQL's JIT compiles a query whose estimated cost is high: a test on a table without
    # statistics yet (just built) spent 1.3-4 s compiling a 0.1 s query; off for dbt's sessions
    jit: bool = False
    # level of dbt's own log file (target/logs/dbt.log): dbt writes dozens of debug lines per node,
    # about 0.4 s of a 6 s daily run; set debug to see every SQL statement and its timing
    log_level_file: Literal["debug", "info", "warn", "error", "none"] = "info"
