"""Writing and verifying the audit log.

Events are written in the same transaction as the change they record, so a change without its event
(or an event without its change) can never be committed. Events that must outlive the caller's
transaction - denied decisions, which change nothing - are written with :func:`record_kept`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy import select, text
from sqlalchemy.orm import Session, SessionTransaction

from tre_platform.api.audit.models import GENESIS_HASH, AuditEvent
from tre_platform.clock import clock
from tre_platform.settings import get_settings

SYSTEM_ACTOR = "system"


def canonical(event: AuditEvent | dict[str, Any]) -> bytes:
    """The bytes that are hashed: every field but the hash and signature, as sorted compact JSON."""
    if isinstance(event, AuditEvent):
        at = event.at
        data = {
            "seq": event.seq,
            "at": at.astimezone(dt.UTC).isoformat(timespec="microseconds"),
            "actor": event.actor,
            "action": event.action,
            "target_type": event.target_type,
            "target_id": event.target_id,
            "decision": event.decision,
            "reasons": list(event.reasons or []),
            "details": event.details or {},
            "prev_hash": event.prev_hash,
        }
    else:
        data = event
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str).encode()


def _sign(event_hash: str, key: bytes) -> str:
    return hmac.new(key, event_hash.encode(), hashlib.sha256).hexdigest()


def _lock_chain(session: Session) -> None:
    # PostgreSQL: serialise appends so two transactions never read the same head. SQLite serialises
    # writers itself; the unique prev_hash is the last line of defence on both.
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(724207)"))


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    target_type: str = "",
    target_id: str = "",
    decision: str | None = None,
    reasons: Iterable[str] = (),
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event to the chain inside ``session``'s transaction (the caller commits)."""
    _lock_chain(session)
    session.flush()
    head = session.execute(select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(1)).scalar_one_or_none()
    prev_hash = head.hash if head is not None else GENESIS_HASH
    seq = head.seq + 1 if head is not None else 1
    at = clock.now()
    event = AuditEvent(
        seq=seq,
        at=at,
        actor=actor,
        action=action,
        target_type=target_type,
        target_id=target_id,
        decision=decision,
        reasons=list(reasons),
        details=json.loads(json.dumps(details or {}, default=str)),
        prev_hash=prev_hash,
    )
    event.hash = hashlib.sha256(canonical(event)).hexdigest()
    event.signature = _sign(event.hash, get_settings().get_secret_key())
    session.add(event)
    session.flush()
    session.info[_HEAD] = (event.seq, event.hash)
    return event


def record_kept(session: Session, **event: Any) -> None:
    """Append an event that must stay in the log whatever becomes of ``session``'s transaction.

    For what is recorded because something was refused (a policy deny): the caller is likely to roll
    back, or to roll back the savepoint it is in. With nothing written yet (and no savepoint open), the
    event is committed at once in a transaction of its own. Otherwise the caller's transaction holds
    SQLite's write lock (or the chain's lock on PostgreSQL) and a second transaction would wait on it
    forever (or, inside a savepoint on SQLite, make the caller's next write fail), so the event joins
    the caller's transaction and is remembered: if a savepoint takes it back, it is written again when
    the transaction commits; if the transaction ends without a commit, it is written in a transaction
    of its own once the locks are gone. Either way exactly one copy is committed.
    ``event`` takes the keyword arguments of :func:`record`.
    """
    if not _has_written(session):
        _record_own(session, [_Kept(event)])
        return
    kept = _Kept(event)
    kept.written_as(record(session, **event))
    session.info.setdefault(_KEPT, []).append(kept)


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    head_seq: int | None = None
    head_hash: str | None = None
    broken_seq: int | None = None
    problem: str | None = None
    problems: Sequence[str] = field(default_factory=tuple)

    def message(self) -> str:
        if self.ok:
            return f"audit chain intact: {self.checked} events, head #{self.head_seq} {self.head_hash}"
        where = f" at event #{self.broken_seq}" if self.broken_seq is not None else ""
        return f"audit chain BROKEN{where}: {self.problem}"


def iter_events(session: Session, batch: int = 5000) -> Iterator[AuditEvent]:
    last = 0
    while True:
        rows = (
            session.execute(
                select(AuditEvent).where(AuditEvent.seq > last).order_by(AuditEvent.seq).limit(batch)
            )
            .scalars()
            .all()
        )
        if not rows:
            return
        yield from rows
        last = rows[-1].seq
        session.expunge_all()


