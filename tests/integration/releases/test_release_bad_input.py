"""Bad input to the airlock: a clear error, nothing released, nothing lost from the ledgers.

Bad data (an empty frame, an all-missing value column, text where numbers belong) reaches the server's
re-check and fails the request with a sentence saying why; checkers cannot approve it, and the released-
table and privacy ledgers are unchanged. A 1 GB upload is refused while it streams in, by a real server.
"""

from __future__ import annotations

import json
import os
import re
import select
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from airlock_helpers import count_table, stage_table
from airlock_world import Airlock, microdata
from fastapi.testclient import TestClient
from sqlalchemy import func
from sqlalchemy import select as sql_select
from sqlalchemy.orm import Session

from tre_lib.outputs.specs import TableSpec, table_to_csv, write_data
from tre_platform.actor import Actor
from tre_platform.api.releases import service
from tre_platform.api.releases.models import (
    PrivacyLedgerEntry,
    ReleasedTable,
    ReleaseFile,
    ReleaseState,
)
from tre_platform.api.releases.schemas import ReleaseCreate
from tre_platform.errors import Conflict
from tre_platform.hub.local import serve_control_plane

GIB = 1 << 30


def _ledger_sizes(session: Session) -> tuple[int, int]:
    return (
        session.scalar(sql_select(func.count()).select_from(ReleasedTable)) or 0,
        session.scalar(sql_select(func.count()).select_from(PrivacyLedgerEntry)) or 0,
    )


def _stage(session: Session, airlock: Airlock, frame: pd.DataFrame, spec: TableSpec) -> str:
    # What a researcher would stage: a (harmless-looking) table and the data it claims to come from.
    table = pd.DataFrame({"f": [20, 20], "All": [40, 40]}, index=pd.Index(["north", "All"], name="region"))
    request = stage_table(
        session,
        Actor.of(airlock.researcher),
        airlock.project_id,
        title="bad input",
        name="t.csv",
        content=table_to_csv(table),
        spec=spec.to_dict(),
        data=write_data(frame),
    )
    session.commit()
    return request.id


BAD_DATA = {
    "empty frame": (
        microdata().head(0)[["region", "sex"]],
        TableSpec(index=("region",), columns=("sex",)),
        "no rows",
    ),
    "all-NaN value column": (
        microdata().assign(cost=np.nan)[["region", "sex", "cost"]],
        TableSpec(index=("region",), columns=("sex",), values="cost", aggfunc="sum"),
        "no non-missing values",
    ),
    "non-numeric values": (
        microdata().assign(cost="expensive")[["region", "sex", "cost"]],
        TableSpec(index=("region",), columns=("sex",), values="cost", aggfunc="mean"),
        "must be numeric",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_DATA))
def test_bad_data_fails_the_server_check_with_a_sentence_and_nothing_is_released(
    airlock: Airlock, session: Session, case: str
) -> None:
    frame, spec, message = BAD_DATA[case]
    before = _ledger_sizes(session)
    request_id = _stage(session, airlock, frame, spec)
    researcher = Actor.of(airlock.researcher)
    request = service.submit(session, researcher, request_id)
    session.commit()
    (item,) = request.files
    assert item.status == "fail" and request.check_status == "fail"
    findings = " ".join(item.server_check["findings"])
    assert message in findings and "Traceback" not in findings
    with pytest.raises(Conflict, match="cannot be approved"):
        service.review(session, Actor.of(airlock.checkers[0]), request_id, "approve")
    session.rollback()
    assert request.state is ReleaseState.in_review
    assert _ledger_sizes(session) == before


# A 1 GB upload, streamed to a real server ---------------------------------------------------------------


@pytest.fixture
def server(db_url: str, tmp_path: Path) -> Iterator[tuple[int, int]]:
    """uvicorn serving the application on a loopback port, on the test database: (port, pid)."""
    with serve_control_plane(os.environ, tmp_path / "server.log") as (url, process):
        yield int(url.rsplit(":", 1)[1]), process.pid


def _peak_rss(pid: int) -> int:
    """The process's peak resident memory in bytes (VmHWM)."""
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"VmHWM:\s+(\d+) kB", status)
    assert found is not None
    return int(found.group(1)) * 1024


