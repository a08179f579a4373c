"""Policy decisions per second: our Cedar engine beside a straightforward SQL query of the same rules.

The default run is the set-up of issue 3: 10,000 projects, 1,000 agreements and 50,000 users written
to a SQLite database with bulk inserts, then ``read_dataset`` decisions for members (mostly) of
projects on listed datasets (mostly). The peer is one SQL query per decision that answers allow/deny
with the same rules. Ours is timed step by step on the same requests, in the same run:

- loading the facts of a request from the database (targeted column queries, no ORM objects);
- entity building: facts -> Cedar entities as Python dicts, indexed for the compiled policies; and
  Cedar's parse of them (validated against the schema), which only allows and verify mode need, on
  first touch (the whole store parsed) and with the dataset's part (dataset, owner, agreements) cached;
- the evaluation itself: the compiled policies on every candidate, and Cedar's calls when they allow
  (Cedar decides every allow; ADR 0011), on 1 and on 2 processes, then with the reasons; beside it
  Cedar alone on every candidate (the engine in verify mode, and before ADR 0011);
- whole decisions in memory, COLD (decision cache off: every decision is built and evaluated by
  Cedar), with no cache at all and with the dataset entities cached, on 1 and 2 processes, and WARM
  (the same requests again, every one a decision-cache hit);
- ``engine.decide`` end to end (load + Cedar + reasons, no audit), cold.

Every decision of ours is checked against the SQL peer's. Rates are wall-clock; the "CPU µs" column
is process CPU time per decision, which shows what the rate would be on an idle core when the
machine is shared (the 2-process rows add the workers' CPU time). A summary says, row by row,
whether the target of issue 3 (10,000 decisions/s, p99 < 1 ms) is met.

    .venv/bin/python bench/policy_bench.py [--users 50000 --projects 10000 --agreements 1000]
        [--decisions 2000] [--db-decisions 500] [--batch 100] [--allows 1000] [--no-db]

``--no-db`` runs the in-memory comparison only (facts generated in Python, peer in pure Python).
Both end with the same steps on allowed requests only (``--allows``): each of those is decided by
Cedar, so they show the engine's slowest cold case.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import multiprocessing
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cedarpy
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine, create_engine, insert, select, text

from tre_platform.policy import PolicyEngine
from tre_platform.policy.compiled import Index
from tre_platform.policy.compiled import index as compiled_index
from tre_platform.policy.entities import CedarInput, build
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
        # A fifth of the agreements were granted for a project's use of one of its datasets, as in a
        # running TRE (agreements exist because projects need them); the rest are random.
        granted = agreements // 5
        for i in range(agreements - granted):
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
        grants = random.Random(seed + 1)
        self.granted: list[tuple[ProjectFacts, DatasetFacts]] = []
        for i, project in enumerate(grants.sample(self.projects, granted)):
            dataset = self.datasets[int(grants.choice(sorted(project.datasets))[2:])]
            self.granted.append((project, dataset))
            self.agreements.append(
                AgreementFacts(
                    f"g{i}", f"DSA-G{i}", dataset.owner, False, frozenset({dataset.id}),
                    {dataset.owner.id: dataset.owner.name}, False, frozenset({project.organisation.id}),
                    frozenset({project.purpose}), frozenset({project.legal_gateway}), 4,
                    dt.date(2024, 1, 1), TODAY + dt.timedelta(days=500),
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

    def allowed_requests(self, n: int) -> list[PolicyRequest]:
        """Read requests that are allowed: members of projects reading a dataset granted to them."""
        out: list[PolicyRequest] = []
        for _ in range(n * 100):
            if len(out) == n:
                break
            project, dataset = self.rng.choice(self.granted)
            user = self.users[int(self.rng.choice(sorted(project.member_ids))[1:])]
            request = PolicyRequest(
                "read_dataset", user, TODAY, project, dataset, ("a",), None, None,
                candidate_agreements(dataset, self.by_owner.get(dataset.owner.id, [])),
            )  # fmt: skip
            if naive_decision(request):
                out.append(request)
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


class Timing:
    """Each call's wall latency in milliseconds, and the CPU time of them all."""

    def __init__(self, latencies: list[float], cpu_s: float) -> None:
        self.latencies = latencies
        self.cpu_s = cpu_s


