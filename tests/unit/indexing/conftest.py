"""Shared, session-scoped fixtures for the indexing tests: one small world, one index, one Spark session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tre_lib.synth import World, generate_world


@pytest.fixture(scope="session")
def world() -> World:
    return generate_world(1_500, seed=31)


@pytest.fixture(scope="session")
def spark() -> Iterator[object]:
    """A local[1] SparkSession with Splink's similarity jar (Jaro-Winkler UDFs) on the classpath."""
    from pyspark.sql import SparkSession
    from splink.backends.spark import similarity_jar_location

    session = (
        SparkSession.builder.master("local[1]")
        .appName("tre-indexing-tests")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.default.parallelism", "2")
        .config("spark.ui.enabled", "false")
        .config("spark.jars", similarity_jar_location())
        .config("spark.driver.memory", "1g")
        .getOrCreate()
    )
    yield session
    session.stop()


@pytest.fixture
def index_dir(tmp_path: Path) -> Path:
    return tmp_path / "index"
