"""Fixtures of the disclosure tests: one local Spark session and one in-process Dask cluster per test run."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """A local[1] SparkSession (2 shuffle partitions, no UI) shared by the whole test session."""
    from pyspark.sql import SparkSession

    # Python workers, if any, must run this interpreter (it has tre_lib installed).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    session = (
        SparkSession.builder.master("local[1]")
        .appName("tre-disclosure-tests")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.default.parallelism", "2")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session


@pytest.fixture(scope="session")
def dask_client() -> Iterator[Any]:
    """An in-process Dask cluster (one worker, one thread) shared by the whole test session."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        yield client
