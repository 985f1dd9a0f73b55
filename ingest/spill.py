"""The spill: records Kafka did not acknowledge are kept on local disk and re-sent later.

A record whose delivery fails (the delivery callback reports an error after librdkafka's own retries,
e.g. `message.timeout.ms` passed during a broker outage), or which is still unacknowledged when the
shutdown flush times out, is appended to this process's spill file, one JSON line per record::

    {"topic": "...", "key": "<base64>", "value": "<base64>", "error": "_MSG_TIMED_OUT", "failed_at_ms": 17...}

Layout: ``<spill_dir>/<bootstrap>/spill-<time_ns>-<pid>.jsonl`` (the bootstrap address made
file-name safe, so a spill of one cluster is never re-sent to another). A writer creates its file
under a temporary name, takes an exclusive ``flock`` on it, then renames it into place: a file that
shows under its final name is either locked by a living writer or free to re-send (the kernel drops
the lock when a process dies, even by SIGKILL).

Durability: every line is handed to the kernel at once (``os.write``, no user-space buffer), so a
crash of the process loses nothing written; ``fsync`` runs at least every `fsync_records` lines, at
least every `fsync_interval_s` seconds while spilling, and at every flush / close, which bounds what
a crash of the machine could lose.

Re-send (:meth:`ingest.producer.KafkaSink.resend_spill`): each free file, oldest first, is locked,
read in order and produced again; it is removed only once every one of its records was acknowledged
or, failing again, written (and fsync'd) to the current spill file. A crash in between leaves the
file in place: the next start sends it again from its first line (duplicates of what was acknowledged
before the crash, never a loss).
"""

from __future__ import annotations

import base64
import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import threading
import time
from collections import Counter as Tally
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ingest import metrics
from ingest.errors import SpillError

log = logging.getLogger("ingest.spill")
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class SpilledRecord:
    topic: str
    key: bytes | None
    value: bytes
    error: str
    failed_at_ms: int


def encode_line(topic: str, key: bytes | None, value: bytes, error: str, failed_at_ms: int) -> bytes:
    line = {
        "topic": topic,
        "key": None if key is None else base64.b64encode(key).decode(),
        "value": base64.b64encode(value or b"").decode(),
        "error": error,
        "failed_at_ms": failed_at_ms,
    }
    return json.dumps(line, separators=(",", ":")).encode() + b"\n"


def decode_line(line: bytes) -> SpilledRecord:
    obj = json.loads(line)
    key = obj["key"]
    return SpilledRecord(
        obj["topic"],
        None if key is None else base64.b64decode(key, validate=True),
        base64.b64decode(obj["value"], validate=True),
        str(obj.get("error", "")),
        int(obj.get("failed_at_ms", 0)),
    )


def spill_folder(spill_dir: Path, bootstrap: str) -> Path:
    return Path(spill_dir) / (_SAFE.sub("_", bootstrap).strip("_") or "default")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _spill_error(folder: Path, exc: OSError) -> SpillError:
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        hint = "free disk space"
    elif exc.errno in (errno.EEXIST, errno.ENOTDIR):
        hint = "a file stands where the folder should be; set INGEST_SPILL_DIR to a folder"
    else:
        hint = "make it writable or set INGEST_SPILL_DIR to a writable folder"
    return SpillError(
        f"cannot write the spill under {folder} ({reason}): records Kafka did not take could not be kept, "
        f"so ingest stops; {hint}"
    )