def timed(fn: Callable[[Any], Any], items: Sequence[Any], *, freeze: bool = True) -> tuple[list[Any], Timing]:
    """Call ``fn`` on each item; the results and the timing.

    What exists before the run (the population, the prepared requests and stores, earlier results) is
    frozen out of the garbage collector first: a server has none of the benchmark's scaffolding, and
    collections that walk it would charge its size to whatever is being timed.
    """
    if freeze:
        gc.collect()
        gc.freeze()
    results, latencies = [], []
    cpu = time.process_time()
    for item in items:
        start = time.perf_counter_ns()
        results.append(fn(item))
        latencies.append((time.perf_counter_ns() - start) / 1e6)
    return results, Timing(latencies, time.process_time() - cpu)


#: The target of issue 3, for the Cedar evaluation itself.
TARGET_RATE = 10_000
TARGET_P99_MS = 1.0


class Row:
    """What one row of a table measured: decisions/s, p99 per decision (ms), CPU µs per decision."""

    def __init__(self, name: str, rate: float, p99: float, cpu_us: float) -> None:
        self.name = name
        self.rate = rate
        self.p99 = p99
        self.cpu_us = cpu_us

    def verdict(self) -> str:
        met = self.rate >= TARGET_RATE and self.p99 < TARGET_P99_MS
        verdict = "MET    " if met else "NOT MET"
        return (
            f"{verdict} {self.name.strip()}: {self.rate:,.0f}/s, p99 {self.p99:.3f} ms "
            f"({self.cpu_us:,.0f} µs CPU per decision: {1e6 / self.cpu_us:,.0f}/s per idle core)"
        )


def new_table(title: str) -> Table:
    table = Table(title=title)
    for column in ("implementation", "decisions/s", "p50 ms", "p99 ms", "CPU µs", "vs peer"):
        table.add_column(column, justify="left" if column == "implementation" else "right")
    return table


def row(
    table: Table,
    name: str,
    timing: Timing,
    peer: float | None,
    per_call: int = 1,
    wall_s: float | None = None,
) -> Row:
    """Add a row; latencies are per call of ``per_call`` decisions (p50/p99 are per decision).

    ``wall_s``: the elapsed time when calls ran in parallel (else the sum of the latencies).
    """
    latencies = timing.latencies
    decisions = len(latencies) * per_call
    rate = decisions / (wall_s if wall_s is not None else sum(latencies) / 1e3)
    q = statistics.quantiles([lat / per_call for lat in latencies], n=100)
    if peer is None:
        ratio = "1.0x (peer)"
    else:
        ratio = f"{rate / peer:.2f}x" if rate >= peer else f"{peer / rate:.1f}x slower"
    per = "" if per_call == 1 else " (amortised)"
    cpu_us = timing.cpu_s / decisions * 1e6
    table.add_row(name, f"{rate:,.0f}", f"{q[49]:.3f}{per}", f"{q[98]:.3f}{per}", f"{cpu_us:,.0f}", ratio)
    return Row(name, rate, q[98], cpu_us)


