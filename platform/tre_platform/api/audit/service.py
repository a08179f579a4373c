"""Writing and verifying the audit log.

Events are written in the same transaction as the change they record, so a change without its event
(or an event without its change) can never be committed. Events that must outlive the caller's
transaction - denied decisions, which change nothing - are written with :func:`record_kept`.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import hmac
import json
import logging
import os
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy import select, text
from sqlalchemy.orm import Session, SessionTransaction

from tre_platform.api.audit.models import GENESIS_HASH, AuditEvent
from tre_platform.clock import clock
from tre_platform.settings import get_settings

SYSTEM_ACTOR = "system"
log = logging.getLogger(__name__)
#: Every chain head, for shipping off the host (syslog, a log service): one more witness (ADR 0015).
witness_log = logging.getLogger("tre.audit.witness")


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
    # Serialise appends so two transactions never read the same head (a lost or refused event
    # otherwise). PostgreSQL: an advisory transaction lock. SQLite: take the database's write lock
    # *before* reading the head - what BEGIN IMMEDIATE does - with a write that touches no row (the
    # driver begins a transaction before it, and SQLite takes the lock for any write statement, waiting
    # up to busy_timeout). Without it the head is read outside any transaction and two requests append
    # after the same event: the unique prev_hash refuses one, and its event is lost.
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(724207)"))
    elif dialect == "sqlite":
        session.execute(text("UPDATE audit_events SET seq = seq WHERE 0"))
        session.info[_SQLITE_CONNECTION] = session.connection().connection.dbapi_connection


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
    checkpoint_exists = _checkpoint_path().exists()
    if head is None and checkpoint_exists:
        return VerifyResult(
            False,
            0,
            broken_seq=None,
            problem="the head checkpoint (audit.head in the data directory) is not signed by this "
            "deployment: it was altered, so deleted events could go unnoticed",
        )
    witnessed = read_witness()
    # The newest head known outside the database: the witness log never goes back, the checkpoint may
    # have been replaced by an older genuine copy.
    if witnessed is not None and head is not None and head[0] < witnessed[0]:
        return VerifyResult(
            False,
            0,
            broken_seq=head[0] + 1,
            problem=f"the head checkpoint records event #{head[0]} but the witness log "
            f"({get_settings().resolved_audit_witness_file}) saw event #{witnessed[0]}: an older "
            "checkpoint was put back, so the newest events were probably deleted",
        )
    heads = [h for h in (head, witnessed) if h is not None]
    seen: dict[int, str] = {}
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
        if any(event.seq == h[0] for h in heads):
            seen[event.seq] = event.hash
    for seq, event_hash in heads:
        if seq in seen and seen[seq] != event_hash:
            return VerifyResult(
                False,
                checked,
                broken_seq=seq,
                problem=f"event #{seq} is not the event the head checkpoint recorded: the chain from "
                "there on was replaced",
            )
    newest = max((h[0] for h in heads), default=0)
    if (last.seq if last is not None else 0) < newest:
        return VerifyResult(
            False,
            checked,
            broken_seq=(last.seq + 1) if last else 1,
            problem=f"the log ends at #{last.seq if last else 0} but event #{newest} was written: "
            "the newest events were deleted",
        )
    if last is not None and not checkpoint_exists:
        return VerifyResult(
            False,
            checked,
            broken_seq=None,
            problem=f"the head checkpoint (audit.head in the data directory) is missing but the log holds "
            f"{checked} events: it was deleted, so deleted events could go unnoticed",
        )
    if last is not None and witnessed is None:
        return VerifyResult(
            False,
            checked,
            broken_seq=None,
            problem=f"the witness log ({get_settings().resolved_audit_witness_file}) is missing or holds no "
            f"head signed by this deployment but the log holds {checked} events: it was removed",
        )
    return VerifyResult(
        True, checked, head_seq=last.seq if last else None, head_hash=last.hash if last else None
    )


# The head checkpoint lives outside the database (in the data directory), signed with the deployment
# secret, so deleting the newest rows - which leaves a valid but shorter chain - is still detected.
# Every head it takes is also appended to the witness log, outside the data directory (ADR 0015), so
# deleting the checkpoint or putting back an older genuine copy is detected too.


def _checkpoint_path() -> Path:
    return get_settings().ensure_data_dir() / "audit.head"


def _head_signature(seq: int, event_hash: str) -> str:
    payload = f"{seq}:{event_hash}".encode()
    return hmac.new(get_settings().get_secret_key(), payload, hashlib.sha256).hexdigest()


def _parse_head(line: str) -> tuple[int, str] | None:
    """``seq:hash:signature`` signed by this deployment, else None."""
    try:
        seq_text, event_hash, signature = line.strip().split(":")
        seq = int(seq_text)
    except ValueError:
        return None
    if not hmac.compare_digest(_head_signature(seq, event_hash), signature):
        return None
    return seq, event_hash


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    # flock conflicts between two open() of the file even in one process, so threads are serialised too.
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def write_checkpoint(seq: int, event_hash: str) -> None:
    """Move the head checkpoint forward to ``(seq, event_hash)`` and witness it (never backwards).

    Atomic: written to a temporary file unique to this process and thread, then renamed over the old one,
    under an exclusive lock so concurrent commits cannot interleave.
    """
    path = _checkpoint_path()
    line = f"{seq}:{event_hash}:{_head_signature(seq, event_hash)}\n"
    with _exclusive(path.with_name("audit.head.lock")):
        current = read_checkpoint()
        if current is not None and current[0] >= seq:
            return
        tmp = path.with_name(f"audit.head.{os.getpid()}.{threading.get_ident()}.{uuid.uuid4().hex}.tmp")
        try:
            tmp.write_text(line)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        _witness(line)


def read_checkpoint() -> tuple[int, str] | None:
    """The checkpoint's ``(seq, hash)``, or None when it is missing or not signed by this deployment."""
    path = _checkpoint_path()
    if not path.exists():
        return None
    return _parse_head(path.read_text())


