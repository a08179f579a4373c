"""The Dask and Spark engines publish what the pandas engine publishes, and report the same problems."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest
from factories import make_dataset
from pipeline_factories import FAST_SCHEMA, IngestWorld
from sqlalchemy.orm import Session

from tre_platform.pipelines import DeliveryInvalid, choose_engine, ingest


def _fast(episodes: tuple[pd.DataFrame, pd.DataFrame]) -> pd.DataFrame:
    return episodes[0].drop(columns=["given_name", "family_name"])


def _published(path: str) -> pd.DataFrame:
    frame = pq.read_table(path).to_pandas(ignore_metadata=True)
    return frame.sort_values(["demographic_id", "admission_date", "length_of_stay", "cost"]).reset_index(
        drop=True
    )


def _problems(error: DeliveryInvalid) -> list[tuple[Any, ...]]:
    return sorted((p.column or "", p.problem, p.count, tuple(p.rows)) for p in error.report.problems)


def _bad(frame: pd.DataFrame) -> pd.DataFrame:
    bad = frame.copy().astype(object)
    bad.loc[[3, 40, 150], "length_of_stay"] = "n/a"
    bad.loc[[7, 8], "sex"] = "?"
    bad.loc[199, "admission_date"] = "1990-01-01"
    return bad


def _compare_with_pandas(
    session: Session, ingest_world: IngestWorld, episodes: Any, write_csv: Any, engine: str, **kwargs: Any
) -> None:
    other = make_dataset(session, owner=ingest_world.org, schema=FAST_SCHEMA, name=f"episodes_{engine}")
    session.commit()
    frame = _fast(episodes)
    reference = ingest(session, ingest_world.owner, "episodes_fast", write_csv(frame))
    version = ingest(session, ingest_world.owner, other.name, write_csv(frame), engine=engine, **kwargs)
    assert version.row_count == reference.row_count == len(frame)
    pd.testing.assert_frame_equal(_published(version.path), _published(reference.path))
    schema = pq.read_schema(next(Path(version.path).glob("part-*.parquet")))
    expected = pq.read_schema(next(Path(reference.path).glob("part-*.parquet")))
    assert schema.remove_metadata().equals(expected.remove_metadata())
    assert version.quality["completeness"] == reference.quality["completeness"]
    assert version.quality["validity"] == reference.quality["validity"]
    assert version.quality["consistency"] == reference.quality["consistency"]
    assert version.quality["engine"] == engine

    with pytest.raises(DeliveryInvalid) as on_pandas:
        ingest(session, ingest_world.owner, "episodes_fast", write_csv(_bad(frame)), engine="pandas")
    with pytest.raises(DeliveryInvalid) as on_engine:
        ingest(session, ingest_world.owner, other.name, write_csv(_bad(frame)), engine=engine, **kwargs)
    assert _problems(on_engine.value) == _problems(on_pandas.value)
    assert [v.version for v in other.versions] == [1]


@pytest.mark.sqlite_only
def test_dask_engine_publishes_what_pandas_publishes(
    session: Session, ingest_world: IngestWorld, episodes: Any, write_csv: Any, dask_client: Any
) -> None:
    _compare_with_pandas(session, ingest_world, episodes, write_csv, "dask")


@pytest.mark.slow
@pytest.mark.sqlite_only
def test_spark_engine_publishes_what_pandas_publishes(
    session: Session, ingest_world: IngestWorld, episodes: Any, write_csv: Any, spark: Any
) -> None:
    _compare_with_pandas(session, ingest_world, episodes, write_csv, "spark", spark=spark)


@pytest.mark.slow
@pytest.mark.sqlite_only
def test_spark_engine_matches_with_splinks_spark_backend(
    session: Session, ingest_world: IngestWorld, episodes: Any, write_csv: Any, spark: Any
) -> None:
    frame = episodes[0].iloc[:80]
    version = ingest(
        session,
        ingest_world.owner,
        "episodes",
        write_csv(frame),
        engine="spark",
        spark=spark,
        match_backend="spark",
    )
    report = version.match_report["demographic"]
    assert report["backend"] == "spark"
    assert report["counts"]["deterministic"] + report["counts"]["probabilistic"] > 0.8 * len(frame)
    published = pq.read_table(version.path).to_pandas()
    assert "nhs_number" not in published.columns
    assert published["demographic_id"].notna().mean() > 0.8


def test_auto_engine_chooses_by_size() -> None:
    assert choose_engine("auto", 10_000) == "pandas"
    assert choose_engine("auto", 10**10) == "spark"
    assert choose_engine("dask", 1) == "dask"
