"""The server re-checks a table against the project's own view, not the numbers the researcher sent.

A table whose declared computation names a project view is recomputed on the server from that view, as
built by the real view builder; a submitted table that differs from the recomputation fails. A table that
names no view is re-run on the submitted data, and its record says the server could not recompute it from
the source.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from airlock_helpers import stage_table
from airlock_world import Airlock, microdata
from sqlalchemy.orm import Session

from tre_lib import session as tre_session
from tre_lib.disclosure import protect_table
from tre_lib.outputs.specs import TableSpec, table_to_csv, write_data
from tre_lib.pseudonymise import encode_key, generate_kek
from tre_platform.actor import Actor
from tre_platform.api.datasets.models import Dataset
from tre_platform.api.projects.models import Project
from tre_platform.api.releases import service
from tre_platform.settings import get_settings
from tre_platform.views.builder import views_dir

# The catalogue tests' helpers write a research version and build views without Unix separation.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "catalogue"))
from helpers import build, publish

SPEC = TableSpec(index=("region",), columns=("sex",), view="lfs")


@pytest.fixture
def lfs_view(airlock: Airlock, session: Session, monkeypatch: pytest.MonkeyPatch) -> Iterator[pd.DataFrame]:
    """The project's ``lfs`` view, built by the view builder from a published research version."""
    monkeypatch.setenv("TRE_KEK", encode_key(generate_kek()))
    get_settings.cache_clear()
    frame = microdata(n=300).assign(demographic_id=[f"d{i:04d}" for i in range(300)])
    frame.loc[frame.index[:4], "region"] = "west"  # a region of four people: its cells are small
    lfs = session.get(Dataset, airlock.lfs_id)
    assert lfs is not None
    publish(session, lfs, frame)
    project = session.get(Project, airlock.project_id)
    assert project is not None
    result = build(session, project)
    assert not isinstance(result, Exception), result
    assert result.outcome("lfs").action == "built"
    yield tre_session(project.code, views_dir=views_dir(project.code)).read("lfs")


def _submit(
    session: Session, airlock: Airlock, table: pd.DataFrame, spec: TableSpec, data: pd.DataFrame | None
) -> dict[str, Any]:
    researcher = Actor.of(airlock.researcher)
    request = stage_table(
        session,
        researcher,
        airlock.project_id,
        title="by region and sex",
        name="t.csv",
        content=table_to_csv(table),
        spec=spec.to_dict(),
        data=None if data is None else write_data(data[list(spec.needed_columns)]),
    )
    service.submit(session, researcher, request.id)
    session.commit()
    (item,) = request.files
    return dict(item.server_check)


def test_a_table_declaring_a_view_is_recomputed_from_the_view_without_any_upload(
    airlock: Airlock, session: Session, lfs_view: pd.DataFrame
) -> None:
    table = protect_table(lfs_view, "region", "sex", rules="default").table
    check = _submit(session, airlock, table, SPEC, data=None)
    assert check["status"] == "review"  # the west cells are suppressed, and match the server's own
    assert check["comparison"]["mismatched"] == []
    assert "recomputed from project view 'lfs'" in check["findings"][0]
    source = check["record"]["source"]
    assert source["recomputed_from_source"] is True and source["view"] == "lfs"
    assert source["view_version"] == 1


def test_a_table_from_doctored_data_fails_against_the_view_even_with_matching_uploaded_data(
    airlock: Airlock, session: Session, lfs_view: pd.DataFrame
) -> None:
    # The researcher drops the small region, so the table (and the uploaded data) look safe.
    doctored = lfs_view[lfs_view["region"] != "west"]
    table = protect_table(doctored, "region", "sex", rules="default").table
    check = _submit(session, airlock, table, SPEC, data=doctored)
    assert check["status"] == "fail"
    assert check["record"]["source"]["recomputed_from_source"] is True
    findings = " ".join(check["findings"])
    assert "differs from the same computation on the project's view" in findings
    assert check["comparison"]["ok"] is False and check["comparison"]["mismatched"]


def test_without_a_declared_view_the_submitted_data_is_checked_and_the_record_says_so(
    airlock: Airlock, session: Session
) -> None:
    frame = microdata()
    spec = TableSpec(index=("region",), columns=("sex",))
    table = protect_table(frame, "region", "sex", rules="default").table
    check = _submit(session, airlock, table, spec, data=frame)
    # Uploaded numbers are never an automatic pass: at most review, with the reason first.
    assert check["status"] == "review"
    assert check["findings"][0].startswith("not recomputed from a project view")
    assert check["findings"][1].startswith("could not recompute from the source")
    assert check["record"]["source"] == {
        "kind": "submitted",
        "description": check["findings"][1],
        "error": False,
        "view": None,
        "view_version": None,
        "recomputed_from_source": False,
    }


def test_a_declared_view_the_project_does_not_have_fails_with_a_sentence(
    airlock: Airlock, session: Session
) -> None:
    frame = microdata()
    table = protect_table(frame, "region", "sex", rules="default").table
    check = _submit(
        session, airlock, table, TableSpec(index=("region",), columns=("sex",), view="nope"), frame
    )
    assert check["status"] == "fail"
    assert "the declared view 'nope' could not be read on the server" in check["findings"][0]
