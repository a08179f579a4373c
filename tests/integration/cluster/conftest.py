"""One real cluster of each kind per module (see clusters.py), and the project views they read."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from clusters import (
    PROJECT,
    DaskDistributed,
    SparkStandalone,
    start_dask_distributed,
    start_spark_standalone,
    stop_all,
)
from unit.compute.compute_views import make_view


@pytest.fixture(scope="module")
def cluster_views(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project's views, in several Parquet parts each so that a cluster splits the reading.

    Every worker reads the same path: on one host that is the same directory; a deployment mounts the
    project's views at the same path on every worker (see deploy/README.md).
    """
    views = tmp_path_factory.mktemp("cluster") / "views"
    rng = np.random.default_rng(11)
    ids = [f"{i:064x}" for i in range(500)]
    # A rare chapter (three people) so that the protected table has primary and secondary suppressions.
    chapters = np.concatenate([rng.choice(["II", "IX", "X"], 397), ["XV"] * 3])
    make_view(
        views,
        "hospital_episodes",
        pd.DataFrame({"demographic_id": ids[:400], "diagnosis_chapter": chapters}),
        project=PROJECT,
        parts=4,
    )
    make_view(
        views,
        "labour_force_survey",
        pd.DataFrame(
            {
                "demographic_id": ids[50:],
                "employment_status": rng.choice(["employed", "unemployed", "inactive"], 450),
            }
        ),
        project=PROJECT,
        parts=4,
    )
    return views


@pytest.fixture(scope="module")
def spark_standalone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkStandalone]:
    cluster = start_spark_standalone(tmp_path_factory.mktemp("spark-standalone"))
    yield cluster
    stop_all(cluster.daemons)


@pytest.fixture(scope="module")
def dask_distributed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskDistributed]:
    cluster = start_dask_distributed(tmp_path_factory.mktemp("dask-distributed"))
    yield cluster
    stop_all(cluster.daemons)
