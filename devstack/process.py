"""Process and port helpers for services started in the background with a pid file."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from devstack.errors import StackError


def port_open(host: str, port: int, timeout: float = 0.3) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def port_owner(port: int) -> str:
    """A short description of the process listening on `port`, if it can be found."""
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
                if conn.pid:
                    proc = psutil.Process(conn.pid)
                    return f"{proc.name()} (pid {conn.pid})"
                return "another process"
    except (psutil.Error, OSError):
        pass
    return "another process"


def require_free_ports(service: str, host: str, ports: list[int]) -> None:
    for port in ports:
        if port_open(host, port):
            raise StackError(
                f"{service} cannot start: port {port} on {host} is already taken by "
                f"{port_owner(port)}; stop it or set another port in .env."
            )


def read_pid(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE else None


def spawn(cmd: list[str], log_file: Path, pid_file: Path, env: dict[str, str] | None = None) -> int:
    """Start `cmd` detached from this process group, output appended to `log_file`."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    pid_file.write_text(str(proc.pid))
    return proc.pid


def terminate(pid_file: Path, timeout_s: float = 30.0) -> bool:
    """SIGTERM the process in `pid_file`, SIGKILL after `timeout_s`; True if one was running."""
    pid = read_pid(pid_file)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return False
    proc = psutil.Process(pid)
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except psutil.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
    pid_file.unlink(missing_ok=True)
    return True


def wait_until(check: Callable[[], bool], timeout_s: float, interval_s: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval_s)
    return check()


def tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except FileNotFoundError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:])


class PidFileProcess:
    """A service run in the background: pid file and log in its own folder under the state folder.

    Subclasses (dataclasses) provide `name` and `state_dir`.
    """

    name: str
    state_dir: Path
    stop_timeout_s: float = 20.0

    @property
    def home(self) -> Path:
        return self.state_dir / self.name

    @property
    def pid_file(self) -> Path:
        return self.home / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.home / f"{self.name}.log"

    def running(self) -> bool:
        return read_pid(self.pid_file) is not None

    def pid(self) -> int | None:
        return read_pid(self.pid_file)

    def stop(self) -> bool:
        return terminate(self.pid_file, timeout_s=self.stop_timeout_s)

    def failure_hint(self) -> str:
        if not self.running():
            return f"{self.name} exited (see {self.log_file}): {tail(self.log_file, 3)}"
        return f"{self.name} is not answering (see {self.log_file}): {tail(self.log_file, 2)}"


def tree_pss(pid: int) -> int:
    """Proportional set size of a process and its descendants, bytes: shared pages (PostgreSQL's
    shared buffers, mapped by every backend) count once in a sum instead of once per process."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += proc.memory_full_info().pss
    return total
