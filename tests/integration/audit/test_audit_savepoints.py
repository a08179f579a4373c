"""Savepoints (``session.begin_nested()``) and other partial ends of a transaction that writes events.

A savepoint that rolls back takes its events with it, and one that is released has committed nothing
yet: the signed head checkpoint must follow only what the outermost transaction really commits, so
``verify`` never reports tampering that did not happen and never loses sight of a committed event.
"""

from __future__ import annotations

import contextlib

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from tre_platform.api.audit.models import AuditEvent
from tre_platform.api.audit.service import read_checkpoint, record, verify
from tre_platform.db.session import make_session_factory


def _event(session: Session, name: str) -> AuditEvent:
    return record(session, actor=name, action="project.update", target_type="project", target_id=name)


def _committed(engine: Engine) -> list[str]:
    """The actors of the committed events, in chain order, as another connection sees them."""
    with make_session_factory(engine)() as fresh:
        return list(fresh.scalars(select(AuditEvent.actor).order_by(AuditEvent.seq)))


def _verifies(engine: Engine) -> None:
    with make_session_factory(engine)() as fresh:
        result = verify(fresh)
    assert result.ok, result.message()


def test_a_rolled_back_savepoint_leaves_the_checkpoint_on_the_newest_committed_event(
    session: Session, engine: Engine
) -> None:
    _event(session, "first")
    session.commit()
    kept = _event(session, "kept")
    with contextlib.suppress(RuntimeError), session.begin_nested():
        _event(session, "undone")
        raise RuntimeError("this step fails; the rest of the transaction goes ahead")
    session.commit()
    assert _committed(engine) == ["first", "kept"]
    # Before: the savepoint's rollback dropped the head, so "kept" was committed but never checkpointed
    # and deleting it afterwards went unnoticed.
    assert read_checkpoint() == (kept.seq, kept.hash)
    _verifies(engine)


def test_an_event_written_after_a_rolled_back_savepoint_is_the_checkpoint(
    session: Session, engine: Engine
) -> None:
    _event(session, "first")
    session.commit()
    with contextlib.suppress(RuntimeError), session.begin_nested():
        _event(session, "undone")
        raise RuntimeError("undo")
    last = _event(session, "after")
    session.commit()
    assert _committed(engine) == ["first", "after"]
    assert read_checkpoint() == (last.seq, last.hash)
    _verifies(engine)


def test_a_released_savepoint_moves_no_checkpoint_when_the_outer_transaction_rolls_back(
    session: Session, engine: Engine
) -> None:
    first = _event(session, "first")
    session.commit()
    _event(session, "outer")
    with session.begin_nested():
        _event(session, "released")
    session.rollback()
    assert _committed(engine) == ["first"]
    # Before: releasing the savepoint fired after_commit, which checkpointed an event that was never
    # committed; verify then reported "the newest events were deleted".
    _verifies(engine)
    assert read_checkpoint() == (first.seq, first.hash)


def test_nested_savepoints_commit_only_what_survives(session: Session, engine: Engine) -> None:
    _event(session, "first")
    session.commit()
    _event(session, "outer")
    with session.begin_nested():
        _event(session, "middle")
        with contextlib.suppress(RuntimeError), session.begin_nested():
            _event(session, "inner")
            raise RuntimeError("undo the inner step")
    session.commit()
    assert _committed(engine) == ["first", "outer", "middle"]
    head = session.scalars(select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(1)).one()
    assert read_checkpoint() == (head.seq, head.hash)
    _verifies(engine)


def test_a_session_closed_without_commit_checkpoints_nothing_when_used_again(
    session: Session, engine: Engine
) -> None:
    first = _event(session, "first")
    session.commit()
    _event(session, "abandoned")
    session.close()  # closing rolls back without an after_rollback event
    session.commit()  # the same session, reused: a transaction with no events of its own
    assert _committed(engine) == ["first"]
    _verifies(engine)
    assert read_checkpoint() == (first.seq, first.hash)
