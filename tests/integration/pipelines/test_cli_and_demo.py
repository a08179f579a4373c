"""`tre dataset ingest|report` and the demo deliveries (every demo dataset, no identifier survives)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest
import typer
from pipeline_factories import IngestWorld
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from tre_platform.demo.deliveries import DEMO_DATASETS, ingest_demo
from tre_platform.demo.seed import DATASETS, seed
from tre_platform.pipelines.cli import register_dataset_commands

runner = CliRunner()


def _app() -> typer.Typer:
    app = typer.Typer()
    dataset_app = typer.Typer()
    register_dataset_commands(dataset_app)
    app.add_typer(dataset_app, name="dataset")
    return app


def tre(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(_app(), list(args))
    return result.exit_code, result.stdout, result.stderr


def test_cli_ingests_then_reports_as_json_and_as_tables(
    ingest_world: IngestWorld, episodes: Any, write_csv: Any
) -> None:
    owner = ingest_world.owner.label
    path = write_csv(episodes[0].drop(columns=["given_name", "family_name"]))
    code, out, err = tre(
        "dataset", "ingest", str(path), "--dataset", "episodes_fast", "--as", owner, "--json"
    )
    assert code == 0, err
    published = json.loads(out)
    assert (published["version"], published["row_count"]) == (1, len(episodes[0]))
    assert published["match"]["demographic"]["match_rate"] > 0.6

    code, out, _ = tre("dataset", "report", "episodes_fast", "--as", owner)
    assert code == 0
    assert "demographic index" in out and "completeness" in out and "timeliness" in out

    code, out, _ = tre("dataset", "report", "episodes_fast", "--version", "7", "--as", owner, "--json")
    assert code == 1
    assert "no version 7" in json.loads(out)["message"]


def test_cli_prints_every_problem_of_a_rejected_delivery(
    ingest_world: IngestWorld, episodes: Any, write_csv: Any
) -> None:
    frame = episodes[0].drop(columns=["given_name", "family_name"]).astype(object)
    frame.loc[0, "sex"] = "Q"
    frame.loc[1, "length_of_stay"] = "x"
    code, out, err = tre(
        "dataset",
        "ingest",
        str(write_csv(frame)),
        "--dataset",
        "episodes_fast",
        "--as",
        ingest_world.owner.label,
    )
    assert code == 1
    assert "rejected" in err and "nothing was published" in err
    assert "sex" in err and "length_of_stay" in err
    code, out, _ = tre(
        "dataset",
        "ingest",
        str(write_csv(frame)),
        "--dataset",
        "episodes_fast",
        "--as",
        ingest_world.owner.label,
        "--json",
    )
    body = json.loads(out)
    assert body["error"] == "delivery_invalid"
    assert {(p["column"], p["problem"]) for p in body["report"]["problems"]} == {
        ("sex", "allowed"),
        ("length_of_stay", "type"),
    }


def test_the_operator_without_as_is_refused_by_the_policy(
    ingest_world: IngestWorld, episodes: Any, write_csv: Any
) -> None:
    code, _, err = tre("dataset", "ingest", str(write_csv(episodes[0])), "--dataset", "episodes_fast")
    assert code == 1
    assert "may not ingest_dataset" in err


# Matplotlib warns when a tiny delivery gives a histogram with nothing to put on a log scale (the chart is
# still written).
@pytest.mark.filterwarnings("ignore:Data has no positive values:UserWarning")
def test_demo_ingest_publishes_every_demo_dataset_without_direct_identifiers(
    session: Session, tmp_path: Path
) -> None:
    seed(session)
    session.commit()
    versions = ingest_demo(session, n_persons=300)
    assert len(versions) == len(DEMO_DATASETS)
    for spec, version in zip(DATASETS, versions, strict=True):
        identifiers = {c["name"] for c in spec["schema"] if c.get("identifier")}
        published = pq.read_table(version.path).to_pandas()
        assert not identifiers & set(published.columns), spec["name"]
        for kind in {c["index"] for c in spec["schema"] if c.get("identifier")}:
            assert f"{kind}_id" in published.columns
        people_or_firms = [k for k in version.match_report if k in ("demographic", "business")]
        for kind in people_or_firms:
            accuracy = version.match_report[kind]["accuracy"]
            assert accuracy["precision"] > 0.95, (spec["name"], accuracy)
        assert version.row_count == len(published)
    # A second call finds every dataset published and adds nothing.
    assert ingest_demo(session, n_persons=300) == []
    assert pd.notna(versions[0].quality["completeness"]["overall"])
