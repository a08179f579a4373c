"""The demo's release requests (`seed_releases`): real work in the output checkers' queue."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from tre_lib.outputs.specs import apply_filters
from tre_platform.actor import Actor
from tre_platform.api.releases import service
from tre_platform.api.releases.models import ReleaseRequest, ReleaseState
from tre_platform.api.users.models import User
from tre_platform.demo.releases import DEMO_PROJECT, DISCLOSIVE, SAFE, episodes, seed_releases
from tre_platform.demo.seed import seed
from tre_platform.errors import Forbidden, NotFound


@pytest.fixture
def demo(session: Session) -> list[ReleaseRequest]:
    seed(session)
    staged = seed_releases(session)
    session.commit()
    return staged


def actor(session: Session, username: str) -> Actor:
    return Actor.of(session.scalars(select(User).where(User.username == username)).one())


def test_alice_has_a_safe_and_a_disclosive_request_in_review(demo: list[ReleaseRequest]) -> None:
    safe, disclosive = demo
    assert [r.title for r in demo] == [SAFE.title, DISCLOSIVE.title]
    assert {r.requester.username for r in demo} == {"alice"}
    assert {r.project.title for r in demo} == {DEMO_PROJECT}
    assert [r.state for r in demo] == [ReleaseState.in_review, ReleaseState.in_review]
    assert [(r.checker.username, r.decision.value) for r in safe.current_reviews] == [("checker1", "approve")]
    assert disclosive.current_reviews == []


def test_the_server_passes_the_safe_table_and_fails_the_disclosive_one(demo: list[ReleaseRequest]) -> None:
    safe, disclosive = demo
    # Not "pass": the demo data has no person_id, which the health-tier3 profile counts contributors by, so
    # records were counted instead and a checker must see that (issue 14, units not rows).
    assert safe.check_status == "review"
    (safe_file,) = safe.files
    assert any("records were counted instead" in f for f in safe_file.server_check["findings"])
    assert disclosive.check_status == "fail"
    (finding_file,) = disclosive.files
    assert any("published that the rules suppress" in f for f in finding_file.server_check["findings"])
    # The server's record names the small cells it found: the reason the table cannot go out as it is.
    record = finding_file.server_check["record"]
    assert record["suppression"]["primary"]
    assert any("threshold: suppress" in f["reasons"] for f in record["findings"] if f["primary"])


def test_the_tables_are_computed_from_the_synthetic_episodes(demo: list[ReleaseRequest]) -> None:
    safe, _ = demo
    frame = episodes()
    assert len(frame) > 100
    # The disclosive table counts a small subpopulation: some of its cells are under the threshold of 10.
    long_stays = apply_filters(frame, DISCLOSIVE.spec.filters)
    assert long_stays.groupby(["diagnosis_chapter", "sex"]).size().min() < 10
    # The safe table's cells are all far above it.
    assert frame.groupby(["stay_band", "admission_method"]).size().min() >= 20
    assert safe.files[0].spec["index"] == ["stay_band"] and safe.files[0].data_size


def test_checker2_completes_the_two_person_approval(demo: list[ReleaseRequest], session: Session) -> None:
    safe, _ = demo
    with pytest.raises(Forbidden, match="already reviewed"):
        service.review(session, actor(session, "checker1"), safe.id, "approve")
    done = service.review(session, actor(session, "checker2"), safe.id, "approve", "agree")
    assert done.state is ReleaseState.approved
    released = service.release(session, actor(session, "alice"), safe.id)
    assert released.state is ReleaseState.released and released.bundle_sha256


def test_the_checker_queue_shows_both(demo: list[ReleaseRequest], session: Session) -> None:
    queue = service.list_requests(session, actor(session, "checker2"), state=ReleaseState.in_review)
    assert {r.id for r in queue} == {r.id for r in demo}
    # bob is a member of the project, so he sees them too; other researchers do not.
    assert {r.id for r in service.list_requests(session, actor(session, "bob"))} == {r.id for r in demo}
    assert service.list_requests(session, actor(session, "dan")) == []


def test_seeding_twice_adds_nothing(demo: list[ReleaseRequest], session: Session) -> None:
    again = seed_releases(session)
    assert [r.id for r in again] == [r.id for r in demo]
    assert len(session.scalars(select(ReleaseRequest)).all()) == 2


def test_seeding_without_the_demo_world_says_what_to_do(session: Session) -> None:
    with pytest.raises(NotFound, match="tre up --demo"):
        seed_releases(session)
