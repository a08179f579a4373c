"""Policy decisions per second: our Cedar engine beside straightforward peers of the same rules.

In memory (always): read_dataset decisions over a generated population, timed three ways for ours -
the Cedar evaluation alone (entities already built), entity building alone, and the whole decision
with its reasons - beside a pure-Python if/else implementation of the same rules (the peer).

With ``--db``: the same population written to a SQLite database; ours is ``engine.decide(...)`` (load
facts with SQLAlchemy, evaluate, explain; no audit) and the peer is one SQL query per decision that
answers allow/deny with the same rules.

    .venv/bin/python bench/bench_policy.py [--users 50000 --projects 10000 --agreements 1000] [--db]
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from tre_platform.policy import PolicyEngine
from tre_platform.policy.entities import build
from tre_platform.policy.facts import (
    AccreditationFacts,
    AgreementFacts,
    DatasetFacts,
    OrgFacts,
    PolicyRequest,
    ProjectFacts,
    UserFacts,
    candidate_agreements,
)
from tre_platform.settings import REPO_ROOT

TODAY = dt.date(2025, 6, 1)
PURPOSES = ["policy_evidence", "service_delivery", "extend_understanding"]
GATEWAYS = ["dea", "srsa", "consent"]


class Population:
    """Organisations, users, datasets, projects and agreements as facts, with some of everything failing."""

    def __init__(self, users: int, projects: int, agreements: int, seed: int = 7) -> None:
        rng = random.Random(seed)
        self.owners = [OrgFacts(f"owner{i}", f"owner{i}", f"Owner {i}") for i in range(20)]
        self.research = [
            OrgFacts(f"org{i}", f"org{i}", f"Org {i}", TODAY + dt.timedelta(days=rng.choice([-30, 400])))
            for i in range(200)
        ]
        self.datasets = [
            DatasetFacts(f"ds{i}", f"ds{i}", self.owners[i % 20], rng.randint(1, 4), ("a", "b", "c"))
            for i in range(2000)
        ]
        self.users: list[UserFacts] = []
        for i in range(users):
            expires = TODAY + dt.timedelta(days=rng.choice([-10, 300, 600]))
            acc = AccreditationFacts(
                f"acc{i}", f"DEA-{i}", "DEA", f"u{i}", dt.date(2024, 1, 1), expires, rng.random() < 0.05
            )
            self.users.append(
                UserFacts(
                    f"u{i}",
                    f"user{i}",
                    rng.choice(self.research),
                    frozenset({"researcher"}),
                    True,
                    (),
                    (acc,),
                )
            )
        self.projects: list[ProjectFacts] = []
        for i in range(projects):
            members = frozenset(f"u{rng.randrange(users)}" for _ in range(4))
            listed = rng.sample(self.datasets, 3)
            self.projects.append(
                ProjectFacts(
                    f"p{i}", f"P{i}", rng.choice(["approved", "active", "submitted"]), rng.choice(PURPOSES),
                    rng.choice(GATEWAYS), rng.choice(self.research), next(iter(members)), next(iter(members)),
                    members, {d.id: ("a", "b") for d in listed}, rng.choice([2, 3, 4]),
                    dt.date(2025, 1, 1), TODAY + dt.timedelta(days=rng.choice([-5, 200])),
                )
            )  # fmt: skip
        self.agreements: list[AgreementFacts] = []
        for i in range(agreements):
            owner = self.owners[i % 20]
            owned = [d for d in self.datasets if d.owner.id == owner.id]
            chosen = rng.sample(owned, 3)
            self.agreements.append(
                AgreementFacts(
                    f"a{i}", f"DSA-{i}", owner, rng.random() < 0.02, frozenset(d.id for d in chosen),
                    {owner.id: owner.name}, rng.random() < 0.3,
                    frozenset(o.id for o in rng.sample(self.research, 5)), frozenset(rng.sample(PURPOSES, 2)),
                    frozenset(rng.sample(GATEWAYS, 2)), rng.choice([3, 4]), dt.date(2024, 1, 1),
                    TODAY + dt.timedelta(days=rng.choice([-1, 500])), rng.random() < 0.05,
                )
            )  # fmt: skip
        self.by_owner: dict[str, list[AgreementFacts]] = {}
        for agreement in self.agreements:
            self.by_owner.setdefault(agreement.owner.id, []).append(agreement)
        self.rng = rng

    def requests(self, n: int) -> list[PolicyRequest]:
        """Read requests by members (mostly) of projects for listed datasets (mostly)."""
        out = []
        for _ in range(n):
            project = self.rng.choice(self.projects)
            member = sorted(project.member_ids)[0]
            user = self.users[int(member[1:])] if self.rng.random() < 0.9 else self.rng.choice(self.users)
            listed = sorted(project.datasets)
            dataset = (
                self.datasets[int(self.rng.choice(listed)[2:])]
                if self.rng.random() < 0.9
                else self.rng.choice(self.datasets)
            )
            out.append(
                PolicyRequest(
                    "read_dataset", user, TODAY, project, dataset, ("a",), None, None,
                    candidate_agreements(dataset, self.by_owner.get(dataset.owner.id, [])),
                )
            )  # fmt: skip
        return out


def naive_decision(r: PolicyRequest) -> bool:
    """The peer: the same read_dataset rules as if/else over the same facts (no reasons)."""
    user, project, dataset, today = r.user, r.project, r.dataset, r.today
    assert project is not None and dataset is not None
    if not user.active or "researcher" not in user.roles:
        return False
    if not any(
        a.holder_id == user.id and not a.revoked and a.granted_on <= today <= a.expires_on
        for a in user.accreditations
    ):
        return False
    if user.id not in project.member_ids or project.state not in ("approved", "active"):
        return False
    if not project.start_date <= today <= project.end_date:
        return False
    approved = project.datasets.get(dataset.id)
    if approved is None or not set(r.columns or approved) <= set(approved) or dataset.tier > project.max_tier:
        return False
    org = project.organisation
    for a in r.candidate_agreements:
        covers_org = org.id in a.recipient_ids or (
            a.any_accredited and org.accredited_until is not None and today <= org.accredited_until
        )
        if (
            a.owner.id == dataset.owner.id
            and not a.revoked
            and a.valid_from <= today <= a.valid_to
            and (a.all_datasets or dataset.id in a.dataset_ids)
            and covers_org
            and project.purpose in a.purposes
            and project.legal_gateway in a.legal_gateways
            and dataset.tier <= a.max_tier
        ):
            return True
    return False


def timed(fn: Callable[[Any], Any], items: Sequence[Any]) -> tuple[list[Any], list[float]]:
    results, latencies = [], []
    for item in items:
        start = time.perf_counter_ns()
        results.append(fn(item))
        latencies.append((time.perf_counter_ns() - start) / 1e6)
    return results, latencies


def row(table: Table, name: str, latencies: list[float], reference: float | None) -> float:
    rate = len(latencies) / (sum(latencies) / 1e3)
    q = statistics.quantiles(latencies, n=100)
    ratio = f"{reference / rate:.1f}x slower" if reference else "1.0x (peer)"
    table.add_row(name, f"{rate:,.0f}", f"{q[49]:.3f}", f"{q[98]:.3f}", ratio)
    return rate


def bench_memory(console: Console, engine: PolicyEngine, population: Population, n: int) -> None:
    requests = population.requests(n)
    naive, naive_lat = timed(naive_decision, requests)
    built, build_lat = timed(build, requests)
    raw, eval_lat = timed(engine.run, built)
    decisions, full_lat = timed(engine.evaluate, requests)
    mismatches = sum(d.allowed != p for d, p in zip(decisions, naive, strict=True))
    candidates = statistics.mean(len(b.candidates) for b in built)
    table = Table(
        title=f"read_dataset, in memory: {n:,} decisions ({candidates:.1f} candidate agreements each)"
    )
    for column in ("implementation", "decisions/s", "p50 ms", "p99 ms", "vs peer"):
        table.add_column(column, justify="right" if column != "implementation" else "left")
    peer = row(table, "peer: pure-Python if/else", naive_lat, None)
    row(table, "ours: Cedar evaluation only", eval_lat, peer)
    row(table, "ours: entity building only", build_lat, peer)
    row(table, "ours: whole decision + reasons", full_lat, peer)
    console.print(table)
    allowed = sum(d.allowed for d in decisions)
    console.print(f"allowed {allowed:,} / {n:,}; decisions that differ from the peer: {mismatches}")
    del raw


def bench_db(console: Console, engine: PolicyEngine, population: Population, n: int) -> None:
    from sqlalchemy import create_engine, insert, text
    from sqlalchemy.orm import Session

    from tre_platform.api.agreements.models import AgreementDataset, AgreementRecipient, DataSharingAgreement
    from tre_platform.api.datasets.models import Dataset
    from tre_platform.api.orgs.models import Organisation
    from tre_platform.api.projects.models import Project, ProjectDataset, ProjectMember
    from tre_platform.api.users.models import Accreditation, User, UserRole
    from tre_platform.db.base import Base

    directory = Path(tempfile.mkdtemp(prefix="tre-bench-policy-"))
    db = create_engine(f"sqlite:///{directory / 'bench.db'}")
    Base.metadata.create_all(db)
    start = time.perf_counter()
    p = population
    with db.begin() as conn:
        orgs = [*p.owners, *p.research]
        conn.execute(
            insert(Organisation),
            [
                {
                    "id": o.id,
                    "slug": o.slug,
                    "name": o.name,
                    "kind": "both",
                    "accredited_until": o.accredited_until,
                }
                for o in orgs
            ],
        )
        conn.execute(
            insert(User),
            [
                {
                    "id": u.id,
                    "username": u.username,
                    "full_name": u.username,
                    "email": f"{u.username}@x.org",
                    "organisation_id": u.organisation.id,
                }
                for u in p.users
            ],
        )
        conn.execute(
            insert(UserRole), [{"id": f"r{u.id}", "user_id": u.id, "role": "researcher"} for u in p.users]
        )
        conn.execute(
            insert(Accreditation),
            [
                {
                    "id": a.id,
                    "user_id": u.id,
                    "scheme": a.scheme,
                    "reference": a.reference,
                    "granted_on": a.granted_on,
                    "expires_on": a.expires_on,
                    "revoked_at": dt.datetime(2025, 1, 1, tzinfo=dt.UTC) if a.revoked else None,
                }
                for u in p.users
                for a in u.accreditations
            ],
        )
        conn.execute(
            insert(Dataset),
            [
                {
                    "id": d.id,
                    "name": d.name,
                    "title": d.name,
                    "owner_org_id": d.owner.id,
                    "tier": d.tier,
                    "schema": [{"name": c} for c in d.columns],
                }
                for d in p.datasets
            ],
        )
        conn.execute(
            insert(Project),
            [
                {
                    "id": pr.id,
                    "code": pr.code,
                    "title": pr.code,
                    "lay_summary": "",
                    "purpose": pr.purpose,
                    "legal_gateway": pr.legal_gateway,
                    "organisation_id": pr.organisation.id,
                    "lead_id": pr.lead_id,
                    "created_by_id": pr.created_by_id,
                    "state": pr.state,
                    "max_tier": pr.max_tier,
                    "start_date": pr.start_date,
                    "end_date": pr.end_date,
                }
                for pr in p.projects
            ],
        )
        conn.execute(
            insert(ProjectMember),
            [
                {"id": f"{pr.id}-{m}", "project_id": pr.id, "user_id": m}
                for pr in p.projects
                for m in pr.member_ids
                if m != pr.lead_id
            ],
        )
        conn.execute(
            insert(ProjectDataset),
            [
                {"id": f"{pr.id}-{d}", "project_id": pr.id, "dataset_id": d, "columns": list(cols)}
                for pr in p.projects
                for d, cols in pr.datasets.items()
            ],
        )
        conn.execute(
            insert(DataSharingAgreement),
            [
                {
                    "id": a.id,
                    "reference": a.reference,
                    "title": a.reference,
                    "owner_org_id": a.owner.id,
                    "all_datasets": a.all_datasets,
                    "any_accredited": a.any_accredited,
                    "purposes": sorted(a.purposes),
                    "legal_gateways": sorted(a.legal_gateways),
                    "max_tier": a.max_tier,
                    "valid_from": a.valid_from,
                    "valid_to": a.valid_to,
                    "revoked_at": dt.datetime(2025, 1, 1, tzinfo=dt.UTC) if a.revoked else None,
                }
                for a in p.agreements
            ],
        )
        conn.execute(
            insert(AgreementDataset),
            [
                {"id": f"{a.id}-{d}", "agreement_id": a.id, "dataset_id": d}
                for a in p.agreements
                for d in a.dataset_ids
            ],
        )
        conn.execute(insert(AgreementRecipient), [
            {"id": f"{a.id}-{o}", "agreement_id": a.id, "organisation_id": o}
            for a in p.agreements for o in a.recipient_ids
        ])  # fmt: skip
    console.print(
        f"database: {len(p.users):,} users, {len(p.projects):,} projects, {len(p.agreements):,} agreements "
        f"written in {time.perf_counter() - start:.1f}s"
    )
    sql = text(
        """
        SELECT
          u.is_active AND EXISTS (SELECT 1 FROM user_roles r WHERE r.user_id = u.id AND r.role = 'researcher')
          AND EXISTS (SELECT 1 FROM accreditations a WHERE a.user_id = u.id AND a.revoked_at IS NULL
                      AND a.granted_on <= :today AND a.expires_on >= :today)
          AND (p.lead_id = u.id OR EXISTS (SELECT 1 FROM project_members m
                                           WHERE m.project_id = p.id AND m.user_id = u.id))
          AND p.state IN ('approved', 'active') AND p.start_date <= :today AND p.end_date >= :today
          AND pd.id IS NOT NULL AND d.tier <= p.max_tier
          AND EXISTS (
            SELECT 1 FROM agreements g JOIN organisations po ON po.id = p.organisation_id
            WHERE g.owner_org_id = d.owner_org_id AND g.revoked_at IS NULL
              AND g.valid_from <= :today AND g.valid_to >= :today AND d.tier <= g.max_tier
              AND (g.all_datasets OR EXISTS (SELECT 1 FROM agreement_datasets ad
                                             WHERE ad.agreement_id = g.id AND ad.dataset_id = d.id))
              AND (EXISTS (SELECT 1 FROM agreement_recipients ar
                           WHERE ar.agreement_id = g.id AND ar.organisation_id = p.organisation_id)
                   OR (g.any_accredited AND po.accredited_until >= :today))
              AND EXISTS (SELECT 1 FROM json_each(g.purposes) WHERE value = p.purpose)
              AND EXISTS (SELECT 1 FROM json_each(g.legal_gateways) WHERE value = p.legal_gateway))
        FROM users u, projects p, datasets d
        LEFT JOIN project_datasets pd ON pd.project_id = p.id AND pd.dataset_id = d.id
        WHERE u.id = :user AND p.id = :project AND d.id = :dataset
        """
    )
    requests = population.requests(n)
    with Session(db) as session:
        users = {u.id: session.get(User, u.id) for u in {r.user for r in requests}}

        def sql_peer(r: PolicyRequest) -> bool:
            assert r.project is not None and r.dataset is not None
            params = {"user": r.user.id, "project": r.project.id, "dataset": r.dataset.id, "today": TODAY}
            return bool(session.execute(sql, params).scalar_one())

        def ours(r: PolicyRequest) -> bool:
            assert r.project is not None and r.dataset is not None
            return engine.decide(
                session,
                users[r.user.id],
                "read_dataset",
                project=r.project.id,
                dataset=r.dataset.id,
                audit=False,
            ).allowed

        from tre_platform.clock import clock

        with clock.frozen(dt.datetime(2025, 6, 1, 12, tzinfo=dt.UTC)):
            peer, peer_lat = timed(sql_peer, requests)
            session.expunge_all()
            users = {u.id: session.get(User, u.id) for u in {r.user for r in requests}}
            mine, mine_lat = timed(ours, requests)
    table = Table(title=f"read_dataset from the database: {n:,} decisions")
    for column in ("implementation", "decisions/s", "p50 ms", "p99 ms", "vs peer"):
        table.add_column(column, justify="right" if column != "implementation" else "left")
    rate = row(table, "peer: one SQL query", peer_lat, None)
    row(table, "ours: load facts + Cedar + reasons", mine_lat, rate)
    console.print(table)
    console.print(
        f"decisions that differ from the SQL peer: {sum(a != b for a, b in zip(mine, peer, strict=True))}"
    )
    db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--projects", type=int, default=10_000)
    parser.add_argument("--agreements", type=int, default=1_000)
    parser.add_argument("--decisions", type=int, default=300)
    parser.add_argument("--db", action="store_true", help="also benchmark against a SQLite database")
    parser.add_argument("--db-decisions", type=int, default=1_000)
    args = parser.parse_args()
    console = Console()
    engine = PolicyEngine.load(REPO_ROOT / "policies")
    start = time.perf_counter()
    population = Population(args.users, args.projects, args.agreements)
    console.print(
        f"population generated in {time.perf_counter() - start:.1f}s; bundle {engine.bundle_hash[:16]}…"
    )
    bench_memory(console, engine, population, args.decisions)
    if args.db:
        bench_db(console, engine, population, args.db_decisions)


if __name__ == "__main__":
    main()