def _gigabyte_body(boundary: str, size: int) -> Iterator[bytes]:
    """A multipart form staging a ``size``-byte "table", produced chunk by chunk (never held whole)."""
    fields = {"name": "huge.csv", "kind": "text"}
    for key, value in fields.items():
        yield (f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n').encode()
    yield (
        f'--{boundary}\r\nContent-Disposition: form-data; name="content"; filename="huge.txt"\r\n'
        "Content-Type: text/plain\r\n\r\n"
    ).encode()
    chunk = b"x" * (1 << 20)
    for _ in range(size // len(chunk)):
        yield chunk
    yield f"\r\n--{boundary}--\r\n".encode()


def _stream(port: int, path: str, token: str, body: Iterator[bytes]) -> tuple[int, bytes, int]:
    """POST ``body`` with chunked transfer encoding; stop sending as soon as the server answers.

    Returns (HTTP status, response bytes, request bytes sent).
    """
    boundary = "tre-bad-input-boundary"
    sent = 0
    response = b""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n"
        )
        sock.sendall(head.encode())
        try:
            for piece in body:
                readable, _, _ = select.select([sock], [], [], 0)
                if readable:
                    break
                sock.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                sent += len(piece)
            else:
                sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server refused and closed the connection while we were still sending
        sock.settimeout(30)
        try:
            while b"\r\n\r\n" not in response or not _complete(response):
                got = sock.recv(65536)
                if not got:
                    break
                response += got
        except (ConnectionResetError, TimeoutError):
            pass
    status = int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/1.1") else 0
    return status, response, sent


def _complete(response: bytes) -> bool:
    head, _, rest = response.partition(b"\r\n\r\n")
    found = re.search(rb"content-length: (\d+)", head, re.IGNORECASE)
    return found is not None and len(rest) >= int(found.group(1))


@pytest.mark.slow
def test_a_one_gigabyte_upload_is_refused_while_streaming_with_bounded_server_memory(
    airlock: Airlock, session: Session, server: tuple[int, int]
) -> None:
    port, pid = server
    request = service.create_request(
        session, Actor.of(airlock.researcher), ReleaseCreate(project_id=airlock.project_id, title="huge")
    )
    session.commit()
    with urllib.request.urlopen(
        urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v1/releases/{request.id}", headers=airlock.headers("researcher")
        ),
        timeout=30,
    ) as warm:
        assert warm.status == 200
    before = _peak_rss(pid)
    status, response, sent = _stream(
        port,
        f"/api/v1/releases/{request.id}/files",
        airlock.tokens["researcher"],
        _gigabyte_body("tre-bad-input-boundary", GIB),
    )
    assert status == 413, response[:500]
    body = json.loads(response.partition(b"\r\n\r\n")[2])
    assert "larger than the airlock's limit" in json.dumps(body)
    assert sent < GIB // 4  # refused long before the end of the stream
    assert _peak_rss(pid) - before < 128 * (1 << 20)  # never held the upload in memory
    session.expire_all()
    assert session.scalar(sql_select(func.count()).select_from(ReleaseFile)) == 0
    assert service.get_request(session, Actor.of(airlock.researcher), request.id).files == []


def test_data_larger_than_the_general_body_limit_but_within_the_airlock_policy_is_staged(
    airlock: Airlock, client: TestClient
) -> None:
    # The airlock's own limit (the file policy's) governs its uploads, not the API's 1 MiB body limit.
    rng = np.random.default_rng(3)
    frame = microdata(n=120_000).assign(cost=rng.random(120_000))
    content, spec, _ = count_table(frame)
    data = write_data(frame[["region", "sex", "cost"]])
    assert len(data) > 1_048_576
    created = client.post(
        "/api/v1/releases",
        json={"project_id": airlock.project_id, "title": "big data"},
        headers=airlock.headers("researcher"),
    )
    assert created.status_code == 201, created.text
    staged = client.post(
        f"/api/v1/releases/{created.json()['id']}/files",
        data={"name": "t.csv", "kind": "table", "spec": json.dumps(spec)},
        files={"content": ("t.csv", content), "data": ("d.parquet", data)},
        headers=airlock.headers("researcher"),
    )
    assert staged.status_code == 201, staged.text
