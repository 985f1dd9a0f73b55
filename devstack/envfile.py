"""Create .env from .env.example, filling each empty *_PASSWORD with a random value."""

from __future__ import annotations

import secrets
import sys
from pathlib import Path


def render(example: str) -> str:
    lines = []
    for line in example.splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#") and key.endswith("_PASSWORD") and not value.strip():
            line = f"{key}={secrets.token_urlsafe(18)}"
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
