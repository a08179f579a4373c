"""The audit log is append-only and hash-chained; any edit or deletion is detected by verify()."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import subprocess

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from tre_platform.api.audit.models import GENESIS_HASH, AuditEvent
from tre_platform.api.audit.service import (
    VerifyResult,
    _checkpoint_path,
    canonical,
    read_checkpoint,
    read_witness,
    record,
    verify,
    write_checkpoint,
)
from tre_platform.db.session import make_session_factory
from tre_platform.settings import get_settings


def _write_events(session: Session, n: int = 5) -> None:
    for i in range(n):
        record(
            session,
            actor=f"user{i}",
            action="project.approve" if i % 2 else "dataset.ingest",
            target_type="project",
            target_id=f"p{i}",
            decision="allow",
            reasons=[f"reason {i}"],
            details={"i": i, "note": "héllo ünïcode"},
        )
    session.commit()


def _verify_fresh(engine: Engine) -> VerifyResult:
    with make_session_factory(engine)() as fresh:
        return verify(fresh)


def _drop_guards(engine: Engine) -> None:
    """What an attacker with database access would do first: remove the append-only triggers."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("DROP TRIGGER tre_audit_events_no_update ON audit_events"))
            conn.execute(text("DROP TRIGGER tre_audit_events_no_delete ON audit_events"))
        else:
            conn.execute(text("DROP TRIGGER tre_audit_events_no_update"))
            conn.execute(text("DROP TRIGGER tre_audit_events_no_delete"))


def test_an_untouched_chain_verifies(session: Session) -> None:
    _write_events(session)
    result = verify(session)
    assert result.ok, result.message()
    assert result.checked == 5
    assert result.head_seq == 5


def test_events_link_to_their_predecessor(session: Session) -> None:
    _write_events(session, 3)
    events = session.query(AuditEvent).order_by(AuditEvent.seq).all()
    assert events[0].prev_hash == GENESIS_HASH
    for previous, current in itertools.pairwise(events):
        assert current.prev_hash == previous.hash
        assert current.hash == hashlib.sha256(canonical(current)).hexdigest()


def test_the_database_refuses_updates_and_deletes(session: Session, engine: Engine) -> None:
    _write_events(session, 2)
    session.close()
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(text("UPDATE audit_events SET actor = 'mallory' WHERE seq = 1"))
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_events WHERE seq = 1"))
    assert verify(session).ok


def test_an_edited_event_is_detected(session: Session, engine: Engine) -> None:
    _write_events(session)
    session.close()
    _drop_guards(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_events SET actor = 'mallory' WHERE seq = 3"))
    result = _verify_fresh(engine)
    assert not result.ok
    assert result.broken_seq == 3
    assert "edited" in (result.problem or "")


def test_an_edited_reason_is_detected(session: Session, engine: Engine) -> None:
    _write_events(session)
    session.close()
    _drop_guards(engine)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE audit_events SET reasons = :r WHERE seq = 2"), {"r": json.dumps(["nothing to see"])}
        )
    result = _verify_fresh(engine)
    assert not result.ok and result.broken_seq == 2


def test_a_deleted_event_is_detected(session: Session, engine: Engine) -> None:
    _write_events(session)
    session.close()
    _drop_guards(engine)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_events WHERE seq = 2"))
    result = _verify_fresh(engine)
    assert not result.ok
    assert result.broken_seq == 2
    assert "deleted" in (result.problem or "")


def test_deleting_the_newest_events_is_detected(session: Session, engine: Engine) -> None:
    _write_events(session)
    session.close()
    _drop_guards(engine)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_events WHERE seq >= 4"))
    result = _verify_fresh(engine)
    assert not result.ok
    assert result.broken_seq == 4
    assert "newest events were deleted" in (result.problem or "")


def test_a_head_event_that_is_not_the_one_checkpointed_is_detected(session: Session) -> None:
    """The checkpoint records the newest event's hash as well as its seq: an event at that seq with
    another hash (the tail replaced by a chain of the same length) breaks verification."""
    _write_events(session)
    head = read_checkpoint()
    assert head is not None and head[0] == 5
    _checkpoint_path().unlink()  # write_checkpoint only ever moves forward
    write_checkpoint(5, "0" * 64)
    result = verify(session)
    assert not result.ok
    assert result.broken_seq == 5
    assert "not the event the head checkpoint recorded" in (result.problem or "")


def test_an_altered_checkpoint_file_is_detected(session: Session) -> None:
    """A checkpoint not signed by this deployment is reported, not silently ignored (which would let a
    deleted tail go unnoticed)."""
    _write_events(session)
    path = _checkpoint_path()
    _seq, event_hash, signature = path.read_text().strip().split(":")
    path.write_text(f"9:{event_hash}:{signature}\n")
    result = verify(session)
    assert not result.ok
    assert "not signed by this deployment" in (result.problem or "")
    assert "BROKEN:" in result.message()


def test_deleting_the_checkpoint_is_detected(session: Session) -> None:
    """With events in the log, a missing checkpoint is reported: otherwise deleting it with the tail
    would make a truncated log verify."""
    _write_events(session)
    _checkpoint_path().unlink()
    result = verify(session)
    assert not result.ok
    assert "checkpoint (audit.head in the data directory) is missing" in (result.problem or "")


def test_deleting_the_tail_and_the_checkpoint_is_detected(session: Session, engine: Engine) -> None:
    _write_events(session)
    session.close()
    _drop_guards(engine)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_events WHERE seq >= 4"))
    _checkpoint_path().unlink()
    result = _verify_fresh(engine)
    assert not result.ok
    assert "newest events were deleted" in (result.problem or "")


