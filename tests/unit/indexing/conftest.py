"""Shared, session-scoped fixtures for the indexing tests: one small world, one index, one Spark session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tre_lib.synth import World, generate_world


@pytest.fixture(scope="session")
def world() -> World:
    return generate_world(1_500, seed=31)


@pytest.fixture
def index_dir(tmp_path: Path) -> Path:
    return tmp_path / "index"
