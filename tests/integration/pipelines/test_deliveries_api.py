"""Deliveries over the API (POST /api/v1/datasets/{name}/deliveries) and the upload store behind it.

Real app, real database, real files: the body is streamed to the landing zone by ``store_upload`` /
``DeliveryUpload`` and ingested by the same pipeline as the CLI.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from factories import make_org, make_token, make_user
from fastapi.testclient import TestClient
from pipeline_factories import IngestWorld
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from tre_platform.api.audit.models import AuditEvent
from tre_platform.api.datasets.models import DatasetVersion
from tre_platform.api.users.models import ApiToken, User
from tre_platform.clock import clock
from tre_platform.pipelines import DeliveryEmpty, DeliveryTooLarge, DeliveryUpload, store_upload
from tre_platform.settings import get_settings

URL = "/api/v1/datasets/episodes_fast/deliveries"


def _csv(episodes: tuple[pd.DataFrame, pd.DataFrame], rows: int | None = None) -> bytes:
    frame = episodes[0].drop(columns=["given_name", "family_name"])
    return frame.iloc[:rows].to_csv(index=False).encode()


@pytest.fixture
def api(session: Session, ingest_world: IngestWorld) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """A client of the real app on the test database, and the data owner's bearer header."""
    from tre_platform.api.app import create_app

    owner = session.get(User, ingest_world.owner.user_id)
    assert owner is not None
    token = make_token(session, owner)
    session.commit()
    with TestClient(create_app(get_settings()), raise_server_exceptions=False) as client:
        yield client, {"Authorization": f"Bearer {token}"}


def _uploads(data_dir: Path) -> list[Path]:
    root = data_dir / "landing" / "uploads"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def _versions(session: Session, dataset_id: str) -> list[int]:
    session.expire_all()
    return list(
        session.scalars(select(DatasetVersion.version).where(DatasetVersion.dataset_id == dataset_id))
    )


def test_store_upload_streams_chunks_to_the_landing_zone_with_their_hash(tmp_path: Path) -> None:
    settings = get_settings()
    chunks = [b"a,b\n", b"1,2\n" * 1000, b"3,4\n"]
    stored = store_upload(iter(chunks), filename="../../etc/pass wd.csv", max_bytes=10_000, settings=settings)
    body = b"".join(chunks)
    assert stored.sha256 == hashlib.sha256(body).hexdigest()
    assert stored.size == len(body)
    assert stored.path.read_bytes() == body
    # A client's file name never becomes a path outside the landing zone.
    assert stored.path.parent.parent == settings.resolved_data_dir / "landing" / "uploads"
    assert stored.path.name == "pass_wd.csv"
    assert stored.filename == "../../etc/pass wd.csv"
    assert [p.name for p in stored.path.parent.iterdir()] == ["pass_wd.csv"]
    for hostile, kept in (
        ("..", "delivery"),
        ("C:\\data\\.hidden.csv", "hidden.csv"),
        ("a\nb.csv", "a_b.csv"),
    ):
        assert store_upload(iter([b"x"]), filename=hostile, max_bytes=10, settings=settings).path.name == kept


def test_store_upload_refuses_oversize_and_empty_uploads_and_keeps_nothing() -> None:
    settings = get_settings()
    with pytest.raises(DeliveryTooLarge, match=r"the limit is 100 bytes \(TRE_MAX_UPLOAD_BYTES\)") as caught:
        store_upload(iter([b"x" * 60, b"y" * 60]), filename="big.csv", max_bytes=100, settings=settings)
    assert caught.value.status_code == 413
    with pytest.raises(DeliveryEmpty, match=r"empty\.csv is empty"):
        store_upload(iter([b"", b""]), filename="empty.csv", max_bytes=100, settings=settings)
    assert _uploads(settings.resolved_data_dir) == []


