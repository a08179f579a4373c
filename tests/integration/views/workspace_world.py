"""A small world for view and workspace tests: two data owners, two datasets with published research
versions on disk (Parquet in the layout the ingest pipeline produces), two approved projects led by two
accredited researchers, and agreements covering both datasets.

The research versions share one population of demographic index IDs, so a join inside a project and
the absence of one across projects can both be measured.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import grp
import json
import os
import pwd
import secrets
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from factories import SYSTEM, make_accreditation, make_agreement, make_dataset, make_org, make_user
from sqlalchemy.orm import Session

from tre_platform.actor import Actor
from tre_platform.api.agreements.models import DataSharingAgreement
from tre_platform.api.datasets.models import Dataset, DatasetVersion
from tre_platform.api.projects import service as projects
from tre_platform.api.projects.models import Project
from tre_platform.api.projects.schemas import DatasetRequest, ProjectCreate
from tre_platform.api.users.models import User
from tre_platform.clock import clock
from tre_platform.settings import get_settings

HES_SCHEMA: list[dict[str, Any]] = [
    {"name": "nhs_number", "type": "string", "identifier": True, "index": "demographic"},
    {"name": "age", "type": "integer", "description": "Age at admission"},
    {"name": "diagnosis", "type": "string", "description": "ICD-10 chapter"},
    {"name": "secret_note", "type": "string", "description": "Free text, never approved"},
]
LFS_SCHEMA: list[dict[str, Any]] = [
    {"name": "ni_number", "type": "string", "identifier": True, "index": "demographic"},
    {"name": "employment_status", "type": "string", "description": "ILO status"},
    {"name": "weekly_hours", "type": "float", "description": "Usual weekly hours"},
    {"name": "pay", "type": "float", "description": "Gross weekly pay, never approved"},
]
PEOPLE = 300


def research_frame(name: str, rng: np.random.Generator, ids: np.ndarray) -> pd.DataFrame:
    n = len(ids)
    if name.startswith("hes"):
        return pd.DataFrame(
            {
                "demographic_id": ids,
                "age": rng.integers(18, 90, n),
                "diagnosis": rng.choice(["I", "II", "IX", "X"], n),
                "secret_note": [f"note {i}" for i in range(n)],
            }
        )
    return pd.DataFrame(
        {
            "demographic_id": ids,
            "employment_status": rng.choice(["employed", "unemployed", "inactive"], n),
            "weekly_hours": rng.uniform(0, 60, n).round(1),
            "pay": rng.uniform(100, 1500, n).round(2),
        }
    )


def publish_version(
    session: Session, dataset: Dataset, frame: pd.DataFrame, *, parts: int = 2
) -> DatasetVersion:
    """Write a research version exactly as the layout contract says, then its DatasetVersion row."""
    root = get_settings().resolved_data_dir / "research" / dataset.name
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    number = len(dataset.versions) + 1
    staging = root / f".staging-{uuid.uuid4().hex}"
    staging.mkdir(mode=0o700)
    files = []
    for i, chunk in enumerate(np.array_split(np.arange(len(frame)), parts)):
        path = staging / f"part-{i:05d}.parquet"
        pq.write_table(pa.Table.from_pandas(frame.iloc[chunk], preserve_index=False), path)
        files.append({"name": path.name, "sha256": _sha(path)})
    (staging / "_manifest.json").write_text(
        json.dumps({"schema": list(frame.columns), "row_count": len(frame), "files": files})
    )
    (staging / "_SUCCESS").touch()
    final = root / f"v{number}"
    os.rename(staging, final)
    version = DatasetVersion(
        dataset_id=dataset.id,
        version=number,
        path=str(final),
        row_count=len(frame),
        content_sha256=_sha(final / "part-00000.parquet"),
    )
    session.add(version)
    session.flush()
    session.refresh(dataset)
    return version


def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def approved_project(
    session: Session, lead: User, requests: dict[Dataset, list[str]], **overrides: Any
) -> Project:
    data: dict[str, Any] = {
        "title": f"Study {secrets.token_hex(3)}",
        "lay_summary": "A study of outcomes that is in the public interest.",
        "purpose": "policy_evidence",
        "legal_gateway": "dea",
        "start_date": clock.today(),
        "end_date": clock.today() + dt.timedelta(days=365),
    }
    data.update(overrides)
    actor = Actor.of(lead)
    project = projects.create_project(session, actor, ProjectCreate(**data))
    for dataset, columns in requests.items():
        projects.request_dataset(
            session, actor, project.id, DatasetRequest(dataset_id=dataset.id, columns=columns)
        )
    projects.transition(session, actor, project.id, "submit", "please")
    projects.transition(session, SYSTEM, project.id, "approve", "fine")
    return project


@dataclass
class WorkspaceWorld:
    alice: User
    bob: User
    hes: Dataset
    lfs: Dataset
    p1: Project
    p2: Project
    hes_agreement: DataSharingAgreement
    lfs_agreement: DataSharingAgreement
    shared_ids: list[str]


def build_workspace_world(session: Session, *, seed: int = 7) -> WorkspaceWorld:
    rng = np.random.default_rng(seed)
    health = make_org(session, kind="data_owner")
    labour = make_org(session, kind="data_owner")
    uni = make_org(session, kind="research_body", accredited_until=clock.today() + dt.timedelta(days=400))
    tag = secrets.token_hex(2)
    alice = make_user(session, username=f"alice{tag}", roles=["researcher"], organisation_id=uni.id)
    bob = make_user(session, username=f"bob{tag}", roles=["researcher"], organisation_id=uni.id)
    for person in (alice, bob):
        make_accreditation(session, person)
    hes = make_dataset(
        session, owner=health, name=f"hes{tag}", schema=HES_SCHEMA, description="Hospital episodes"
    )
    lfs = make_dataset(session, owner=labour, name=f"lfs{tag}", schema=LFS_SCHEMA, description="Labour force")
    population = np.array([secrets.token_hex(8) for _ in range(PEOPLE)])
    hes_ids = rng.choice(population, 200, replace=False)
    lfs_ids = rng.choice(population, 180, replace=False)
    publish_version(session, hes, research_frame("hes", rng, hes_ids))
    publish_version(session, lfs, research_frame("lfs", rng, lfs_ids))
    hes_agreement = make_agreement(session, owner=health)
    lfs_agreement = make_agreement(session, owner=labour)
    p1 = approved_project(
        session, alice, {hes: ["age", "diagnosis"], lfs: ["employment_status", "weekly_hours"]}
    )
    p2 = approved_project(session, bob, {hes: ["age"], lfs: ["employment_status"]})
    session.commit()
    shared = sorted(set(hes_ids) & set(lfs_ids))
    return WorkspaceWorld(alice, bob, hes, lfs, p1, p2, hes_agreement, lfs_agreement, shared)


# Unix accounts made by a test are removed after it ---------------------------------------------------


def _ours() -> tuple[set[str], set[str]]:
    users = {p.pw_name for p in pwd.getpwall() if p.pw_name.startswith("tre-u-")}
    groups = {g.gr_name for g in grp.getgrall() if g.gr_name.startswith(("tre-p-", "tre-u-"))}
    return users, groups


def _wait_until_no_processes(uid: int, grace: float = 60.0) -> None:
    """Wait (up to ``grace`` seconds, then give up quietly) until no process runs as ``uid``."""
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        owners = []
        for entry in Path("/proc").iterdir():
            with contextlib.suppress(OSError):
                if entry.name.isdigit():
                    owners.append(entry.stat().st_uid)
        if uid not in owners:
            return
        time.sleep(0.2)


@contextlib.contextmanager
def unix_accounts_cleanup() -> Iterator[None]:
    """Delete every tre-u-*/tre-p-* user and group created inside the block."""
    users_before, groups_before = _ours()
    try:
        yield
    finally:
        users_after, _ = _ours()
        for name in sorted(users_after - users_before):
            # userdel refuses a user with processes: a stopped server's kernel and Spark JVM may still be
            # exiting (or not yet reaped) for a moment, which left the account behind for the next run.
            _wait_until_no_processes(pwd.getpwnam(name).pw_uid)
            subprocess.run(["userdel", "--remove", name], capture_output=True, check=False)
        _, groups_left = _ours()
        for name in sorted(groups_left - groups_before):
            subprocess.run(["groupdel", name], capture_output=True, check=False)


@contextlib.contextmanager
def traversable_data_dir(monkeypatch: Any) -> Iterator[Path]:
    """A data directory researchers' Unix users can reach (pytest's own tmp is private to root)."""
    base = Path("/tmp") / f"tre-it-{uuid.uuid4().hex[:10]}"
    base.mkdir(mode=0o711)
    base.chmod(0o711)
    data_dir = base / "data"
    monkeypatch.setenv("TRE_DATA_DIR", str(data_dir))
    get_settings.cache_clear()
    try:
        yield data_dir
    finally:
        for dirpath, _dirs, _files in os.walk(base):
            with contextlib.suppress(OSError):
                Path(dirpath).chmod(0o700)
        shutil.rmtree(base, ignore_errors=True)
        get_settings.cache_clear()
