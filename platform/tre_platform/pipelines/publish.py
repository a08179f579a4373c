"""Publishing a dataset version atomically (see the storage layout contract).

1. Part files are written into ``research/<dataset>/.staging-<uuid>/`` by the engine.
2. :func:`seal` adds ``_manifest.json`` (schema, row count, SHA-256 of every part) and, last, ``_SUCCESS``.
3. :func:`promote` renames the staging directory to ``v<N>`` (one ``os.rename`` on the same filesystem).
4. The caller commits the ``DatasetVersion`` row; if that fails it calls :func:`withdraw`.

Readers trust only directories a ``DatasetVersion`` row points at. A crash before step 3 leaves a hidden
staging directory; a crash between 3 and 4 leaves a complete, sealed ``v<N>`` that no row points at, which
the next ingest of the dataset removes (:func:`clear_orphan`) before it publishes ``v<N>`` itself.

Each staging directory is claimed by its ingest with an exclusive ``flock`` on a sibling
``.staging-<uuid>.lock`` file. The kernel drops the lock when the process dies, even by ``kill -9``, so the
next ingest's :func:`sweep_stale` can tell a crashed ingest's leftovers (lock free: removed) from a running
ingest's work (lock held: left alone).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from tre_platform.errors import Conflict

STAGING_PREFIX = ".staging-"
#: A staging directory older than this belongs to a crashed ingest (no ingest takes a day).
STALE_STAGING_SECONDS = 24 * 3600


#: The stages at which :func:`checkpoint` is called, in order.
CHECKPOINTS = ("row_group_written", "parts_written", "promoted")
#: How long a paused ingest waits to be killed before it carries on (so a forgotten pause cannot hang).
PAUSE_SECONDS = 600.0
PAUSED_MARKER = ".ingest-paused-"


def checkpoint(stage: str) -> None:
    """Called between the steps of a publication (one of :data:`CHECKPOINTS`).

    In production it does nothing. In a test or dev deployment with ``TRE_INGEST_PAUSE_AT=<stage>`` the
    ingest writes ``<data dir>/.ingest-paused-<stage>`` (holding its pid) and waits there, so a test can
    ``kill -9`` the real process at a known point; in-process tests replace this function instead.
    """
    from tre_platform.settings import Environment, get_settings

    settings = get_settings()
    if settings.ingest_pause_at != stage or settings.env is Environment.prod:
        return
    marker = settings.resolved_data_dir / f"{PAUSED_MARKER}{stage}"
    marker.write_text(str(os.getpid()))
    deadline = time.monotonic() + PAUSE_SECONDS
    while time.monotonic() < deadline:
        time.sleep(0.1)
    marker.unlink(missing_ok=True)


@contextmanager
def dataset_lock(parent: Path) -> Iterator[None]:
    """Serialise the publish step of one dataset's ingests on this host (an exclusive ``flock``).

    Across hosts the unique (dataset, version) constraint is the guard: the loser's commit fails and its
    directory is withdrawn.
    """
    secure_dir(parent)
    fd = os.open(parent / ".publish.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def secure_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


#: Staging paths this process has claimed, with the descriptor that holds each claim's lock.
_claims: dict[Path, int] = {}


def _lock_file(staging: Path) -> Path:
    return staging.with_name(f"{staging.name}.lock")


def claim(path: Path) -> Path:
    """Claim ``path`` (not yet existing; its parent must exist) for this process until
    :func:`release_staging` or its death, with an exclusive ``flock`` on a sibling ``<name>.lock``."""
    fd = os.open(_lock_file(path), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    _claims[path] = fd
    return path


def new_staging(parent: Path) -> Path:
    """A fresh, not yet existing staging path under ``parent`` (``parent`` created 0700), claimed by this
    process until :func:`release_staging` or its death."""
    secure_dir(parent)
    return claim(parent / f"{STAGING_PREFIX}{uuid.uuid4().hex}")


def sweep_claimed(parent: Path) -> list[Path]:
    """Remove every path under ``parent`` :func:`claim`-ed by a process that died before releasing it
    (its lock file is there and no living process holds it); returns what was removed."""
    removed: list[Path] = []
    if not parent.is_dir():
        return removed
    for lock in sorted(parent.glob("*.lock")):
        target = lock.with_name(lock.name.removesuffix(".lock"))
        if target in _claims or lock_held(lock):
            continue
        if target.exists():
            withdraw(target)
            removed.append(target)
        lock.unlink(missing_ok=True)
    return removed


def release_staging(staging: Path) -> None:
    """Give up the claim on ``staging`` (after it was promoted or withdrawn)."""
    fd = _claims.pop(staging, None)
    if fd is None:
        return
    _lock_file(staging).unlink(missing_ok=True)
    os.close(fd)


def lock_held(path: Path) -> bool:
    """Whether a living process holds an exclusive ``flock`` on ``path`` (the kernel drops it when the
    process dies, however it dies); a missing file is not held."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops the lock we may have taken
    return False