def batches(items: Sequence[Any], size: int) -> list[list[Any]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def cedar_only(engine: PolicyEngine, cedar_input: CedarInput, entities: cedarpy.Entities) -> bool:
    """Exactly the Cedar calls ``evaluate_built`` makes for a decision, without the reasons."""
    requests = [c.cedar_request for c in cedar_input.candidates]
    results = engine._authorize(requests[:1], entities)
    if len(requests) > 1 and not any(r.allowed for r in results):
        results += engine._authorize(requests[1:], entities)
    return any(r.allowed and not r.diagnostics.errors for r in results)


def evaluation_only(
    engine: PolicyEngine, cedar_input: CedarInput, store: Index, entities: cedarpy.Entities
) -> bool:
    """The engine's evaluation without the reasons (``PolicyEngine.evaluate_input``): the compiled
    policies on every candidate, and - when they allow - Cedar's call on the candidate they allow,
    which decides (Cedar on every candidate when it does not confirm it, or on an error)."""
    assert engine.compiled is not None and cedar_input.shape is not None
    requests = [c.cedar_request for c in cedar_input.candidates]
    results = engine.compiled.authorize_product(requests, cedar_input.shape, store)
    if any(r.errors for r in results):
        return cedar_only(engine, cedar_input, entities)
    chosen = next((i for i, r in enumerate(results) if r.allowed), None)
    if chosen is None:
        return False
    confirmed = engine._authorize([requests[chosen]], entities)
    return any(r.allowed and not r.diagnostics.errors for r in confirmed) or cedar_only(
        engine, cedar_input, entities
    )


# One worker's share: its answers, latencies (ms), CPU seconds, and when its timed run started and ended.
Share = tuple[list[bool], list[float], float, float, float]
_WORKER: dict[str, Any] = {}


def _start_worker(policies_dir: Path, barrier: Any) -> None:
    """Each worker process loads and validates its own engine once, as a server worker does."""
    _WORKER["engine"] = PolicyEngine.load(policies_dir, cache_size=0, verify=False)
    _WORKER["barrier"] = barrier


def _timed_share(fn: Callable[[Any], bool], items: Sequence[Any]) -> Share:
    # Every worker starts timing together, once all have prepared their share (and frozen it).
    gc.collect()
    gc.freeze()
    _WORKER["barrier"].wait()
    start = time.perf_counter()
    answers, timing = timed(fn, items, freeze=False)
    return answers, timing.latencies, timing.cpu_s, start, time.perf_counter()


def _cold_worker(requests: list[PolicyRequest]) -> Share:
    """One process of the parallel run: its share decided cold (no decision cache), timed.

    Its requests are decided once untimed first, so its entity cache holds their datasets' stores, as
    a running server's does: the timed run is Cedar and reasons on every request.
    """
    engine: PolicyEngine = _WORKER["engine"]
    for request in requests:
        engine.evaluate(request)
    return _timed_share(lambda r: engine.evaluate(r).allowed, requests)


def _cedar_worker(requests: list[PolicyRequest]) -> Share:
    """One process of the parallel run of Cedar alone on every candidate (entities built untimed)."""
    engine: PolicyEngine = _WORKER["engine"]
    prepared = [(b, engine.entity_store(b)) for b in map(build, requests)]
    return _timed_share(lambda pair: cedar_only(engine, *pair), prepared)


def _evaluation_worker(requests: list[PolicyRequest]) -> Share:
    """One process of the parallel run of the evaluation itself (entities built untimed)."""
    engine: PolicyEngine = _WORKER["engine"]
    prepared = [(b, compiled_index(b.entities), engine.entity_store(b)) for b in map(build, requests)]
    return _timed_share(lambda t: evaluation_only(engine, *t), prepared)


def parallel(
    worker: Callable[[list[PolicyRequest]], Share], requests: list[PolicyRequest], processes: int
) -> tuple[list[bool], Timing, float]:
    """``worker`` on ``processes`` processes at once: answers, per-decision timing, wall seconds.

    The wall time runs from the moment every worker has prepared its share (a barrier) to the end of
    the last one; sending requests and answers between processes is not in it.
    """
    shares = [requests[i::processes] for i in range(processes)]
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(processes)
    with ctx.Pool(processes, initializer=_start_worker, initargs=(REPO_ROOT / "policies", barrier)) as pool:
        pool.map(_cold_worker, [requests[:1]] * processes, chunksize=1)  # workers started, memo filled
        parts = pool.map(worker, shares, chunksize=1)
    answers: list[bool] = [False] * len(requests)
    for i, part in enumerate(parts):
        answers[i::processes] = part[0]
    latencies = [lat for part in parts for lat in part[1]]
    wall = max(part[4] for part in parts) - min(part[3] for part in parts)
    return answers, Timing(latencies, sum(part[2] for part in parts)), wall


def ours_steps(
    console: Console,
    table: Table,
    engine: PolicyEngine,
    requests: list[PolicyRequest],
    peer: float,
    batch: int,
) -> tuple[list[bool], list[str]]:
    """Time our engine step by step on ``requests``; add the rows, return the decisions and a summary."""
    # No cache of any kind: every store built (and, where Cedar evaluates, parsed) whole.
    first_touch = PolicyEngine(engine.bundle, cache_size=0, entity_cache_size=0, verify=False)
    first_touch.evaluate(requests[0])  # the permit memo is per engine: fill it as a running server has
    built, build_t = timed(build, requests)
    stores, index_t = timed(lambda b: compiled_index(b.entities), built)
    _, parse_t = timed(lambda b: first_touch.parse_entities(b.entities), built)
    # A running server: no decision cache, but each dataset's entities parsed once (warmed below).
    cold = PolicyEngine(engine.bundle, cache_size=0, entity_cache_size=len(requests) * 2, verify=False)
    for cedar_input in built:
        cold.entity_store(cedar_input)
    assert cold.entity_cache is not None
    misses = cold.entity_cache.misses
    cached_handles, cached_t = timed(cold.entity_store, built)
    entity_hits = cold.entity_cache.misses == misses
    cold.evaluate(requests[0])
    quads = list(zip(built, stores, cached_handles, strict=True))

    answers, eval_t = timed(lambda q: evaluation_only(cold, *q), quads)
    eval_par, eval_par_t, eval_par_wall = parallel(_evaluation_worker, requests, 2)
    _, cedar_t = timed(lambda q: cedar_only(cold, q[0], q[2]), quads)
    cedar_par, cedar_par_t, cedar_par_wall = parallel(_cedar_worker, requests, 2)
    _, interpret_t = timed(
        lambda t: cold.evaluate_input(t[0], t[1], t[2]),
        list(zip(requests, built, cached_handles, strict=True)),
    )
    cedar_engine = PolicyEngine(
        engine.bundle, cache_size=0, entity_cache_size=len(requests) * 2, compiled=False
    )
    for cedar_input in built:
        cedar_engine.entity_store(cedar_input)
    cedar_engine.evaluate(requests[0])
    cedar_decisions, cedar_whole_t = timed(cedar_engine.evaluate, requests)
    decisions, first_touch_t = timed(first_touch.evaluate, requests)
    warm_entities, cold_t = timed(cold.evaluate, requests)
    assert [d.reasons for d in warm_entities] == [d.reasons for d in decisions]
    assert [d.reasons for d in cedar_decisions] == [d.reasons for d in decisions], "compiled and Cedar differ"
    batched, batch_t = timed(cold.evaluate_many, batches(requests, batch))
    flat = [d for chunk in batched for d in chunk]
    assert [d.allowed for d in flat] == [d.allowed for d in decisions]
    warm = PolicyEngine(engine.bundle, cache_size=len(requests) * 2, verify=False)
    for request in requests:
        warm.evaluate(request)
    assert warm.cache is not None
    misses = warm.cache.misses
    warm_decisions, warm_t = timed(warm.evaluate, requests)
    hits = warm.cache.misses == misses
    assert [d.reasons for d in warm_decisions] == [d.reasons for d in decisions]
    par, par_t, par_wall = parallel(_cold_worker, requests, 2)
    allowed = [d.allowed for d in decisions]
    assert par == cedar_par == eval_par == answers == allowed

    building = Timing(
        [a + b for a, b in zip(build_t.latencies, index_t.latencies, strict=True)],
        build_t.cpu_s + index_t.cpu_s,
    )
    parsing = Timing(
        [a + b for a, b in zip(build_t.latencies, parse_t.latencies, strict=True)],
        build_t.cpu_s + parse_t.cpu_s,
    )
    building_cached = Timing(
        [a + b for a, b in zip(build_t.latencies, cached_t.latencies, strict=True)],
        build_t.cpu_s + cached_t.cpu_s,
    )
    label = "every one a hit" if entity_hits else "NOT all hits"
    warm_label = "every one a hit" if hits else "NOT all hits"
    rows = [
        row(table, "ours: entity building (facts -> dicts -> index), every decision", building, peer),
        row(table, "   of which Python dicts", build_t, peer),
        row(table, "ours: + Cedar's parse of the whole store (allows; verify mode)", parsing, peer),
        row(table, f"ours: + Cedar's parse, dataset's part cached ({label})", building_cached, peer),
        row(table, "ours: EVALUATION ITSELF (compiled; Cedar decides allows), 1 process", eval_t, peer),
        row(table, "ours: EVALUATION ITSELF (compiled; Cedar decides allows), 2 processes", eval_par_t,
            peer, wall_s=eval_par_wall),
        row(table, "Cedar alone on every candidate (verify mode), 1 process", cedar_t, peer),
        row(table, "Cedar alone on every candidate (verify mode), 2 processes", cedar_par_t, peer,
            wall_s=cedar_par_wall),
        row(table, "ours: evaluation + reasons (cold)", interpret_t, peer),
        row(table, "ours: COLD whole decision, no cache at all (first touch)", first_touch_t, peer),
        row(table, "ours: COLD whole decision, dataset entities cached", cold_t, peer),
        row(table, "Cedar alone: COLD whole decision, dataset entities cached", cedar_whole_t, peer),
        row(table, f"ours: COLD whole decision, {batch} per evaluate_many (Cedar)", batch_t, peer, batch),
        row(table, "ours: COLD whole decision, dataset entities cached, 2 processes", par_t, peer,
            wall_s=par_wall),
        row(table, f"ours: WARM whole decision (decision cache, {warm_label})", warm_t, peer),
    ]  # fmt: skip
    candidates = statistics.mean(len(b.candidates) for b in built)
    entities = statistics.mean(len(b.entities) for b in built)
    shared = statistics.mean(len(b.shared) for b in built)
    by_outcome = {
        outcome: [lat for lat, d in zip(eval_t.latencies, decisions, strict=True) if d.allowed == outcome]
        for outcome in (True, False)
    }
    summary = [
        f"{candidates:.2f} candidate Cedar requests (accreditation x agreement) and {entities:.1f} entities "
        f"({shared:.1f} of them the dataset's, cached) per decision on average; the engine asks Cedar about "
        "the first candidate, and about the others only when it is not allowed.",
        "Cedar evaluation itself by outcome: "
        + "; ".join(
            f"{'allow' if outcome else 'deny'} p50 {statistics.median(lats):.3f} ms ({len(lats):,} decisions)"
            for outcome, lats in by_outcome.items()
            if lats
        )
        + " (an allow is decided by Cedar: the compiled policies, then Cedar's first candidate; a deny "
        "is the compiled policies on every candidate, with its reasons, and no Cedar call).",
        f"Entity building takes {building.cpu_s / len(requests) * 1e3:.3f} ms of CPU per decision for "
        f"the compiled policies; Cedar's parse (allows, verify mode) adds "
        f"{(building_cached.cpu_s - build_t.cpu_s) / len(requests) * 1e3:.3f} ms with the dataset's part "
        f"cached, {(parsing.cpu_s - build_t.cpu_s) / len(requests) * 1e3:.3f} ms on first touch.",
        f"Target of issue 3: >= {TARGET_RATE:,} decisions/s and p99 < {TARGET_P99_MS} ms for the evaluation "
        "itself (rates are wall-clock on this machine, shared: see its load average):",
        *("  " + r.verdict() for r in (rows[4], rows[5], rows[6], rows[7], rows[10], rows[13], rows[14])),
    ]
    return [d.allowed for d in decisions], summary


def bench_memory(console: Console, engine: PolicyEngine, population: Population, n: int, batch: int) -> None:
    requests = population.requests(n)
    naive, naive_t = timed(naive_decision, requests)
    table = new_table(f"read_dataset, facts generated in memory: {n:,} decisions")
    peer = row(table, "peer: pure-Python if/else", naive_t, None).rate
    mine, summary = ours_steps(console, table, engine, requests, peer, batch)
    console.print(table)
    for line in summary:
        console.print(line)
    mismatches = sum(a != b for a, b in zip(mine, naive, strict=True))
    console.print(f"allowed {sum(mine):,} / {n:,}; decisions that differ from the peer: {mismatches}")


def bench_allows(console: Console, engine: PolicyEngine, population: Population, n: int) -> None:
    """Allowed requests only: every one is decided by Cedar (ADR 0011), so this is the engine's
    slowest cold case - the other side of the benchmark's mostly-denied random requests."""
    requests = population.allowed_requests(n)
    if not requests:
        console.print("no allowed requests could be drawn from this population")
        return
    naive, naive_t = timed(naive_decision, requests)
    table = new_table(f"read_dataset, ALLOWED requests only (facts in memory): {len(requests):,} decisions")
    peer = row(table, "peer: pure-Python if/else", naive_t, None).rate
    cold = PolicyEngine(engine.bundle, cache_size=0, entity_cache_size=len(requests) * 2, verify=False)
    built = [build(r) for r in requests]
    handles = [cold.entity_store(b) for b in built]
    cold.evaluate(requests[0])
    quads = [(b, compiled_index(b.entities), h) for b, h in zip(built, handles, strict=True)]
    answers, eval_t = timed(lambda q: evaluation_only(cold, *q), quads)
    eval_par, eval_par_t, eval_par_wall = parallel(_evaluation_worker, requests, 2)
    cedar_answers, cedar_t = timed(lambda q: cedar_only(cold, q[0], q[2]), quads)
    decisions, whole_t = timed(cold.evaluate, requests)
    warm = PolicyEngine(engine.bundle, cache_size=len(requests) * 2, verify=False)
    for request in requests:
        warm.evaluate(request)
    _, warm_t = timed(warm.evaluate, requests)
    rows = [
        row(table, "ours: EVALUATION ITSELF (compiled, then Cedar), allows, 1 process", eval_t, peer),
        row(table, "ours: EVALUATION ITSELF (compiled, then Cedar), allows, 2 processes", eval_par_t,
            peer, wall_s=eval_par_wall),
        row(table, "Cedar alone on every candidate, allows, 1 process", cedar_t, peer),
        row(table, "ours: COLD whole decision, dataset entities cached, allows", whole_t, peer),
        row(table, "ours: WARM whole decision (decision cache), allows", warm_t, peer),
    ]  # fmt: skip
    console.print(table)
    assert answers == cedar_answers == eval_par == [d.allowed for d in decisions] == naive
    console.print(f"all {len(requests):,} allowed by ours and by the peer; for allowed requests only:")
    for r in rows:
        console.print("  " + r.verdict())


def write_database(console: Console, population: Population, directory: Path) -> Engine:
    """The population in a fresh SQLite database, written with bulk (executemany) inserts."""
    from tre_platform.api.agreements.models import AgreementDataset, AgreementRecipient, DataSharingAgreement
    from tre_platform.api.datasets.models import Dataset
    from tre_platform.api.orgs.models import Organisation
    from tre_platform.api.projects.models import Project, ProjectDataset, ProjectMember
    from tre_platform.api.users.models import Accreditation, User, UserRole
    from tre_platform.db.base import Base

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
        f"database: {len(p.users):,} users, {len(p.projects):,} projects, {len(p.agreements):,} agreements, "
        f"{len(p.datasets):,} datasets written in {time.perf_counter() - start:.1f}s "
    )
    return db