def verify(session: Session, *, key: bytes | None = None) -> VerifyResult:
    """Walk the chain from the first event and report the first broken link.

    Detects an edited event (its hash no longer matches its content), a deleted or inserted event
    (a gap in the sequence or a ``prev_hash`` that is not its predecessor's hash), a recomputed chain
    (signatures need the deployment secret), a truncated tail or a replaced event at the head (the
    head checkpoint records the newest event's seq and hash), and an altered checkpoint file.
    """
    key = key if key is not None else get_settings().get_secret_key()
    head = read_checkpoint()
    if head is None and _checkpoint_path().exists():
        return VerifyResult(
            False,
            0,
            broken_seq=None,
            problem="the head checkpoint (audit.head in the data directory) is not signed by this "
            "deployment: it was altered, so deleted events could go unnoticed",
        )
    head_hash_seen: str | None = None
    expected_prev = GENESIS_HASH
    expected_seq = 1
    checked = 0
    last: AuditEvent | None = None
    for event in iter_events(session):
        problem = None
        if event.seq != expected_seq:
            problem = f"expected event #{expected_seq} next but found #{event.seq}: events were deleted"
        elif event.prev_hash != expected_prev:
            problem = (
                "its prev_hash does not match the previous event's hash: an event was removed or altered"
            )
        elif hashlib.sha256(canonical(event)).hexdigest() != event.hash:
            problem = "its content does not match its hash: the event was edited"
        elif not hmac.compare_digest(_sign(event.hash, key), event.signature):
            problem = "its signature is invalid: the chain was recomputed without the deployment key"
        if problem is not None:
            return VerifyResult(
                False,
                checked,
                broken_seq=expected_seq if event.seq != expected_seq else event.seq,
                problem=problem,
            )
        checked += 1
        expected_prev = event.hash
        expected_seq = event.seq + 1
        last = event
        if head is not None and event.seq == head[0]:
            head_hash_seen = event.hash
    if head is not None and head_hash_seen is not None and head_hash_seen != head[1]:
        return VerifyResult(
            False,
            checked,
            broken_seq=head[0],
            problem=f"event #{head[0]} is not the event the head checkpoint recorded: the chain from "
            "there on was replaced",
        )
    if head is not None and (last is None or last.seq < head[0]):
        return VerifyResult(
            False,
            checked,
            broken_seq=(last.seq + 1) if last else 1,
            problem=f"the log ends at #{last.seq if last else 0} but event #{head[0]} was written: "
            "the newest events were deleted",
        )
    return VerifyResult(
        True, checked, head_seq=last.seq if last else None, head_hash=last.hash if last else None
    )


# The head checkpoint lives outside the database (in the data directory), signed with the deployment
# secret, so deleting the newest rows - which leaves a valid but shorter chain - is still detected.


def _checkpoint_path() -> Any:
    return get_settings().ensure_data_dir() / "audit.head"


def write_checkpoint(seq: int, event_hash: str) -> None:
    import os

    settings = get_settings()
    payload = f"{seq}:{event_hash}"
    signature = hmac.new(settings.get_secret_key(), payload.encode(), hashlib.sha256).hexdigest()
    path = _checkpoint_path()
    current = read_checkpoint()
    if current is not None and current[0] >= seq:
        return
    tmp = path.with_name(f"audit.head.{os.getpid()}.tmp")
    tmp.write_text(f"{payload}:{signature}\n")
    os.replace(tmp, path)


def read_checkpoint() -> tuple[int, str] | None:
    path = _checkpoint_path()
    if not path.exists():
        return None
    try:
        seq_text, event_hash, signature = path.read_text().strip().split(":")
    except ValueError:
        return None
    expected = hmac.new(get_settings().get_secret_key(), f"{seq_text}:{event_hash}".encode(), hashlib.sha256)
    if not hmac.compare_digest(expected.hexdigest(), signature):
        return None
    return int(seq_text), event_hash


# What a transaction has written, kept in session.info and checked against what it commits --------
#
# Savepoints (session.begin_nested()) make this more than "forget it all on rollback": SQLAlchemy fires
# after_commit when a savepoint is released (nothing is committed yet) and after_rollback when one is
# rolled back (the outer transaction goes on, and may commit).

#: (seq, hash) of the newest event this transaction wrote: the checkpoint once it commits.
_HEAD = "audit_head"
#: The :class:`_Kept` events this transaction wrote.
_KEPT = "tre_audit_kept"
#: A savepoint rolled back since the last check: the head or a kept event may be gone.
_UNDONE = "tre_audit_savepoint_undone"
#: The transaction flushed (and so holds SQLite's write lock) even if nothing is pending now.
_FLUSHED = "tre_flushed"


@dataclass
class _Kept:
    event: dict[str, Any]
    seq: int | None = None
    hash: str | None = None

    def written_as(self, row: AuditEvent) -> None:
        self.seq, self.hash = row.seq, row.hash


