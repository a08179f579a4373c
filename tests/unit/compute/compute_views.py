"""Write a project view (Parquet + _manifest.json) the way the view builder does, for compute tests."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tre_lib.compute import ColumnInfo, FileInfo, ViewManifest, write_manifest
from tre_lib.compute.manifest import sha256_file


def make_view(
    views: Path,
    name: str,
    frame: pd.DataFrame,
    *,
    project: str = "P-1",
    ids: tuple[str, ...] = ("demographic_id",),
) -> Path:
    target = views / name
    target.mkdir(parents=True)
    path = target / "part-00000.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
    manifest = ViewManifest(
        dataset=name,
        title=f"{name} title",
        description=f"about {name}",
        project=project,
        columns=tuple(
            ColumnInfo(c, str(pq.read_schema(path).field(c).type), f"{c} meaning", c in ids)
            for c in frame.columns
        ),
        row_count=len(frame),
        files=(FileInfo(path.name, sha256_file(path), len(frame)),),
        source_version=3,
        source_version_id="v3id",
        key_version=1,
        master_key_version=1,
        built_at="2026-01-01T00:00:00+00:00",
        engine="arrow",
    )
    write_manifest(target, manifest)
    return target