def sweep_stale(parent: Path) -> list[Path]:
    """Remove what crashed ingests left under ``parent``; returns what was removed.

    A staging directory (or lock file) whose claim no living process holds is a crashed ingest's; one
    without a lock file (written before claims existed) is removed once it is a day old.
    """
    removed: list[Path] = []
    if not parent.is_dir():
        return removed
    now = time.time()
    for child in sorted(parent.iterdir()):
        if not child.name.startswith(STAGING_PREFIX):
            continue
        if child.name.endswith(".lock"):
            staging = child.with_name(child.name.removesuffix(".lock"))
            if not staging.exists() and staging not in _claims and not lock_held(child):
                child.unlink(missing_ok=True)
                removed.append(child)
            continue
        lock = _lock_file(child)
        if lock.exists():
            stale = child not in _claims and not lock_held(lock)
        else:
            stale = now - child.stat().st_mtime > STALE_STAGING_SECONDS
        if stale:
            withdraw(child)
            lock.unlink(missing_ok=True)
            removed.append(child)
    return removed


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(4 * 1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Sealed:
    """What :func:`seal` found in the staging directory."""

    row_count: int
    files: list[dict[str, Any]]
    manifest: dict[str, Any]


def seal(staging: Path, manifest: Mapping[str, Any], schema: Sequence[Mapping[str, str]]) -> Sealed:
    """Tidy the engine's output, write ``_manifest.json`` and then ``_SUCCESS``; make files read-only.

    Engines' own markers and checksums (Spark's ``_SUCCESS`` and ``.crc`` files) are removed first so the
    only ``_SUCCESS`` is ours, written after the manifest.
    """
    for child in list(staging.iterdir()):
        if child.name.startswith((".", "_")) or not child.name.endswith(".parquet"):
            if child.is_dir():
                shutil.rmtree(child)
            else:
                child.unlink()
    parts = sorted(staging.glob("part-*.parquet"))
    files = []
    total = 0
    for part in parts:
        rows = pq.ParquetFile(part).metadata.num_rows
        total += rows
        files.append({"name": part.name, "rows": rows, "bytes": part.stat().st_size, "sha256": _sha256(part)})
    checkpoint("parts_written")
    full = {**manifest, "schema": list(schema), "row_count": total, "files": files}
    (staging / "_manifest.json").write_text(json.dumps(full, indent=2, sort_keys=True, default=str))
    (staging / "_SUCCESS").write_text("")
    for child in staging.iterdir():
        os.chmod(child, 0o400)
    os.chmod(staging, 0o700)
    return Sealed(row_count=total, files=files, manifest=full)


def clear_orphan(target: Path) -> bool:
    """Remove ``v<N>`` left by a crash between rename and commit (the caller knows no row points at it)."""
    if target.exists():
        withdraw(target)
        return True
    return False


def promote(staging: Path, target: Path) -> Path:
    """Rename the sealed staging directory to ``v<N>``.

    Raises:
        Conflict: ``v<N>`` appeared meanwhile (another ingest of the same dataset won the race).
    """
    try:
        os.rename(staging, target)
    except OSError as exc:
        raise Conflict(
            f"{target.name} of this dataset was published by another ingest at the same time; "
            "ingest the delivery again to publish it as the next version"
        ) from exc
    return target


def withdraw(path: Path) -> None:
    """Remove a staging or unpublished version directory (read-only files included)."""
    if not path.exists():
        return
    os.chmod(path, 0o700)
    shutil.rmtree(path, ignore_errors=True)