def test_a_raw_csv_body_is_ingested_as_the_next_version(
    api: tuple[TestClient, dict[str, str]],
    session: Session,
    ingest_world: IngestWorld,
    episodes: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    client, auth = api
    body = _csv(episodes)
    response = client.post(
        URL, content=body, params={"filename": "episodes.csv"}, headers={**auth, "Content-Type": "text/csv"}
    )
    assert response.status_code == 201, response.text
    out = response.json()
    assert (out["version"], out["row_count"]) == (1, len(episodes[0]))
    assert out["content_sha256"] == hashlib.sha256(body).hexdigest()
    assert out["source_name"] == "episodes.csv"
    assert out["match_report"]["demographic"]["n_records"] == len(episodes[0])
    assert _versions(session, ingest_world.fast.id) == [1]
    # The upload was moved (not copied) into the dataset's landing directory.
    assert _uploads(ingest_world.data_dir) == []
    landed = list((ingest_world.data_dir / "landing" / "episodes_fast").rglob("episodes.csv"))
    assert [p.read_bytes() for p in landed] == [body]

    again = client.post(URL, content=body, headers={**auth, "Content-Type": "text/csv"})
    assert again.status_code == 409
    assert "byte-identical to version 1" in again.json()["message"]
    assert _uploads(ingest_world.data_dir) == []


def test_a_multipart_upload_is_streamed_and_ingested(
    api: tuple[TestClient, dict[str, str]],
    session: Session,
    ingest_world: IngestWorld,
    episodes: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    client, auth = api
    body = _csv(episodes, 50)
    response = client.post(
        URL,
        headers=auth,
        data={"note": "ignored"},
        files={"file": ("march.csv", body, "text/csv")},
    )
    assert response.status_code == 201, response.text
    assert (response.json()["row_count"], response.json()["source_name"]) == (50, "march.csv")
    assert response.json()["content_sha256"] == hashlib.sha256(body).hexdigest()

    missing = client.post(URL, headers=auth, files={"other": ("x.csv", body, "text/csv")})
    assert missing.status_code == 422
    assert "no complete file field named 'file'" in missing.json()["message"]
    assert _uploads(ingest_world.data_dir) == []


def test_an_invalid_delivery_returns_every_problem_with_row_and_column(
    api: tuple[TestClient, dict[str, str]],
    session: Session,
    ingest_world: IngestWorld,
    episodes: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    client, auth = api
    frame = episodes[0].drop(columns=["given_name", "family_name"]).iloc[:20].astype(object)
    frame.loc[2, "sex"] = "Q"
    frame.loc[5, "length_of_stay"] = "seven"
    response = client.post(URL, content=frame.to_csv(index=False).encode(), headers=auth)
    assert response.status_code == 422
    out = response.json()
    assert out["error"] == "delivery_invalid"
    assert "nothing was published" in out["message"]
    found = {
        (p["column"], p["problem"]): [e["row"] for e in p["examples"]] for p in out["report"]["problems"]
    }
    assert found == {("sex", "allowed"): [3], ("length_of_stay", "type"): [6]}
    assert _versions(session, ingest_world.fast.id) == []

    empty = client.post(URL, content=b"", headers=auth)
    assert empty.status_code == 422
    assert empty.json()["error"] == "empty_file"

    latin1 = client.post(URL, content="nhs_number,sex\n1,Zoë\n".encode("latin-1"), headers=auth)
    assert latin1.status_code == 422
    assert {p["problem"] for p in latin1.json()["report"]["problems"]} == {"not_utf8"}
    assert _versions(session, ingest_world.fast.id) == []


def test_an_oversize_delivery_gets_413_naming_the_limit_and_nothing_is_kept(
    session: Session,
    ingest_world: IngestWorld,
    episodes: tuple[pd.DataFrame, pd.DataFrame],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tre_platform.api.app import create_app

    monkeypatch.setenv("TRE_MAX_UPLOAD_BYTES", "4096")
    get_settings.cache_clear()
    owner = session.get(User, ingest_world.owner.user_id)
    assert owner is not None
    auth = {"Authorization": f"Bearer {make_token(session, owner)}"}
    session.commit()
    body = _csv(episodes)
    assert len(body) > 4096
    with TestClient(create_app(get_settings()), raise_server_exceptions=False) as client:
        declared = client.post(URL, content=body, headers=auth)
        # Without Content-Length (chunked), the limit is enforced while the body streams in.
        streamed = client.post(
            URL, content=(body[i : i + 1000] for i in range(0, len(body), 1000)), headers=auth
        )
        small = client.post(URL, content=_csv(episodes, 20), headers=auth)
    for response in (declared, streamed):
        assert response.status_code == 413, response.text
        assert response.json()["error"] == "too_large"
        assert "the limit is 4096 bytes (TRE_MAX_UPLOAD_BYTES)" in response.json()["message"]
    assert "content-length" not in streamed.request.headers
    # The request-body limit (1 MiB) does not apply to deliveries, the upload limit does.
    assert small.status_code == 201, small.text
    session.expire_all()
    refusals = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "dataset.ingest", AuditEvent.decision == "failure")
    ).all()
    assert [r.reasons[0].startswith("the delivery is") for r in refusals] == [True, True]
    assert {r.target_id for r in refusals} == {ingest_world.fast.id}
    assert _uploads(ingest_world.data_dir) == []
    assert _versions(session, ingest_world.fast.id) == [1]


def test_the_policy_engine_refuses_another_organisations_owner_before_the_upload(
    api: tuple[TestClient, dict[str, str]],
    session: Session,
    ingest_world: IngestWorld,
    episodes: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    client, _ = api
    stranger = make_user(
        session, roles=["data_owner"], organisation_id=make_org(session, kind="data_owner").id
    )
    auth = {"Authorization": f"Bearer {make_token(session, stranger)}"}
    session.commit()
    response = client.post(URL, content=_csv(episodes), headers=auth)
    assert response.status_code == 403
    assert response.json()["error"] == "policy_denied"
    assert any("not a data owner" in r for r in response.json()["reasons"])
    session.expire_all()
    # The refusal is audited on the route (access.denied), and as the policy decision itself unless that
    # was written in the request's transaction, which a refusal rolls back.
    denials = session.scalars(select(AuditEvent).where(AuditEvent.decision == "deny")).all()
    assert ("access.denied", f"POST {URL}") in [(d.action, d.target_id) for d in denials]
    assert {d.action for d in denials} <= {"access.denied", "policy.ingest_dataset"}
    assert all("is not a data owner" in d.reasons[0] for d in denials), [d.reasons for d in denials]
    assert not (ingest_world.data_dir / "landing").exists() or _uploads(ingest_world.data_dir) == []
    assert client.post("/api/v1/datasets/nope/deliveries", content=b"a\n1\n", headers=auth).status_code == 404


def test_an_upload_killed_mid_stream_is_swept_by_the_next_one_and_a_live_one_is_not(tmp_path: Path) -> None:
    settings = get_settings()
    root = settings.resolved_data_dir / "landing" / "uploads"
    ready = tmp_path / "ready"
    script = (
        "import pathlib, time\n"
        "from tre_platform.pipelines import DeliveryUpload\n"
        "from tre_platform.settings import get_settings\n"
        "upload = DeliveryUpload(filename='dying.csv', max_bytes=10**9, settings=get_settings())\n"
        "upload.write(b'a,b\\n1,2\\n')\n"
        f"pathlib.Path({str(ready)!r}).write_text('')\n"
        "time.sleep(600)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script])
    while not ready.exists():
        assert child.poll() is None, "the uploading process ended early"
        time.sleep(0.1)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    (dead,) = list(root.iterdir())
    (part,) = list(dead.iterdir())
    old = time.time() - 3600
    os.utime(part, (old, old))  # an hour ago: past the grace for a part file being created

    with DeliveryUpload(filename="live.csv", max_bytes=10**9, settings=settings) as live:
        live.write(b"x,y\n")
        assert not dead.exists()  # the dead upload was swept when this one started
        os.utime(live._part, (old, old))
        stored = store_upload(iter([b"a\n1\n"]), filename="next.csv", max_bytes=100, settings=settings)
        assert live.directory.exists()  # held by a living upload: never swept, however old
        live.write(b"1,2\n")
        stored_live = live.finish()
    assert stored_live.path.read_bytes() == b"x,y\n1,2\n"
    assert stored.path.read_bytes() == b"a\n1\n"


def test_no_database_lock_is_held_while_the_body_streams(
    session: Session, ingest_world: IngestWorld, episodes: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    # Driven through the ASGI interface (the test client reads a body whole before the app starts): half
    # way through the body another connection updates every API token. Had the request kept the write
    # lock its token check took, that update would wait and then fail.
    from tre_platform.api.app import create_app

    owner = session.get(User, ingest_world.owner.user_id)
    assert owner is not None
    token = make_token(session, owner)
    session.commit()
    app = create_app(get_settings())
    body = _csv(episodes)
    halves = [body[: len(body) // 2], body[len(body) // 2 :]]
    wrote: list[int] = []
    sent: list[dict[str, Any]] = []

    def write_elsewhere() -> int:
        with Session(bind=session.get_bind()) as other:
            if other.get_bind().dialect.name == "postgresql":
                other.execute(text("SET LOCAL lock_timeout = '10s'"))
            changed = other.execute(update(ApiToken).values(last_used_at=clock.now())).rowcount
            other.commit()
        return changed

    async def receive() -> dict[str, Any]:
        if len(halves) == 1:
            wrote.append(write_elsewhere())
        if halves:
            chunk = halves.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(halves)}
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": URL,
        "raw_path": URL.encode(),
        "query_string": b"filename=streamed.csv",
        "root_path": "",
        "headers": [(b"authorization", f"Bearer {token}".encode()), (b"content-type", b"text/csv")],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    # In a thread of its own: an earlier test in the same process (Playwright's sync API) may leave an event
    # loop registered on this thread, and asyncio.run() refuses to start inside one.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, app(scope, receive, send)).result()
    assert wrote and wrote[0] >= 1
    assert sent[0]["status"] == 201, sent
    assert json.loads(b"".join(m.get("body", b"") for m in sent[1:]))["source_name"] == "streamed.csv"