def test_an_older_genuine_checkpoint_put_back_after_deleting_the_tail_is_detected(
    session: Session, engine: Engine
) -> None:
    """The attacker kept a copy of audit.head from event #3, deletes events #4 and #5 and puts the old
    copy back: a genuine signature, a chain that ends where it says. The witness log saw #5."""
    _write_events(session, 3)
    old_checkpoint = _checkpoint_path().read_bytes()
    _write_events(session, 2)
    session.close()
    _drop_guards(engine)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_events WHERE seq >= 4"))
    _checkpoint_path().write_bytes(old_checkpoint)
    result = _verify_fresh(engine)
    assert not result.ok
    assert "an older checkpoint was put back" in (result.problem or "")
    assert result.broken_seq == 4


def test_deleting_the_witness_log_is_detected(session: Session) -> None:
    _write_events(session)
    get_settings().resolved_audit_witness_file.unlink()
    result = verify(session)
    assert not result.ok
    assert "witness log" in (result.problem or "")


def test_the_witness_log_lives_outside_the_data_directory(session: Session) -> None:
    """Whoever restores or rewrites the data directory does not roll the witness back with it."""
    _write_events(session, 2)
    settings = get_settings()
    witness = settings.resolved_audit_witness_file
    assert not witness.is_relative_to(settings.resolved_data_dir)
    assert witness.read_text().splitlines()[-1].startswith("2:")
    assert read_witness() == read_checkpoint()


def test_an_empty_log_without_checkpoint_verifies(session: Session) -> None:
    result = verify(session)
    assert result.ok, result.message()
    assert result.checked == 0


def test_a_recomputed_chain_is_detected_by_its_signatures(session: Session, engine: Engine) -> None:
    _write_events(session)
    session.close()
    _drop_guards(engine)
    # The attacker edits event 2 and recomputes every hash after it, but cannot sign without the key.
    with make_session_factory(engine)() as fresh:
        events = fresh.query(AuditEvent).order_by(AuditEvent.seq).all()
        fresh.expunge_all()
    events[1].actor = "mallory"
    prev = events[0].hash
    for event in events[1:]:
        event.prev_hash = prev
        event.hash = hashlib.sha256(canonical(event)).hexdigest()
        prev = event.hash
    rows = [(e.seq, e.actor, e.prev_hash, e.hash) for e in events]
    with engine.begin() as conn:
        # Shift hashes via temporary values to keep the unique constraints satisfied mid-update.
        for seq, actor, _prev_hash, _event_hash in rows:
            conn.execute(
                text("UPDATE audit_events SET actor=:a, prev_hash=:p, hash=:h WHERE seq=:s"),
                {"a": actor, "p": "tmp" + str(seq), "h": "tmph" + str(seq), "s": seq},
            )
        for seq, _actor, prev_hash, event_hash in rows:
            conn.execute(
                text("UPDATE audit_events SET prev_hash=:p, hash=:h WHERE seq=:s"),
                {"p": prev_hash, "h": event_hash, "s": seq},
            )
    result = _verify_fresh(engine)
    assert not result.ok
    assert result.broken_seq == 2
    assert "signature" in (result.problem or "")


def test_an_event_rolled_back_with_its_change_leaves_no_trace(session: Session) -> None:
    _write_events(session, 2)
    record(session, actor="x", action="project.create", target_id="p9")
    session.rollback()
    result = verify(session)
    assert result.ok and result.checked == 2


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("chattr") is None, reason="chattr +a needs root")
def test_the_witness_log_is_made_append_only_where_it_can_be(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRE_AUDIT_WITNESS_APPEND_ONLY", "true")
    get_settings.cache_clear()
    witness = get_settings().resolved_audit_witness_file
    try:
        _write_events(session, 1)
        attributes = subprocess.run(["lsattr", str(witness)], capture_output=True, text=True).stdout
        if not attributes:
            pytest.skip("this filesystem has no file attributes")
        assert "a" in attributes.split()[0]
        with pytest.raises(PermissionError):
            witness.write_text("")  # truncating is refused, even to root
        _write_events(session, 1)  # appending still works
        assert read_witness() == read_checkpoint()
    finally:
        subprocess.run(["chattr", "-a", str(witness)], check=False)


def test_tre_audit_verify_fails_when_the_checkpoint_was_deleted(session: Session) -> None:
    from typer.testing import CliRunner

    from tre_platform.cli import app

    _write_events(session)
    session.close()
    assert CliRunner().invoke(app, ["audit", "verify"]).exit_code == 0
    _checkpoint_path().unlink()
    result = CliRunner().invoke(app, ["audit", "verify"])
    assert result.exit_code == 2
    assert "BROKEN" in result.stderr and "audit.head" in result.stderr and "missing" in result.stderr


def test_checkpoints_written_by_many_threads_at_once_never_collide_or_go_back(session: Session) -> None:
    """Each writer has its own temporary file and the lock orders them: the newest head wins, and the
    witness log only ever grows."""
    from concurrent.futures import ThreadPoolExecutor

    heads = [(seq, hashlib.sha256(str(seq).encode()).hexdigest()) for seq in range(1, 41)]
    with ThreadPoolExecutor(max_workers=20) as pool:
        list(pool.map(lambda head: write_checkpoint(*head), heads))
    assert read_checkpoint() == heads[-1]
    assert read_witness() == heads[-1]
    witnessed = [
        int(line.split(":")[0]) for line in get_settings().resolved_audit_witness_file.read_text().split()
    ]
    assert witnessed == sorted(witnessed) and len(set(witnessed)) == len(witnessed)
    assert not list(_checkpoint_path().parent.glob("audit.head.*.tmp"))
