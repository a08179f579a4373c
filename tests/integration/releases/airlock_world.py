"""The airlock's world (a project with two datasets under agreements, its researchers, three output checkers)
and the person-level rows its tests release; the fixtures that build it are in this folder's conftest.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from factories import (
    make_accreditation,
    make_agreement,
    make_dataset,
    make_org,
    make_project,
    make_token,
    make_user,
)
from sqlalchemy.orm import Session

from tre_platform.actor import Actor
from tre_platform.api.projects import service as projects
from tre_platform.api.projects.schemas import DatasetRequest, MemberAdd
from tre_platform.api.users.models import User
from tre_platform.clock import clock

SCHEMA: list[dict[str, Any]] = [
    {"name": "person_id", "type": "string", "identifier": True, "index": "demographic"},
    {"name": "region", "type": "string"},
    {"name": "sex", "type": "string"},
    {"name": "age", "type": "integer"},
    {"name": "cost", "type": "float"},
]


@dataclass
class Airlock:
    """Ids of the airlock world's objects and the users, for service calls and tokens for HTTP."""

    researcher: User
    member: User
    outsider: User
    admin: User
    checkers: list[User]
    project_id: str
    hes_id: str
    lfs_id: str
    tokens: dict[str, str]

    def actor(self, user: User) -> Actor:
        return Actor.of(user)

    def headers(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}


def build_airlock(session: Session) -> Airlock:
    health = make_org(session, slug="health", name="Health Data Agency", kind="data_owner")
    labour = make_org(session, slug="labour", name="Labour Market Office", kind="data_owner")
    uni = make_org(
        session,
        slug="uni",
        name="University",
        kind="research_body",
        accredited_until=clock.today() + dt.timedelta(days=400),
    )
    researcher = make_user(session, username="rita", roles=["researcher"], organisation_id=uni.id)
    member = make_user(session, username="mo", roles=["researcher", "output_checker"], organisation_id=uni.id)
    outsider = make_user(session, username="otto", roles=["researcher"], organisation_id=uni.id)
    admin = make_user(session, username="ada", roles=["admin"], organisation_id=uni.id)
    checkers = [
        make_user(session, username=f"checker{n}", roles=["output_checker"], organisation_id=uni.id)
        for n in (1, 2, 3)
    ]
    for person in (researcher, member, outsider):
        make_accreditation(session, person)
    hes = make_dataset(session, owner=health, name="hes", schema=SCHEMA)
    lfs = make_dataset(session, owner=labour, name="lfs", schema=SCHEMA)
    # Budgets per project: hes 1.0 (delta 1e-6), lfs 3.0; disclosure profiles default and health-tier3.
    make_agreement(session, owner=health, dp_epsilon=1.0, dp_delta=1e-6, dc_profile="default")
    make_agreement(session, owner=labour, dp_epsilon=3.0, dp_delta=1e-5, dc_profile="default")
    project = make_project(session, lead=researcher, dataset=hes, title="Admissions study")
    lead = Actor.of(researcher)
    projects.request_dataset(
        session, lead, project.id, DatasetRequest(dataset_id=lfs.id, columns=lfs.research_columns)
    )
    projects.add_member(session, lead, project.id, MemberAdd(user_id=member.id))
    projects.transition(session, lead, project.id, "submit", "")
    projects.transition(session, Actor.system("tests"), project.id, "approve", "approved")
    people = {"researcher": researcher, "member": member, "outsider": outsider, "admin": admin}
    people.update({f"checker{n}": c for n, c in enumerate(checkers, start=1)})
    tokens = {name: make_token(session, user) for name, user in people.items()}
    session.commit()
    return Airlock(researcher, member, outsider, admin, checkers, project.id, hes.id, lfs.id, tokens)


def microdata(n: int = 240, seed: int = 7) -> pd.DataFrame:
    """Pseudonymous person-level rows: every region x sex cell well above the threshold."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "region": rng.choice(["north", "south", "east"], n),
            "sex": rng.choice(["f", "m"], n),
            "age": rng.integers(18, 90, n),
            "cost": rng.gamma(2.0, 500.0, n).round(2),
        }
    )


def with_small_cell(frame: pd.DataFrame) -> pd.DataFrame:
    """Add a region with three people: its cells are below the threshold of 10."""
    extra = pd.DataFrame(
        {"region": ["west"] * 3, "sex": ["f", "f", "m"], "age": [30, 40, 50], "cost": [1.0, 2.0, 3.0]}
    )
    return pd.concat([frame, extra], ignore_index=True)
