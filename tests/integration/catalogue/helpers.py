"""Small helpers shared by the catalogue and lifecycle tests."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy.orm import Session

from tre_platform.actor import Actor
from tre_platform.api.datasets.models import Dataset, DatasetVersion
from tre_platform.api.projects.models import Project
from tre_platform.settings import get_settings
from tre_platform.views.builder import ViewBuildError, ViewBuildResult, build_views, views_dir
from tre_platform.views.storage import StorageMode


def build(session: Session, project: Project) -> ViewBuildResult | ViewBuildError:
    """Build a project's views without Unix separation; a refused build is returned, not raised."""
    try:
        result = build_views(
            session, Actor.system("tests"), project.code, mode=StorageMode.insecure_single_user
        )
    except ViewBuildError as exc:
        return exc
    session.commit()
    return result


def view_path(project: Project, dataset: Dataset) -> Path:
    return views_dir(project.code) / dataset.name


def publish(
    session: Session, dataset: Dataset, frame: pd.DataFrame, *, quality: dict[str, Any] | None = None
) -> DatasetVersion:
    """A research version on disk in the layout contract's shape, with its quality dimensions."""
    root = get_settings().resolved_data_dir / "research" / dataset.name
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    number = len(dataset.versions) + 1
    staging = root / f".staging-{uuid.uuid4().hex}"
    staging.mkdir(mode=0o700)
    part = staging / "part-00000.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), part)
    (staging / "_manifest.json").write_text(
        json.dumps({"schema": list(frame.columns), "row_count": len(frame)})
    )
    (staging / "_SUCCESS").touch()
    digest = hashlib.sha256(part.read_bytes()).hexdigest()
    final = root / f"v{number}"
    os.rename(staging, final)
    version = DatasetVersion(
        dataset_id=dataset.id,
        version=number,
        path=str(final),
        row_count=len(frame),
        content_sha256=digest,
        quality=quality or {},
    )
    session.add(version)
    session.flush()
    session.refresh(dataset)
    return version
