"""kill -9 of a real `tre dataset ingest` process at known points of the publication, and big files.

The CLI runs as a subprocess on the test's database and data directory. ``TRE_INGEST_PAUSE_AT`` makes it
stop at a named checkpoint (``pipelines.publish.checkpoint``) and say so with a marker file; the test checks
the process is demonstrably there (a Parquet part without its footer, or a renamed but uncatalogued
``v1``), sends SIGKILL, and then checks what every reader would see.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pipeline_factories import IngestWorld
from sqlalchemy import select
from sqlalchemy.orm import Session

from tre_platform.api.audit.models import AuditEvent
from tre_platform.api.audit.service import verify
from tre_platform.api.datasets.models import DatasetVersion
from tre_platform.pipelines.engines import ROW_GROUP_ROWS
from tre_platform.pipelines.ingest import sweep_ingest_leftovers
from tre_platform.pipelines.publish import PAUSED_MARKER, STAGING_PREFIX

TRE = str(Path(sys.executable).with_name("tre"))
#: Only a guard against a hung child; never an assertion about speed.
HANG_GUARD_SECONDS = 900


def _run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TRE, *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=HANG_GUARD_SECONDS
    )


#: Runs argv[2:] and writes its exit code and peak RSS (``wait4``'s ``ru_maxrss``) to argv[1] as JSON.
#: Linux carries the pre-exec memory of a forked process into ``ru_maxrss``, so a child forked straight
#: from pytest (hundreds of MiB) would report pytest's size; forked from this small launcher it reports
#: its own.
_LAUNCHER = """
import json, os, subprocess, sys
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
with open(sys.argv[1], "w") as out:
    json.dump({"code": os.waitstatus_to_exitcode(status), "maxrss_kib": usage.ru_maxrss}, out)
"""


def _run_measured(command: list[str], log: Path, **env: str) -> tuple[int, str, float]:
    """Run ``command``; its exit code, output and its own peak RSS in MiB (from ``wait4``)."""
    result = log.with_suffix(".rusage.json")
    with log.open("wb") as out:
        subprocess.run(
            [sys.executable, "-c", _LAUNCHER, str(result), *command],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=HANG_GUARD_SECONDS,
            check=True,
        )
    measured = json.loads(result.read_text())
    return measured["code"], log.read_text(), measured["maxrss_kib"] / 1024  # Linux reports KiB


def _start(log: Path, *args: str, **env: str) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([TRE, *args], env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT)


def _wait_for(marker: Path, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + HANG_GUARD_SECONDS
    while not marker.exists():
        if process.poll() is not None:
            pytest.fail(
                f"the ingest ended (code {process.returncode}) before {marker.name}:\n{log.read_text()}"
            )
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the ingest never reached {marker.name}")
        time.sleep(0.2)


def _versions(session: Session, dataset_id: str) -> list[tuple[int, str]]:
    """(version, path) of each catalogued version."""
    session.expire_all()
    found = [
        (v.version, v.path)
        for v in session.scalars(select(DatasetVersion).where(DatasetVersion.dataset_id == dataset_id))
    ]
    session.rollback()  # end the read transaction: the next subprocess must be free to write (SQLite)
    return found


def _audit_ok(session: Session) -> Any:
    session.expire_all()
    result = verify(session)
    session.rollback()
    return result


def _staging(parent: Path) -> list[Path]:
    return sorted(p for p in parent.iterdir() if p.name.startswith(STAGING_PREFIX)) if parent.exists() else []


def _landed(landing: Path) -> list[Path]:
    """The landing copies of a dataset's deliveries (one directory each)."""
    return sorted(p for p in landing.iterdir() if p.is_dir()) if landing.exists() else []


def _visible(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if not p.name.startswith(".")) if parent.exists() else []


def _sealed_and_intact(version_dir: Path) -> bool:
    """A complete publication: our _SUCCESS, and every part the manifest lists with its SHA-256."""
    if not (version_dir / "_SUCCESS").exists():
        return False
    manifest = json.loads((version_dir / "_manifest.json").read_text())
    for part in manifest["files"]:
        digest = hashlib.sha256((version_dir / part["name"]).read_bytes()).hexdigest()
        if digest != part["sha256"]:
            return False
    return True


