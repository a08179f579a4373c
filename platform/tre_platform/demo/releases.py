"""Demo release requests, so the output checkers' queue shows real work (what ``tre up --demo`` stages).

In the demo world (:mod:`tre_platform.demo.seed`) alice leads the active project "Health and the labour
market after a hospital admission". :func:`seed_releases` stages two requests from her, each a count table
computed from synthetic hospital episodes (:mod:`tre_lib.synth`, shaped to the registered schema and cut
down to the columns her project was approved for, as in her project view), submitted through the airlock
service, so the server has re-run its checks on them:

* "Length of stay by admission method": protected with the project's rules, every cell far above the
  threshold; checker1 has approved it and it waits for a second, independent checker.
* "Diagnosis by sex, long stays": raw counts of a small subpopulation, published without protection; the
  server's re-check fails it (cells under the threshold) and it waits for a first review, which should
  return it to alice with what to change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from tre_lib.disclosure import protect_table
from tre_lib.outputs.specs import Filter, TableSpec, apply_filters, table_to_csv, write_data
from tre_lib.synth import generate_world
from tre_platform.actor import Actor
from tre_platform.api.projects.models import Project
from tre_platform.api.releases import service
from tre_platform.api.releases.models import ReleaseRequest
from tre_platform.api.releases.schemas import ReleaseCreate
from tre_platform.api.users.models import User
from tre_platform.demo.deliveries import BUILDERS
from tre_platform.errors import NotFound

DEMO_PROJECT = "Health and the labour market after a hospital admission"
DATASET = "hospital_episodes"
#: The hospital-episode columns alice's project was approved for (seed.py), i.e. her project view's.
VIEW_COLUMNS = ["sex", "admission_date", "diagnosis_chapter", "length_of_stay", "admission_method"]
#: A small synthetic population: enough for a safe table, small enough to draw in about a second.
PEOPLE, EPISODES, SEED = 1_500, 600, 2026


@dataclass(frozen=True)
class DemoTable:
    """One output to stage: the table's declared computation and whether the researcher protected it."""

    title: str
    justification: str
    name: str
    description: str
    spec: TableSpec
    protect: bool


SAFE = DemoTable(
    title="Length of stay by admission method",
    justification="Descriptive table for the paper: how long elective and emergency admissions last.",
    name="stay-by-method.csv",
    description="Hospital episodes by length-of-stay band (nights) and admission method, with totals.",
    spec=TableSpec(index=("stay_band",), columns=("admission_method",), dataset=DATASET),
    protect=True,
)
DISCLOSIVE = DemoTable(
    title="Diagnosis by sex, long stays",
    justification="Which conditions lead to stays of a week or more, by sex.",
    name="long-stays-by-diagnosis.csv",
    description="Episodes of 7 or more nights by ICD-10 chapter and sex (raw counts).",
    spec=TableSpec(
        index=("diagnosis_chapter",),
        columns=("sex",),
        dataset=DATASET,
        filters=(Filter("length_of_stay", ">=", 7),),
    ),
    protect=False,
)


def episodes() -> pd.DataFrame:
    """Synthetic hospital episodes as alice's project view holds them, with a derived length-of-stay band."""
    world = generate_world(PEOPLE, seed=SEED)
    records, _truth = BUILDERS[DATASET](world, EPISODES, SEED)
    frame = records[VIEW_COLUMNS].copy()
    frame["stay_band"] = pd.cut(
        frame["length_of_stay"], [-1, 0, 2, 6, 10_000], labels=["0", "1-2", "3-6", "7+"]
    ).astype(str)
    return frame


def _table(frame: pd.DataFrame, table: DemoTable, rules: dict[str, Any]) -> tuple[bytes, str | None]:
    """(CSV, the workspace's own status) of ``table``: protected with the project's rules, or raw counts."""
    spec = table.spec
    if table.protect:
        protected = protect_table(frame, list(spec.index), list(spec.columns), rules=rules)
        return table_to_csv(protected.table), protected.status
    rows = apply_filters(frame, spec.filters)
    raw = pd.crosstab(rows[spec.index[0]], rows[spec.columns[0]], margins=True, margins_name="All")
    return table_to_csv(raw), None


def _stage(
    session: Session, alice: Actor, project: Project, frame: pd.DataFrame, table: DemoTable
) -> ReleaseRequest:
    rules = service.disclosure_rules(session, alice, project.id)
    request = service.create_request(
        session,
        alice,
        ReleaseCreate(project_id=project.id, title=table.title, justification=table.justification),
    )
    content, local_status = _table(frame, table, rules)
    service.add_file(
        session,
        alice,
        request.id,
        name=table.name,
        kind="table",
        content=content,
        spec=table.spec.to_dict(),
        data=write_data(frame[table.spec.needed_columns]),
        data_name=table.name.replace(".csv", "-data.parquet"),
        client_check={"status": local_status} if local_status else None,
        description=table.description,
    )
    return service.submit(session, alice, request.id)


def _user(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFound(
            f"the demo user {username!r} does not exist; seed the demo world first (tre up --demo)"
        )
    return user


def seed_releases(session: Session) -> list[ReleaseRequest]:
    """Stage the demo's two release requests in ``session`` (the caller commits).

    Idempotent: if alice's project already has release requests, nothing is added and they are returned.

    Returns:
        The safe request (approved by checker1, waiting for a second checker) and the disclosive one
        (waiting for a first review), in that order.

    Raises:
        NotFound: the demo world (:func:`tre_platform.demo.seed.seed`) has not been seeded.
    """
    project = session.scalar(select(Project).where(Project.title == DEMO_PROJECT))
    if project is None:
        raise NotFound(f"no project {DEMO_PROJECT!r}; seed the demo world first (tre up --demo)")
    existing = session.scalars(
        select(ReleaseRequest)
        .where(ReleaseRequest.project_id == project.id)
        .order_by(ReleaseRequest.created_at, ReleaseRequest.id)
    ).all()
    if existing:
        return list(existing)
    alice = Actor.of(_user(session, "alice"))
    checker1 = Actor.of(_user(session, "checker1"))
    frame = episodes()
    safe = _stage(session, alice, project, frame, SAFE)
    service.review(
        session, checker1, safe.id, "approve", "Counts well above the threshold; margins consistent."
    )
    disclosive = _stage(session, alice, project, frame, DISCLOSIVE)
    return [safe, disclosive]
