"""A deny is never lost to a savepoint (``session.begin_nested()``), whatever the outer transaction does.

The retention sweep, for one, wraps each step in a savepoint and carries on after a failure: a deny
recorded inside a step that rolls back must still be in the log when the sweep commits, exactly once.
Nor does a deny ever wait on a lock its own caller holds.
"""

from __future__ import annotations

import contextlib

from policy_db_world import DbWorld
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from tre_platform.api.audit.models import AuditEvent
from tre_platform.api.audit.service import read_checkpoint, verify
from tre_platform.errors import PolicyDenied
from tre_platform.policy import PolicyEngine


def _committed(engine: Engine, *, checkpointed: bool = True) -> list[tuple[str, str | None]]:
    """(actor, decision) of every committed event, in chain order, once the chain and checkpoint check out."""
    with Session(engine) as fresh:
        result = verify(fresh)
        assert result.ok, result.message()
        events = fresh.scalars(select(AuditEvent).order_by(AuditEvent.seq)).all()
        if checkpointed:
            # The signed checkpoint names the newest committed event, not one a savepoint took back.
            assert read_checkpoint() == (events[-1].seq, events[-1].hash)
        return [(e.actor, e.decision) for e in events]


def test_a_deny_in_a_savepoint_that_rolls_back_survives_the_outer_commit(
    engine: Engine, session: Session, world: DbWorld, policy_engine: PolicyEngine
) -> None:
    p1, alice, carol = world.projects["P1"], world.users["alice"], world.users["carol"]
    session.commit()
    policy_engine.decide(session, alice, "spawn_workspace", project=p1)  # the caller has written
    with contextlib.suppress(PolicyDenied), session.begin_nested():
        policy_engine.check(session, carol, "spawn_workspace", project=p1)
    session.commit()
    assert _committed(engine) == [("alice", "allow"), ("carol", "deny")]


def test_a_deny_in_a_released_savepoint_survives_the_outer_rollback(
    engine: Engine, session: Session, world: DbWorld, policy_engine: PolicyEngine
) -> None:
    p1, alice, carol = world.projects["P1"], world.users["alice"], world.users["carol"]
    session.commit()
    policy_engine.decide(session, alice, "spawn_workspace", project=p1)
    with session.begin_nested():
        assert not policy_engine.decide(session, carol, "spawn_workspace", project=p1).allowed
    session.rollback()  # releasing the savepoint committed nothing: the allow goes, the deny stays
    assert _committed(engine) == [("carol", "deny")]


def test_a_deny_in_a_savepoint_that_rolls_back_is_kept_once_when_everything_rolls_back(
    engine: Engine, session: Session, world: DbWorld, policy_engine: PolicyEngine
) -> None:
    p1, alice, carol = world.projects["P1"], world.users["alice"], world.users["carol"]
    session.commit()
    policy_engine.decide(session, alice, "spawn_workspace", project=p1)
    with contextlib.suppress(PolicyDenied), session.begin_nested():
        policy_engine.check(session, carol, "spawn_workspace", project=p1)
    session.rollback()
    assert _committed(engine) == [("carol", "deny")]


def test_a_deny_outside_a_savepoint_that_rolls_back_is_not_written_twice(
    engine: Engine, session: Session, world: DbWorld, policy_engine: PolicyEngine
) -> None:
    p1, users = world.projects["P1"], world.users
    session.commit()
    policy_engine.decide(session, users["alice"], "spawn_workspace", project=p1)
    policy_engine.decide(session, users["carol"], "spawn_workspace", project=p1)
    with contextlib.suppress(RuntimeError), session.begin_nested():
        policy_engine.decide(session, users["bob"], "spawn_workspace", project=p1)
        raise RuntimeError("an unrelated step fails")
    session.commit()
    assert _committed(engine) == [("alice", "allow"), ("carol", "deny")]


def test_a_deny_released_into_a_savepoint_that_rolls_back_survives_the_outer_commit(
    engine: Engine, session: Session, world: DbWorld, policy_engine: PolicyEngine
) -> None:
    p1, users = world.projects["P1"], world.users
    session.commit()
    policy_engine.decide(session, users["alice"], "spawn_workspace", project=p1)
    with contextlib.suppress(RuntimeError), session.begin_nested():
        with session.begin_nested():
            policy_engine.decide(session, users["carol"], "spawn_workspace", project=p1)
        policy_engine.decide(session, users["bob"], "spawn_workspace", project=p1)
        raise RuntimeError("the step that held both fails")
    policy_engine.decide(session, users["dave"], "spawn_workspace", project=p1)
    session.commit()
    assert _committed(engine) == [("alice", "allow"), ("dave", "deny"), ("carol", "deny")]


def test_a_deny_first_in_a_savepoint_lets_the_savepoint_write_afterwards(
    engine: Engine, session: Session, world: DbWorld, policy_engine: PolicyEngine
) -> None:
    p1, users = world.projects["P1"], world.users
    session.commit()
    with session.begin_nested():
        policy_engine.decide(session, users["carol"], "spawn_workspace", project=p1)
        policy_engine.decide(session, users["alice"], "spawn_workspace", project=p1)
    session.commit()
    assert _committed(engine) == [("carol", "deny"), ("alice", "allow")]


def test_a_deny_first_in_a_released_savepoint_is_kept_once_when_the_outer_transaction_rolls_back(
    engine: Engine, session: Session, world: DbWorld, policy_engine: PolicyEngine
) -> None:
    p1 = world.projects["P1"]
    session.commit()
    with session.begin_nested():
        policy_engine.decide(session, world.users["carol"], "spawn_workspace", project=p1)
    session.rollback()
    # SQLite (pysqlite) opens the transaction with the savepoint when nothing was written before, so
    # the release commits it for real (and the checkpoint moves with it: ADR 0015); PostgreSQL commits
    # nothing before the outer COMMIT. One copy either way.
    assert _committed(engine) == [("carol", "deny")]


def test_a_deny_after_a_bare_flush_joins_the_callers_transaction_instead_of_waiting_on_its_lock(
    engine: Engine, session: Session, world: DbWorld, policy_engine: PolicyEngine
) -> None:
    p1, users = world.projects["P1"], world.users
    session.commit()
    users["bob"].full_name = "Robert"
    session.flush()  # SQLite: the caller holds the write lock from here on, with nothing left pending
    assert not (session.new or session.dirty or session.deleted)
    policy_engine.decide(session, users["carol"], "spawn_workspace", project=p1)
    session.commit()
    assert _committed(engine) == [("carol", "deny")]