def _has_written(session: Session) -> bool:
    return bool(
        session.new
        or session.dirty
        or session.deleted
        or _HEAD in session.info
        or session.info.get(_FLUSHED)
        # SQLite: a savepoint opened before any write starts a transaction that reads one snapshot; a
        # write committed meanwhile by another connection makes the savepoint's next write fail at once
        # ("database is locked"). So inside a savepoint the event joins the caller's transaction.
        or session.in_nested_transaction()
    )


def _missing(session: Session, kept: list[_Kept]) -> list[_Kept]:
    """The kept events whose row is not in the log as ``session`` sees it."""
    seqs = [k.seq for k in kept if k.seq is not None]
    present: set[tuple[int, str]] = set()
    if seqs:
        rows = session.execute(select(AuditEvent.seq, AuditEvent.hash).where(AuditEvent.seq.in_(seqs)))
        present = {(seq, event_hash) for seq, event_hash in rows}
    return [k for k in kept if (k.seq, k.hash) not in present]


def _record_own(session: Session, kept: list[_Kept]) -> None:
    """Write those of ``kept`` not already committed in a transaction of its own, committed now."""
    with Session(bind=session.get_bind()) as own:
        for lost in _missing(own, kept):
            record(own, **lost.event)
        own.commit()


@sa_event.listens_for(Session, "after_flush")
def _note_flush(session: Session, _context: object) -> None:
    # A flush (e.g. an API token's last_used_at) takes SQLite's write lock for the rest of the
    # transaction and leaves nothing in new/dirty: remember it for _has_written.
    session.info[_FLUSHED] = True


@sa_event.listens_for(Session, "after_rollback")
def _note_savepoint_rollback(session: Session) -> None:
    # A savepoint rolled back (the outermost transaction's end is _end_transaction's business): the
    # events it took back are looked for before the outer transaction commits.
    if session.in_nested_transaction() and (_HEAD in session.info or _KEPT in session.info):
        session.info[_UNDONE] = True


@sa_event.listens_for(Session, "before_commit")
def _restore_after_savepoints(session: Session) -> None:
    # Runs on every commit, a savepoint's release included, but does work only after a savepoint
    # rolled back: then kept events it took are written again, and the head is read back.
    if not session.info.pop(_UNDONE, False):
        return
    for lost in _missing(session, session.info.get(_KEPT, [])):
        lost.written_as(record(session, **lost.event))
    if _HEAD in session.info:
        head = session.execute(
            select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)
        ).one_or_none()
        if head is None:
            session.info.pop(_HEAD)
        else:
            session.info[_HEAD] = (head.seq, head.hash)


@sa_event.listens_for(Session, "after_commit")
def _move_checkpoint(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint was released: nothing is committed before the outermost transaction is
    session.info.pop(_KEPT, None)
    head = session.info.pop(_HEAD, None)
    if head is not None:
        write_checkpoint(*head)


@sa_event.listens_for(Session, "after_transaction_end")
def _end_transaction(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is not None:
        return
    for key in (_HEAD, _UNDONE, _FLUSHED):
        session.info.pop(key, None)
    # Kept events still listed: the outermost transaction ended without a commit (rollback, close, an
    # exception). Its connection is back in the pool and its locks are gone, so they can be written.
    lost = session.info.pop(_KEPT, None)
    if lost:
        _record_own(session, lost)


# Reading the log (the API's audit routes) ----------------------------------------------------------


def list_events(
    session: Session,
    *,
    actor: str | None = None,
    action: str | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[AuditEvent], int]:
    """Events matching the filters, newest first, and how many match in total.

    ``action`` ending in ``.`` or ``*`` matches a prefix (``project.`` selects every project event).
    Authorisation is the caller's job (the API allows administrators only).
    """
    from sqlalchemy import func

    query = select(AuditEvent)
    if actor is not None:
        query = query.where(AuditEvent.actor == actor)
    if action is not None:
        if action.endswith(("*", ".")):
            prefix = action.rstrip("*")
            query = query.where(AuditEvent.action.startswith(prefix, autoescape=True))
        else:
            query = query.where(AuditEvent.action == action)
    if target_type is not None:
        query = query.where(AuditEvent.target_type == target_type)
    if target_id is not None:
        query = query.where(AuditEvent.target_id == target_id)
    # A time without a zone is read as UTC, the zone every event is stored in.
    if since is not None:
        query = query.where(AuditEvent.at >= (since if since.tzinfo else since.replace(tzinfo=dt.UTC)))
    if until is not None:
        query = query.where(AuditEvent.at < (until if until.tzinfo else until.replace(tzinfo=dt.UTC)))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(AuditEvent.seq.desc()).limit(limit).offset(offset)).all()
    return list(rows), int(total)
