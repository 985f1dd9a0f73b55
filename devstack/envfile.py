"""Create .env from .env.example, filling each empty *_PASSWORD or *_SECRET with a random value and
each empty *_FERNET_KEY with a Fernet key (Airflow's, for docker-compose.yml)."""

from __future__ import annotations

import base64
import os
import secrets
import sys
from pathlib import Path

GENERATORS = {
    "_PASSWORD": lambda: secrets.token_urlsafe(18),
    "_SECRET": lambda: secrets.token_urlsafe(32),
    "_FERNET_KEY": lambda: base64.urlsafe_b64encode(os.urandom(32)).decode(),
}


def render(example: str) -> str:
    lines = []
    for line in example.splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#") and not value.strip():
            for suffix, generate in GENERATORS.items():
                if key.endswith(suffix):
                    line = f"{key}={generate()}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def main(example: Path, target: Path) -> int:
    if target.exists():
        return 0
    target.write_text(render(example.read_text()))
    target.chmod(0o600)
    print(f"created {target} with generated passwords")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
