"""Release re-checks differencing at the moment of release.

Two requests whose checks ran concurrently (each committed while the other was not yet in flight, which
the sequential API cannot show, so one request's state is set aside for the other's check) both pass;
the first is released, and the second - approved by two checkers - is refused at release because it now
isolates a small group with what left, and nothing of it is released.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from airlock_helpers import stage_table
from airlock_world import Airlock, microdata
from sqlalchemy import select
from sqlalchemy.orm import Session

from tre_lib import session as tre_session
from tre_lib.disclosure import protect_table
from tre_lib.outputs.specs import Filter, TableSpec, apply_filters, table_to_csv
from tre_lib.pseudonymise import encode_key, generate_kek
from tre_platform.actor import Actor
from tre_platform.api.datasets.models import Dataset
from tre_platform.api.projects.models import Project
from tre_platform.api.releases import service
from tre_platform.api.releases.models import ReleasedTable, ReleaseRequest, ReleaseState
from tre_platform.errors import Conflict
from tre_platform.settings import get_settings
from tre_platform.views.builder import views_dir

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "catalogue"))
from helpers import build, publish

ALL = TableSpec(index=("sex",), view="lfs")
NOT_WEST = TableSpec(index=("sex",), view="lfs", filters=(Filter("region", "!=", "west"),))


@pytest.fixture
def lfs_view(airlock: Airlock, session: Session, monkeypatch: pytest.MonkeyPatch) -> Iterator[pd.DataFrame]:
    monkeypatch.setenv("TRE_KEK", encode_key(generate_kek()))
    get_settings.cache_clear()
    frame = microdata(n=300).assign(demographic_id=[f"d{i:04d}" for i in range(300)])
    frame.loc[frame.index[:4], "region"] = "west"
    lfs = session.get(Dataset, airlock.lfs_id)
    assert lfs is not None
    publish(session, lfs, frame)
    project = session.get(Project, airlock.project_id)
    assert project is not None
    result = build(session, project)
    assert not isinstance(result, Exception), result
    yield tre_session(project.code, views_dir=views_dir(project.code)).read("lfs")


def _request(
    session: Session, airlock: Airlock, view: pd.DataFrame, spec: TableSpec, title: str
) -> ReleaseRequest:
    table = protect_table(apply_filters(view, spec.filters), "sex", None, rules="default").table
    return stage_table(
        session,
        Actor.of(airlock.researcher),
        airlock.project_id,
        title=title,
        name=f"{title}.csv",
        content=table_to_csv(table),
        spec=spec.to_dict(),
        data=None,
    )


def _approve(session: Session, airlock: Airlock, request: ReleaseRequest) -> None:
    for checker in airlock.checkers[:2]:
        service.review(session, Actor.of(checker), request.id, "approve")


def test_an_approved_request_that_now_combines_with_a_released_table_is_not_released(
    airlock: Airlock, session: Session, lfs_view: pd.DataFrame
) -> None:
    researcher = Actor.of(airlock.researcher)
    first = _request(session, airlock, lfs_view, NOT_WEST, "not-west")
    service.submit(session, researcher, first.id)
    assert first.check_status == "pass"
    second = _request(session, airlock, lfs_view, ALL, "everyone")
    # The second's check runs as if concurrently with the first's: the first is not yet in flight.
    first.state = ReleaseState.draft
    session.flush()
    service.submit(session, researcher, second.id)
    assert second.check_status == "pass"
    first.state = ReleaseState.in_review
    session.flush()
    _approve(session, airlock, first)
    _approve(session, airlock, second)
    service.release(session, researcher, first.id)
    session.commit()
    with pytest.raises(Conflict, match="re-check at release"):
        service.release(session, researcher, second.id)
    session.rollback()
    assert session.get(ReleaseRequest, second.id).state is ReleaseState.approved  # type: ignore[union-attr]
    released = session.scalars(select(ReleasedTable.request_id)).all()
    assert released == [first.id]
