"""Write a project view (Parquet + _manifest.json) the way the view builder does, for compute tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
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
    parts: int = 1,
) -> Path:
    """Write ``frame`` as the view ``name`` in ``parts`` Parquet files (distributed readers split on them)."""
    target = views / name
    target.mkdir(parents=True)
    paths = []
    for number, chunk in enumerate(np.array_split(np.arange(len(frame)), parts)):
        path = target / f"part-{number:05d}.parquet"
        pq.write_table(pa.Table.from_pandas(frame.iloc[chunk], preserve_index=False), path)
        paths.append((path, len(chunk)))
    path = paths[0][0]
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
        files=tuple(FileInfo(p.name, sha256_file(p), rows) for p, rows in paths),
        source_version=3,
        source_version_id="v3id",
        key_version=1,
        master_key_version=1,
        built_at="2026-01-01T00:00:00+00:00",
        engine="arrow",
    )
    write_manifest(target, manifest)
    return target
