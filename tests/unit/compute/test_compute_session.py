"""tre_lib.session(): the project's catalogue, readers on every engine, helpful errors for anything else."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

import tre_lib
from tre_lib.compute import WorkspaceError


def _env(views: Path, **extra: str) -> dict[str, str]:
    return {"TRE_PROJECT": "P-1", "TRE_VIEWS_DIR": str(views), **extra}


def test_datasets_lists_the_views_with_schema_and_description(views: Path) -> None:
    ws = tre_lib.session(environ=_env(views))
    found = {d.name: d for d in ws.datasets()}
    assert sorted(found) == ["hes", "lfs-2026"]
    hes = found["hes"]
    assert (hes.title, hes.description, hes.rows, hes.source_version) == ("hes title", "about hes", 4, 3)
    assert hes.schema == {"demographic_id": "string", "age": "int64", "chapter": "string"}
    assert [c.name for c in hes.columns if c.project_id_column] == ["demographic_id"]
    assert "joins inside this project only" in hes.describe()


@pytest.mark.parametrize("engine", ["pandas", "polars", "arrow"])
def test_read_returns_the_view_on_each_local_engine(views: Path, engine: Any) -> None:
    frame = tre_lib.session(environ=_env(views)).read("hes", engine=engine, columns=["age"])
    assert frame.shape == (4, 1) if engine != "arrow" else frame.num_rows == 4


def test_spark_registers_every_view_and_joins_on_project_ids(views: Path, spark: Any) -> None:
    ws = tre_lib.session(environ=_env(views))
    session = ws.spark()
    rows = session.sql(
        "SELECT h.chapter, l.status FROM hes h JOIN lfs_2026 l "
        "ON h.demographic_id = l.demographic_id ORDER BY 1, 2"
    ).collect()
    assert [tuple(r) for r in rows] == [("I", "employed"), ("X", "inactive")]
    assert ws.read("lfs-2026", engine="spark").count() == 3


def test_dask_uses_the_configured_scheduler(views: Path, dask_cluster: Any) -> None:
    ws = tre_lib.session(environ=_env(views, TRE_DASK_SCHEDULER=dask_cluster.scheduler_address))
    client = ws.dask()
    assert client.scheduler.address == dask_cluster.scheduler_address
    ddf = ws.read("hes", engine="dask")
    assert int(ddf["age"].sum().compute()) == 186
    ws.close()


def test_asking_for_a_dataset_outside_the_project_is_a_helpful_error(views: Path) -> None:
    ws = tre_lib.session(environ=_env(views))
    with pytest.raises(WorkspaceError, match=r"no view called 'hospital'.*its views are: hes, lfs-2026"):
        ws.read("hospital")
    with pytest.raises(WorkspaceError, match=re.escape("no view called '../../research'")):
        ws.read("../../research")
    with pytest.raises(WorkspaceError, match="no column"):
        ws.read("hes", columns=["nhs_number"])
    with pytest.raises(WorkspaceError, match="unknown engine"):
        ws.read("hes", engine="excel")  # type: ignore[arg-type]


def test_another_projects_session_is_refused_in_a_workspace(views: Path) -> None:
    with pytest.raises(WorkspaceError, match="started for project P-1, not P-2"):
        tre_lib.session("P-2", environ=_env(views))


def test_outside_a_workspace_the_error_says_how_to_start_one() -> None:
    with pytest.raises(WorkspaceError, match="not a tre workspace"):
        tre_lib.session(environ={})


def test_an_unreadable_views_directory_says_access_was_removed(
    views: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def denied(self: Path) -> Any:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "iterdir", denied)
    with pytest.raises(WorkspaceError, match="access may have been removed"):
        tre_lib.session(environ=_env(views)).datasets()


def test_a_view_being_built_is_not_listed(views: Path) -> None:
    (views / "half").mkdir()
    assert "half" not in tre_lib.session(environ=_env(views)).names()