@pytest.fixture
def big_delivery(episodes: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path) -> tuple[Path, int]:
    """A FAST_SCHEMA delivery of more than one Parquet row group (so a pause after one is mid-write)."""
    frame = episodes[0].drop(columns=["given_name", "family_name"])
    big = pd.concat([frame] * (ROW_GROUP_ROWS // len(frame) + 1), ignore_index=True)
    path = tmp_path / "big-episodes.csv"
    big.to_csv(path, index=False)
    return path, len(big)


@pytest.mark.parametrize("stage", ["row_group_written", "promoted"])
def test_kill_9_mid_ingest_leaves_no_visible_version_and_the_same_delivery_then_publishes(
    session: Session, ingest_world: IngestWorld, big_delivery: tuple[Path, int], tmp_path: Path, stage: str
) -> None:
    path, rows = big_delivery
    dataset_id = ingest_world.fast.id
    owner = ingest_world.owner.label
    research = ingest_world.data_dir / "research" / "episodes_fast"
    reports = ingest_world.data_dir / "linkage" / "reports" / "episodes_fast"
    marker = ingest_world.data_dir / f"{PAUSED_MARKER}{stage}"
    args = ("dataset", "ingest", str(path), "--dataset", "episodes_fast", "--as", owner, "--json")
    log = tmp_path / "killed.log"
    process = _start(log, *args, TRE_INGEST_PAUSE_AT=stage)
    _wait_for(marker, process, log)

    # Demonstrably mid-publication before the kill.
    if stage == "row_group_written":
        (staging,) = [p for p in _staging(research) if p.is_dir()]
        part = staging / "part-00000.parquet"
        assert part.stat().st_size > 0
        with pytest.raises(pa.ArrowInvalid, match="magic bytes not found in footer"):
            pq.ParquetFile(part)  # the writer has not closed it yet: no footer
    else:
        assert _visible(research) == ["v1"]  # renamed, not yet catalogued
        assert _versions(session, dataset_id) == []
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL

    # Nothing is published: no catalogue row, nothing partial under a visible name, chain intact.
    assert _versions(session, dataset_id) == []
    for name in _visible(research):
        # Only possible after the rename: a complete, sealed copy that no catalogue row points at (readers
        # trust only catalogued versions), replaced by the next ingest.
        assert stage == "promoted"
        assert _sealed_and_intact(research / name)
    if stage == "row_group_written":
        assert _visible(research) == []
    result = _audit_ok(session)
    assert result.ok, result.message()

    # The killed run's landing copy is removed: by the scheduler's sweep, or else by the next ingest.
    landing = ingest_world.data_dir / "landing" / "episodes_fast"
    (killed_copy,) = _landed(landing)
    if stage == "row_group_written":
        removed = sweep_ingest_leftovers()
        assert killed_copy in removed
        assert _landed(landing) == [] and _staging(research) == [] and _staging(reports) == []
        assert list(landing.iterdir()) == []  # its claim (lock file) too

    # The same delivery publishes on the next run; the crashed run's leftovers are swept.
    rerun = _run(*args)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    published = json.loads(rerun.stdout)
    assert (published["version"], published["row_count"]) == (1, rows)
    assert _visible(research) == ["v1"]
    assert _staging(research) == [] and _staging(reports) == []
    (rerun_copy,) = _landed(landing)  # the finished run's copy stays, the killed run's is gone
    assert rerun_copy != killed_copy
    assert pq.read_table(research / "v1").num_rows == rows
    assert _sealed_and_intact(research / "v1")
    assert _versions(session, dataset_id) == [(1, str(research / "v1"))]

    # A third run of the same bytes is a duplicate, recognised by its content hash.
    duplicate = _run(*args)
    assert duplicate.returncode == 1
    assert "byte-identical to version 1" in json.loads(duplicate.stdout)["message"]
    assert "Traceback" not in duplicate.stdout + duplicate.stderr + rerun.stderr
    assert len(_versions(session, dataset_id)) == 1
    result = _audit_ok(session)
    assert result.ok, result.message()
    session.expire_all()
    outcomes = [
        e.decision
        for e in session.scalars(
            select(AuditEvent).where(AuditEvent.action == "dataset.ingest").order_by(AuditEvent.seq)
        )
    ]
    session.rollback()
    # The killed run could not audit its own end; the rerun's success and the duplicate's refusal are there.
    assert outcomes == ["success", "failure"]


def _write_big_file(path: Path, header: bytes, row: bytes, size: int) -> None:
    """``size`` bytes of CSV, written as one repeated block (seconds, not minutes)."""
    block = row * (8 * 1024 * 1024 // len(row))
    with path.open("wb") as out:
        out.write(header)
        written = len(header)
        while written + len(block) <= size:
            out.write(block)
            written += len(block)
        out.write(row * ((size - written) // len(row)))


#: How much more memory the 2 GB run may take than the same command on a tiny file: the file size is
#: ~1.9 GiB, so anything proportional to it would show; imports vary with the code base and cancel out.
HEADROOM_MIB = 64


@pytest.mark.slow
def test_a_2_gb_delivery_over_the_configured_limit_is_refused_early_without_reading_it(
    session: Session, ingest_world: IngestWorld, tmp_path: Path
) -> None:
    header = b"nhs_number,date_of_birth,sex,admission_date,length_of_stay,cost,emergency\n"
    row = b"9434765919,1970-01-01,F,2020-01-01,3,1237.50,true\n"
    dataset_id = ingest_world.fast.id
    limit = 1024**3
    peaks = {}
    for name, size in (("tiny.csv", 2 * 1024), ("two-gb.csv", 2_000_000_000)):
        path = tmp_path / name
        _write_big_file(path, header, row, size)
        size = path.stat().st_size
        # The tiny file meets a 1 KiB limit: the same refusal, to measure the command's own memory.
        configured = limit if size > limit else 1024
        command = [
            TRE,
            "dataset",
            "ingest",
            str(path),
            "--dataset",
            "episodes_fast",
            "--as",
            ingest_world.owner.label,
        ]
        code, output, peaks[name] = _run_measured(
            command, tmp_path / f"{name}.log", TRE_MAX_UPLOAD_BYTES=str(configured)
        )
        assert code == 1
        (line,) = [line for line in output.splitlines() if line.startswith("rejected:")]
        assert line == (
            f"rejected: {name}: the file is larger than the largest accepted delivery: {size} bytes; "
            f"the limit is {configured} bytes (TRE_MAX_UPLOAD_BYTES): split the delivery; "
            "nothing was published."
        )
        assert "Traceback" not in output
        path.unlink()  # 2 GB: not left in the shared temporary directory
    # Refused before a copy: no landing file, no version, and the process never held the file.
    assert not list((ingest_world.data_dir / "landing").rglob("*.csv"))
    assert _versions(session, dataset_id) == []
    assert peaks["two-gb.csv"] - peaks["tiny.csv"] < HEADROOM_MIB, peaks
    assert peaks["two-gb.csv"] < 2_000_000_000 / 2**20 / 4, peaks
    print(f"peak RSS MiB of the CLI by file: {peaks}")


_UPLOAD_SCRIPT = """
import sys
from tre_platform.pipelines import store_upload
from tre_platform.settings import get_settings
block = bytes(range(256)) * 256
n = int(sys.argv[1]) // len(block)
chunks = (block for _ in range(n))
stored = store_upload(chunks, filename="big.csv", max_bytes=3 * 1024**3, settings=get_settings())
print(stored.sha256, stored.size, stored.path)
"""


@pytest.mark.slow
def test_a_2_gb_upload_streams_to_the_landing_zone_in_bounded_memory(tmp_path: Path) -> None:
    # store_upload (what the API and the upload page call) in a child process, fed 2 GB of 64 KiB chunks,
    # and the same with 2 MB: the peak RSS does not grow with the body, and the hash is of every byte.
    peaks = {}
    for total in (2_000_000, 2_000_000_000):
        command = [sys.executable, "-c", _UPLOAD_SCRIPT, str(total)]
        code, output, peaks[total] = _run_measured(command, tmp_path / f"upload-{total}.log")
        assert code == 0, output
        sha, size, stored = output.split()
        block = bytes(range(256)) * 256
        n = total // len(block)
        expected = hashlib.sha256()
        for _ in range(n):
            expected.update(block)
        assert (sha, int(size)) == (expected.hexdigest(), n * len(block))
        assert Path(stored).stat().st_size == n * len(block)
        Path(stored).unlink()
    assert peaks[2_000_000_000] - peaks[2_000_000] < HEADROOM_MIB, peaks
    assert peaks[2_000_000_000] < 2_000_000_000 / 2**20 / 8, peaks
    print(f"peak RSS MiB by body size: {peaks}")