class Spill:
    """This process's spill file (opened on the first record) and the folder's bookkeeping.

    ``append`` is called from delivery callbacks (one thread at a time serves them) and ``sync`` from
    a metrics thread too: a lock guards the file.
    """

    def __init__(
        self, spill_dir: Path, bootstrap: str, fsync_records: int = 1_000, fsync_interval_s: float = 1.0
    ) -> None:
        self.folder = spill_folder(spill_dir, bootstrap)
        self.fsync_records = max(1, fsync_records)
        self.fsync_interval_s = fsync_interval_s
        self.spilled: Tally = Tally()  # topic -> records spilled by this process
        self.resent: Tally = Tally()  # topic -> records re-sent and acknowledged
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._path: Path | None = None
        self._unsynced = 0
        self._last_sync = time.monotonic()
        self._pending = 0  # records in files this process wrote or is re-sending, not yet acknowledged
        self.own: dict[Path, int] = {}  # files this process wrote -> records in them
        self.check_writable()

    # --- writing --------------------------------------------------------------------------------

    def check_writable(self) -> None:
        """Create the spill folder and write, fsync and remove a probe file in it: raise SpillError if
        that fails (checked at start, before anything is sent). The bootstrap's own sub-folder is made
        with its first file."""
        base = self.folder.parent
        probe = base / f".probe-{os.getpid()}-{time.time_ns()}"
        try:
            base.mkdir(parents=True, exist_ok=True)
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                os.write(fd, b"probe\n")
                os.fsync(fd)
            finally:
                os.close(fd)
            probe.unlink()
        except OSError as exc:
            raise _spill_error(base, exc) from exc

    def _open(self) -> int:
        if not self.folder.is_dir():
            self.folder.mkdir(parents=True, exist_ok=True)
            _fsync_dir(self.folder.parent)
        stem = f"spill-{time.time_ns()}-{os.getpid()}"
        tmp = self.folder / f".{stem}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # ours while this process lives
            path = self.folder / f"{stem}.jsonl"
            os.rename(tmp, path)
            _fsync_dir(self.folder)
        except OSError:
            os.close(fd)
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        self._path = path
        log.warning("event=spill_opened path=%s", path)
        return fd

    def append(self, topic: str, key: bytes | None, value: bytes, error: str) -> None:
        """Keep one record (raises SpillError when it cannot be written)."""
        line = encode_line(topic, key, value, error, time.time_ns() // 1_000_000)
        with self._lock:
            try:
                if self._fd is None:
                    self._fd = self._open()
                view = memoryview(line)
                while view:
                    view = view[os.write(self._fd, view) :]
                self._unsynced += 1
                if (
                    self._unsynced >= self.fsync_records
                    or time.monotonic() - self._last_sync >= self.fsync_interval_s
                ):
                    self._fsync()
            except OSError as exc:
                raise _spill_error(self.folder, exc) from exc
            self.spilled[topic] += 1
            self.own[self._path] = self.own.get(self._path, 0) + 1
            self._pending += 1
        metrics.SPILLED.labels(topic).inc()
        metrics.SPILL_PENDING.set(self._pending)

    def _fsync(self) -> None:
        if self._fd is not None and self._unsynced:
            os.fsync(self._fd)
        self._unsynced = 0
        self._last_sync = time.monotonic()

    def sync(self) -> None:
        """fsync what was written (flush, close, before a re-sent file is removed)."""
        with self._lock:
            try:
                self._fsync()
            except OSError as exc:
                raise _spill_error(self.folder, exc) from exc

    def sync_if_due(self) -> None:
        """fsync when lines wait and the interval passed (called about once a second)."""
        if self._unsynced and time.monotonic() - self._last_sync >= self.fsync_interval_s:
            self.sync()

    def rotate(self) -> Path | None:
        """fsync and close the current file (releasing its lock) so it can be re-sent; the next
        spilled record opens a new file. Returns the closed file, if any."""
        with self._lock:
            if self._fd is None:
                return None
            try:
                self._fsync()
            except OSError as exc:
                raise _spill_error(self.folder, exc) from exc
            finally:
                os.close(self._fd)
                self._fd = None
            path, self._path = self._path, None
            return path

    def close(self) -> None:
        self.rotate()

    @property
    def path(self) -> Path | None:
        return self._path

    @property
    def pending(self) -> int:
        return self._pending

    def files(self) -> list[Path]:
        """Spill files of this folder, oldest first (the file name starts with its creation time)."""
        if not self.folder.is_dir():
            return []
        names = list(self.folder.glob("spill-*.jsonl"))

        def order(p: Path) -> tuple[int, str]:
            parts = p.stem.split("-")
            return (int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0, p.name)

        return sorted(names, key=order)

    # --- re-sending -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def claim(self, path: Path) -> Iterator[Iterator[SpilledRecord] | None]:
        """Lock a spill file for re-sending: yields its records in order, or None when another
        living process holds it (its writer, or another re-sender) or it is already gone."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            yield None
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield None
                return
            if os.fstat(fd).st_nlink == 0:  # another re-sender finished it before we got the lock
                yield None
                return
            yield self._read(fd, path)
        finally:
            os.close(fd)

    def _read(self, fd: int, path: Path) -> Iterator[SpilledRecord]:
        with os.fdopen(os.dup(fd), "rb") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    yield decode_line(line)
                except (ValueError, KeyError, TypeError) as exc:
                    raise CorruptSpill(path, number, exc) from exc

    def loaded(self, count: int) -> None:
        with self._lock:
            self._pending += count
        metrics.SPILL_PENDING.set(self._pending)

    def acknowledged(self, topic: str) -> None:
        """One re-sent record was acknowledged (called from a delivery callback)."""
        self.resent[topic] += 1
        metrics.SPILL_RESENT.labels(topic).inc()

    def done(self, path: Path, count: int) -> None:
        """Every record of `path` was acknowledged or spilled again (and fsync'd): remove it."""
        self.sync()
        try:
            path.unlink()
            _fsync_dir(self.folder)
        except OSError as exc:
            raise _spill_error(self.folder, exc) from exc
        with self._lock:
            self._pending -= self.own.pop(path, count)
        metrics.SPILL_PENDING.set(self._pending)

    def set_aside(self, path: Path, count: int) -> Path:
        """Rename a file with an unreadable line to ``*.corrupt`` (kept for an operator, not re-sent)."""
        target = path.with_suffix(".corrupt")
        try:
            path.rename(target)
            _fsync_dir(self.folder)
        except OSError as exc:
            raise _spill_error(self.folder, exc) from exc
        with self._lock:
            self._pending -= self.own.pop(path, count)
        metrics.SPILL_PENDING.set(self._pending)
        return target


class CorruptSpill(Exception):
    def __init__(self, path: Path, line: int, exc: Exception) -> None:
        super().__init__(f"{path}: line {line} is not a spill record ({exc})")
        self.path = path
        self.line = line