def _witness(line: str) -> None:
    path = get_settings().resolved_audit_witness_file
    try:
        created = not path.exists()
        if created:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
        if created and get_settings().audit_witness_append_only:
            _make_append_only(path)
    except OSError:
        # The event is committed; a witness that cannot be written shows up in `tre audit verify`.
        log.exception("could not append the audit head to the witness log %s", path)
    witness_log.info("audit head %s", line.strip())


def _make_append_only(path: Path) -> None:
    # Best effort: needs CAP_LINUX_IMMUTABLE (root) and a filesystem that supports it.
    chattr = shutil.which("chattr")
    if chattr is None:
        return
    with suppress(OSError, subprocess.SubprocessError):
        subprocess.run([chattr, "+a", str(path)], capture_output=True, check=False, timeout=5)


def read_witness() -> tuple[int, str] | None:
    """The newest head in the witness log signed by this deployment, or None (missing, or nothing valid).

    Lines are appended in increasing order under the checkpoint's lock, so the newest is the last valid one.
    """
    path = get_settings().resolved_audit_witness_file
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - 65_536))
            tail = handle.read().decode(errors="replace")
    except OSError:
        return None
    for line in reversed(tail.splitlines()):
        head = _parse_head(line)
        if head is not None:
            return head
    return None


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
#: SQLite: the driver connection the transaction appended on (see _released_for_real).
_SQLITE_CONNECTION = "tre_audit_sqlite_connection"


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
        # A savepoint was released: nothing is committed before the outermost transaction is - except
        # on SQLite when the savepoint opened the database's transaction (pysqlite begins none before
        # it), whose release commits for real. Then the checkpoint moves now (it never goes back).
        head = session.info.get(_HEAD)
        if head is not None and _released_for_real(session):
            write_checkpoint(*head)
        return
    session.info.pop(_KEPT, None)
    head = session.info.pop(_HEAD, None)
    if head is not None:
        write_checkpoint(*head)


def _released_for_real(session: Session) -> bool:
    # The driver's own connection, noted by record(): SQLAlchemy allows no SQL in after_commit, but
    # pysqlite says whether the database is still in a transaction.
    dbapi = session.info.get(_SQLITE_CONNECTION)
    return dbapi is not None and not dbapi.in_transaction


@sa_event.listens_for(Session, "after_transaction_end")
def _end_transaction(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is not None:
        return
    for key in (_HEAD, _UNDONE, _FLUSHED, _SQLITE_CONNECTION):
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
