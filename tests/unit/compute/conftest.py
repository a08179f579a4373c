"""Views on disk written with the manifest format, one SparkSession and one Dask LocalCluster per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from compute_views import make_view


@pytest.fixture
def views(tmp_path: Path) -> Path:
    root = tmp_path / "projects" / "P-1" / "views"
    make_view(
        root,
        "hes",
        pd.DataFrame(
            {"demographic_id": ["a", "b", "c", "d"], "age": [30, 41, 52, 63], "chapter": ["I", "I", "X", "X"]}
        ),
    )
    make_view(
        root,
        "lfs-2026",
        pd.DataFrame({"demographic_id": ["b", "c", "e"], "status": ["employed", "inactive", "inactive"]}),
    )
    (root / ".builds").mkdir()
    return root


@pytest.fixture(scope="session")
def dask_cluster() -> Iterator[Any]:
    from distributed import LocalCluster

    cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0")
    yield cluster
    cluster.close()
