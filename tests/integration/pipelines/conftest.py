"""Fixtures for the ingest pipeline tests: a small world and its demographic index, a data owner and a
registered dataset, delivery writers, one Spark session and one Dask cluster for the whole session."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from factories import make_dataset, make_org, make_user
from pipeline_factories import FAST_SCHEMA, FULL_SCHEMA, IngestWorld
from sqlalchemy.orm import Session

from tre_lib.indexing.demo import build_index_from_world
from tre_lib.synth import World, generate_world
from tre_lib.synth import make_dataset as synth_dataset
from tre_platform.actor import Actor
from tre_platform.settings import get_settings


@pytest.fixture(scope="session")
def world() -> World:
    return generate_world(400, seed=11)


@pytest.fixture(scope="session")
def episodes(world: World) -> tuple[pd.DataFrame, pd.DataFrame]:
    """200 hospital episodes shaped to FULL_SCHEMA, and the truth (person of each row)."""
    records, truth = synth_dataset(world, "hospital_episodes", 200, seed=3)
    n = len(records)
    frame = pd.DataFrame(
        {
            "nhs_number": records["nhs_number"],
            "given_name": records["given_name"],
            "family_name": records["family_name"],
            "date_of_birth": records["dob"],
            "sex": records["sex"].fillna("U"),
            "admission_date": records["admission_date"],
            "length_of_stay": records["length_of_stay"],
            "cost": (records["length_of_stay"] * 412.5).round(2),
            "emergency": ["true" if i % 3 else "false" for i in range(n)],
        }
    )
    return frame, truth


@pytest.fixture
def ingest_world(session: Session, world: World) -> IngestWorld:
    data_dir = get_settings().ensure_data_dir()
    _, index_truth = build_index_from_world(
        world, "demographic", data_dir / "linkage" / "indexes" / "demographic", fraction=0.9, seed=1
    )
    org = make_org(session, kind="data_owner")
    owner = make_user(session, roles=["data_owner"], organisation_id=org.id)
    full = make_dataset(session, owner=org, schema=FULL_SCHEMA, name="episodes")
    fast = make_dataset(session, owner=org, schema=FAST_SCHEMA, name="episodes_fast")
    session.commit()
    return IngestWorld(org, Actor.of(owner), full, fast, index_truth, data_dir)


@pytest.fixture
def write_csv(tmp_path: Path) -> Callable[..., Path]:
    """Write a frame (or raw text/bytes) as a delivery file and return its path."""
    counter = iter(range(10_000))

    def write(content: pd.DataFrame | str | bytes, name: str | None = None) -> Path:
        path = tmp_path / (name or f"delivery-{next(counter)}.csv")
        if isinstance(content, pd.DataFrame):
            content.to_csv(path, index=False)
        elif isinstance(content, str):
            path.write_text(content, encoding="utf-8")
        else:
            path.write_bytes(content)
        return path

    return write
