"""PostgreSQL from Debian's package, run as the `postgres` user with its data in the state folder."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psutil

from common.db import DatabaseUnavailable, connect
from common.settings import PostgresSettings
from devstack.errors import StackError
from devstack.process import port_open, require_free_ports, tail

SERVER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "shared_buffers": "256MB",
    "max_connections": "100",
    "max_wal_size": "2GB",
    "checkpoint_timeout": "10min",
    "synchronous_commit": "on",
    "log_min_duration_statement": "2000",
    "log_line_prefix": "%m [%p] %u@%d ",
}


def _bin_dir() -> Path:
    root = Path("/usr/lib/postgresql")
    versions = sorted((p for p in root.glob("*/bin/pg_ctl")), key=lambda p: int(p.parent.parent.name))
    if not versions:
        raise StackError("PostgreSQL is not installed: run `make setup` (installs Debian's postgresql).")
    return versions[-1].parent


@dataclass
class Postgres:
    settings: PostgresSettings
    state_dir: Path
    name: str = "postgresql"

    @property
    def home(self) -> Path:
        return self.state_dir / "postgres"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def socket_dir(self) -> Path:
        return self.home / "run"

    @property
    def log_file(self) -> Path:
        return self.home / "postgres.log"

    @property
    def address(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    def _as_postgres(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else list(args)
        return subprocess.run(cmd, capture_output=True, text=True, check=check)

    def _pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self._as_postgres(str(_bin_dir() / "pg_ctl"), "-D", str(self.data_dir), *args, check=check)

    def _give_to_postgres(self, path: Path) -> None:
        if os.geteuid() != 0:
            return
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError as exc:
            raise StackError("the `postgres` system user is missing: run `make setup`.") from exc
        for p in [path, *path.rglob("*")]:
            os.chown(p, pw.pw_uid, pw.pw_gid)
        # the postgres user must be able to traverse every parent folder
        for parent in path.parents:
            mode = parent.stat().st_mode
            if not mode & 0o001:
                parent.chmod(mode | 0o001)

    @property
    def ports(self) -> list[int]:
        return [self.settings.port]

    def initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def init(self) -> bool:
        """initdb once; False when the data directory already exists."""
        if self.initialised():
            return False
        if self.data_dir.exists() and any(self.data_dir.iterdir()):
            raise StackError(
                f"PostgreSQL data directory {self.data_dir} is damaged (no PG_VERSION); "
                "move it away or run `make clean-state` to start from scratch."
            )
        password = self.settings.admin_password.get_secret_value()
        if not password:
            raise StackError("PG_ADMIN_PASSWORD is empty: run `make setup` to create .env.")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        with tempfile.NamedTemporaryFile("w", dir=self.home, delete=False) as pw_file:
            pw_file.write(password + "\n")
        pw_path = Path(pw_file.name)
        self._give_to_postgres(self.home)
        try:
            result = self._as_postgres(
                str(_bin_dir() / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                self.settings.admin_user,
                "--auth=scram-sha-256",
                f"--pwfile={pw_path}",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                check=False,
            )
        finally:
            pw_path.unlink(missing_ok=True)
        if result.returncode != 0:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            raise StackError(f"initdb failed: {result.stderr.strip().splitlines()[-1:]}")
        return True

    def running(self) -> bool:
        if not self.initialised():
            return False
        status = self._pg_ctl("status", check=False).returncode
        if status == 4:  # the postgres user cannot reach the data folder (a parent's mode changed since)
            pid = self.pid()
            return pid is not None and psutil.pid_exists(pid)
        return status == 0

    def start(self) -> None:
        if self.running():
            return
        require_free_ports(self.name, self.settings.host, [self.settings.port])
        self.init()
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        self._give_to_postgres(self.home)
        options = {
            **SERVER_SETTINGS,
            "port": str(self.settings.port),
            "unix_socket_directories": str(self.socket_dir),
            "listen_addresses": self.settings.host,
        }
        opts = " ".join(f"-c {k}='{v}'" for k, v in options.items())
        result = self._pg_ctl("-w", "-t", "60", "-l", str(self.log_file), "-o", opts, "start", check=False)
        if result.returncode != 0:
            raise StackError(
                f"PostgreSQL did not start (see {self.log_file}): "
                f"{tail(self.log_file, 3) or result.stderr.strip()}"
            )

    def stop(self) -> bool:
        if not self.running():
            return False
        self._pg_ctl("-w", "-t", "60", "-m", "fast", "stop", check=False)
        return True

    def pid(self) -> int | None:
        try:
            return int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])
        except (FileNotFoundError, ValueError, IndexError, PermissionError):
            return None

    def healthy(self) -> bool:
        if not port_open(self.settings.host, self.settings.port):
            return False
        try:
            conn = connect("admin", self.settings, database="postgres")
        except DatabaseUnavailable:
            return False
        try:
            with conn.cursor() as cur:
                cur.execute("select 1")
                return cur.fetchone() == (1,)
        finally:
            conn.close()