SQL_PEER = text(
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


def bench_db(
    console: Console,
    engine: PolicyEngine,
    population: Population,
    n: int,
    full_n: int,
    batch: int,
) -> None:
    from sqlalchemy.orm import Session

    from tre_platform.api.users.models import User
    from tre_platform.clock import clock
    from tre_platform.policy.db import load_request

    scratch = tempfile.TemporaryDirectory(prefix="tre-bench-policy-")
    db = write_database(console, population, Path(scratch.name))
    picks = [
        (r.user.id, r.project.id, r.dataset.id) for r in population.requests(n) if r.project and r.dataset
    ]
    with Session(db) as session, clock.frozen(dt.datetime(2025, 6, 1, 12, tzinfo=dt.UTC)):

        def sql_peer(pick: tuple[str, str, str]) -> bool:
            user, project, dataset = pick
            params = {"user": user, "project": project, "dataset": dataset, "today": TODAY}
            return bool(session.execute(SQL_PEER, params).scalar_one())

        peer_answers, peer_t = timed(sql_peer, picks)
        # The caller holds the signed-in user already (the API's authentication loaded it): not timed.
        users = {u.id: u for u in session.execute(select(User).where(User.id.in_({p[0] for p in picks})))
                 .unique().scalars()}  # fmt: skip

        def load(pick: tuple[str, str, str]) -> PolicyRequest:
            user, project, dataset = pick
            return load_request(
                session, users[user], "read_dataset", project=project, dataset=dataset,
                columns=["a"], today=TODAY,
            )  # fmt: skip

        requests, load_t = timed(load, picks)

        table = new_table(
            f"read_dataset with {len(population.users):,} users, {len(population.projects):,} projects and "
            f"{len(population.agreements):,} agreements in SQLite: {n:,} decisions"
        )
        peer = row(table, "peer: one SQL query per decision", peer_t, None).rate
        naive, naive_t = timed(naive_decision, requests)
        row(table, "pure-Python if/else on the loaded facts", naive_t, peer)
        row(table, "ours: loading the facts from the database", load_t, peer)
        mine, summary = ours_steps(console, table, engine, requests, peer, batch)
        cold = PolicyEngine(engine.bundle, cache_size=0, verify=False)

        def decide(pick: tuple[str, str, str]) -> bool:
            user, project, dataset = pick
            return cold.decide(
                session, users[user], "read_dataset", project=project, dataset=dataset,
                columns=["a"], audit=False,
            ).allowed  # fmt: skip

        end_to_end, decide_t = timed(decide, picks[:full_n])
        row(table, f"ours: COLD engine.decide end to end (first {len(end_to_end):,})", decide_t, peer)
    console.print(table)
    for line in summary:
        console.print(line)
    mismatches = sum(a != b for a, b in zip(mine, peer_answers, strict=True))
    mismatches += sum(a != b for a, b in zip(end_to_end, peer_answers, strict=False))
    mismatches += sum(a != b for a, b in zip(naive, peer_answers, strict=True))
    console.print(
        f"allowed {sum(peer_answers):,} / {len(picks):,}; "
        f"decisions that differ from the SQL peer: {mismatches}"
    )
    db.dispose()
    scratch.cleanup()


def cedarpy_floor(console: Console, engine: PolicyEngine, repeat: int = 2000) -> None:
    """What one cedarpy call costs with nothing to do, to set the target against."""
    empty = cedarpy.PolicySet.from_str("")
    request = {
        "principal": {"type": "User", "id": "u"},
        "action": {"type": "Action", "id": "read_dataset"},
        "resource": {"type": "Dataset", "id": "d"},
        "context": {},
    }
    nothing = cedarpy.Entities.from_json_str("[]")
    _, empty_t = timed(lambda _: cedarpy.is_authorized(request, empty, nothing), range(repeat))
    _, policies_t = timed(
        lambda _: cedarpy.is_authorized(request, engine.bundle.policy_set, nothing), range(repeat)
    )
    table = new_table(f"cedarpy floor: {repeat:,} trivial calls (no entities, empty context)")
    floor = row(table, "empty policy set (per-call overhead)", empty_t, None)
    row(table, f"our {len(engine.bundle.policies)} policies, no schema", policies_t, floor.rate)
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--projects", type=int, default=10_000)
    parser.add_argument("--agreements", type=int, default=1_000)
    parser.add_argument("--decisions", type=int, default=2_000, help="decisions timed step by step")
    parser.add_argument(
        "--db",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="write the population to SQLite and compare with the SQL peer (default); --no-db: in memory",
    )
    parser.add_argument(
        "--db-decisions", type=int, default=500, help="decisions timed end to end with engine.decide"
    )
    parser.add_argument("--batch", type=int, default=100, help="decisions per Cedar call when batching")
    parser.add_argument("--allows", type=int, default=1_000, help="allowed requests timed on their own")
    args = parser.parse_args()
    console = Console(width=150)
    engine = PolicyEngine.load(REPO_ROOT / "policies", verify=False)
    start = time.perf_counter()
    population = Population(args.users, args.projects, args.agreements)
    # The population is the benchmark's, not the engine's: a server holds no 50,000 users in memory.
    # Frozen out of the garbage collector, its objects are not walked by every collection that the
    # engine's allocations trigger (which would otherwise add their cost to ours).
    gc.freeze()
    console.print(
        f"population generated in {time.perf_counter() - start:.1f}s; bundle {engine.bundle_hash[:16]}…"
    )
    cedarpy_floor(console, engine)
    if args.db:
        bench_db(console, engine, population, args.decisions, args.db_decisions, args.batch)
    else:
        bench_memory(console, engine, population, args.decisions, args.batch)
    bench_allows(console, engine, population, args.allows)


if __name__ == "__main__":
    main()
