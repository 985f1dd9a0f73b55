"""A Streamlit server of the dashboard in a child process, for the browser test and the benchmark."""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from common.settings import PROJECT_ROOT
from dashboard.__main__ import command


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


@contextmanager
def serving(port: int, log: Path, env: dict[str, str], timeout_s: float = 60.0) -> Iterator[str]:
    """`python -m dashboard`'s Streamlit command on 127.0.0.1:`port` with `env` added; yields its URL
    once /_stcore/health answers, stops it (SIGTERM) afterwards."""
    log.parent.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), **env}
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            command("127.0.0.1", port), stdout=out, stderr=subprocess.STDOUT, env=full_env, cwd=PROJECT_ROOT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while not healthy(url):
            if proc.poll() is not None:
                raise RuntimeError(f"the dashboard exited ({proc.returncode}): {log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the dashboard did not answer within {timeout_s} s; see {log}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
