"""Many requests at once against a real control plane: uvicorn on loopback, on the test's real database.

Each test fires one kind of request from many threads at the same moment and checks that every request got
its right answer (never a 500, never a 409 that is not a real conflict; a 503 only with ``Retry-After``),
that exactly as many audit events were written as requests made (counted per kind of request from one
request made alone first), that the chain still verifies, and that ``/healthz`` answered throughout.

``/healthz``'s latencies are printed (run with ``-s`` to see them) but not asserted: this machine is shared.
What is asserted is that it *answered*, within a timeout far longer than any healthy answer needs but far
shorter than the blocked work it runs beside (every worker thread waiting on the database's write lock),
so a server whose event loop waits on the database fails the test, and a slow machine does not.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from factories import CHEAP_HASHER, World, build_world
from sqlalchemy import func, select

from tre_platform.api.audit.models import AuditEvent
from tre_platform.api.audit.service import verify
from tre_platform.api.users.security import use_password_hasher
from tre_platform.db.session import get_engine, make_session_factory, reset_engines

POSTGRES_URL = os.environ.get("TRE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")

#: Only a guard against a hung server; never an assertion about speed.
HANG_GUARD_SECONDS = 300.0
#: /healthz must answer within this while the requests run (a healthy answer takes milliseconds; a loop
#: blocked on the database's write lock waits up to its 10-second busy timeout per request in line).
HEALTH_TIMEOUT_SECONDS = 8.0
#: Requests fired at once in each test (the server's worker pool holds 40 threads).
CONCURRENCY = 40


@dataclass
class Server:
    url: str
    world: World
    log: Path
    env: dict[str, str]
    health: list[float] = field(default_factory=list)

    def headers(self, role: str) -> dict[str, str]:
        return self.world.headers(role)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def _control_plane(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A control plane in its own process on a database of its own (SQLite, or a PostgreSQL schema with
    ``--db postgres``), seeded with the standard world: one per module, as starting one takes a while."""
    from sqlalchemy import create_engine, text

    from tre_platform.db.migrate import upgrade
    from tre_platform.settings import get_settings

    root = tmp_path_factory.mktemp("concurrency")
    data_dir = root / "tre-data"
    data_dir.mkdir()
    postgres = request.config.getoption("--db") == "postgres"
    schema = f"c_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL) if postgres else None
    if admin is not None:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    else:
        url = f"sqlite:///{data_dir / 'tre.db'}"
    env = {
        "TRE_DATA_DIR": str(data_dir),
        "TRE_DATABASE_URL": url,
        "TRE_ENV": "test",
        "TRE_ENFORCE_ON_CHANGE": "false",
        "TRE_AUDIT_WITNESS_APPEND_ONLY": "false",
    }
    log = root / "server.log"
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        mp.delenv("TRE_SECRET_KEY", raising=False)
        get_settings.cache_clear()
        upgrade(url)
        with use_password_hasher(CHEAP_HASHER), make_session_factory(get_engine())() as session:
            world = build_world(session)
            session.commit()
        reset_engines()
        port = _free_port()
        with log.open("wb") as out:
            process = subprocess.Popen(
                [
                    *(sys.executable, "-m", "uvicorn", "--factory", "tre_platform.api.app:create_app"),
                    *("--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"),
                ],
                env=os.environ.copy(),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
    get_settings.cache_clear()
    server = Server(f"http://127.0.0.1:{port}", world, log, env)
    try:
        _wait_until_up(server, process)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if admin is not None:
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()


def _wait_until_up(server: Server, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + HANG_GUARD_SECONDS
    while True:
        if process.poll() is not None:
            pytest.fail(f"the server exited ({process.returncode}):\n{server.log.read_text()}")
        try:
            if httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("the server never answered /healthz")
        time.sleep(0.2)


@pytest.fixture
def db_url(_control_plane: Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The running control plane's database (and data directory), for this process to look at too."""
    from tre_platform.settings import get_settings

    for name, value in _control_plane.env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield _control_plane.env["TRE_DATABASE_URL"]
    reset_engines()


@pytest.fixture
def server(_control_plane: Server, db_url: str) -> Server:
    _control_plane.health.clear()
    return _control_plane


def _events() -> Counter[str]:
    with make_session_factory(get_engine())() as session:
        rows = session.execute(select(AuditEvent.action, func.count()).group_by(AuditEvent.action))
        return Counter({action: count for action, count in rows})


def _chain_ok() -> None:
    with make_session_factory(get_engine())() as session:
        result = verify(session)
    assert result.ok, result.message()


def _storm(
    server: Server, send: Callable[[httpx.Client, int], httpx.Response], n: int = CONCURRENCY
) -> list[httpx.Response]:
    """``n`` calls of ``send`` released at the same moment, while /healthz is polled throughout."""
    start = threading.Barrier(n)
    done = threading.Event()
    failures: list[str] = []

    def poll_health() -> None:
        with httpx.Client(base_url=server.url, timeout=HEALTH_TIMEOUT_SECONDS) as client:
            while not done.is_set():
                began = time.perf_counter()
                try:
                    response = client.get("/healthz")
                except httpx.TimeoutException:
                    failures.append(f"/healthz did not answer within {HEALTH_TIMEOUT_SECONDS} s")
                    continue
                server.health.append(time.perf_counter() - began)
                if response.status_code != 200:
                    failures.append(f"/healthz answered {response.status_code}: {response.text}")
                time.sleep(0.05)

    def one(i: int) -> httpx.Response:
        with httpx.Client(base_url=server.url, timeout=HANG_GUARD_SECONDS) as client:
            start.wait()
            return send(client, i)

    watcher = threading.Thread(target=poll_health)
    watcher.start()
    try:
        with ThreadPoolExecutor(max_workers=n) as pool:
            responses = list(pool.map(one, range(n)))
    finally:
        done.set()
        watcher.join()
    latencies = sorted(server.health)
    if latencies:
        print(
            f"\n/healthz during {n} concurrent requests: {len(latencies)} answers, "
            f"p50 {statistics.median(latencies) * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms"
        )
    assert not failures, failures[:5]
    assert latencies, "/healthz was never asked"
    return responses


def _statuses(responses: list[httpx.Response]) -> Counter[int]:
    return Counter(r.status_code for r in responses)


def _assert_clean(responses: list[httpx.Response], server: Server) -> None:
    """No server error; a 503 only as the documented 'busy, retry' answer."""
    for response in responses:
        assert response.status_code < 500 or response.status_code == 503, (
            response.status_code,
            response.text,
            server.log.read_text()[-3000:],
        )
        if response.status_code == 503:
            assert response.headers.get("retry-after"), response.text
        if response.status_code == 409:
            pytest.fail(f"a 409 where there is no conflict: {response.text}")


def _one_alone(
    server: Server, send: Callable[[httpx.Client, int], httpx.Response], i: int = 0
) -> tuple[int, Counter[str]]:
    """The status and the audit events of one request made alone (the baseline for the storm)."""
    before = _events()
    with httpx.Client(base_url=server.url, timeout=HANG_GUARD_SECONDS) as client:
        status = send(client, i).status_code
    return status, _events() - before


def _times(events: Counter[str], n: int) -> Counter[str]:
    return Counter({action: count * n for action, count in events.items()})


def test_concurrent_denied_requests_each_leave_exactly_one_audit_event(server: Server) -> None:
    """A researcher tries to grant themselves an accreditation (administrators only), 40 times at once."""
    target = server.world.ids["researcher"]
    body = {"scheme": "DEA", "granted_on": "2026-01-01", "expires_on": "2030-01-01"}

    def send(client: httpx.Client, _i: int) -> httpx.Response:
        return client.post(
            f"/api/v1/users/{target}/accreditations", json=body, headers=server.headers("researcher")
        )

    status, per_request = _one_alone(server, send)
    assert status == 403 and per_request == Counter({"access.denied": 1}), per_request
    before = _events()
    responses = _storm(server, send)
    _assert_clean(responses, server)
    assert _statuses(responses) == Counter({403: CONCURRENCY}), _statuses(responses)
    assert _events() - before == _times(per_request, CONCURRENCY)
    _chain_ok()


def test_concurrent_allowed_and_denied_writes_are_all_answered_and_audited(server: Server) -> None:
    """Half the requests are an administrator's accreditations (allowed), half a researcher's (denied)."""
    target = server.world.ids["colleague"]

    def send(client: httpx.Client, i: int) -> httpx.Response:
        body = {"scheme": f"DEA-{i}", "granted_on": "2026-01-01", "expires_on": "2030-01-01"}
        role = "admin" if i % 2 == 0 else "researcher"
        return client.post(f"/api/v1/users/{target}/accreditations", json=body, headers=server.headers(role))

    status, _per_request = _one_alone(server, send, 1)  # odd: the researcher, denied
    assert status == 403
    before = _events()
    responses = _storm(server, send)
    _assert_clean(responses, server)
    statuses = _statuses(responses)
    assert statuses[403] == CONCURRENCY // 2, statuses
    granted = statuses[201]
    assert granted + statuses[503] == CONCURRENCY // 2, statuses
    written = _events() - before
    assert written["access.denied"] == CONCURRENCY // 2
    # Each grant is audited once, in the transaction that made it; a 503 made nothing.
    assert sum(count for action, count in written.items() if action != "access.denied") == granted, written
    _chain_ok()


def test_concurrent_denied_ingests_are_each_refused_and_audited(server: Server) -> None:
    """A researcher tries to upload a delivery to a data owner's dataset, 20 times at once."""
    dataset = server.world.ids["hes"]
    payload = b"nhs_number,age\n1,30\n" * 1000

    def send(client: httpx.Client, _i: int) -> httpx.Response:
        return client.post(
            f"/api/v1/datasets/{dataset}/deliveries?filename=d.csv",
            content=payload,
            headers={**server.headers("researcher"), "Content-Type": "text/csv"},
        )

    status, per_request = _one_alone(server, send)
    assert status in (403, 404) and sum(per_request.values()) >= 1, (status, per_request)
    before = _events()
    responses = _storm(server, send, 20)
    _assert_clean(responses, server)
    assert _statuses(responses) == Counter({status: 20})
    assert _events() - before == _times(per_request, 20)
    _chain_ok()


def test_concurrent_stagings_and_reads_are_all_answered(server: Server) -> None:
    """The analyst stages 20 outputs into one draft release request while 20 reads of it run."""
    request_id = server.world.ids["draft_release"]

    def send(client: httpx.Client, i: int) -> httpx.Response:
        headers = server.headers("analyst")
        if i % 2:
            return client.get(f"/api/v1/releases/{request_id}", headers=headers)
        return client.post(
            f"/api/v1/releases/{request_id}/files",
            data={"name": f"note-{i}.txt", "kind": "text", "description": "a note"},
            files={"content": (f"note-{i}.txt", f"mean age was about 40 ({i})".encode())},
            headers=headers,
        )

    status, per_staging = _one_alone(server, send, -2)  # even: a staging, under a name of its own
    assert status == 201, per_staging
    before = _events()
    responses = _storm(server, send)
    _assert_clean(responses, server)
    reads = [r for i, r in enumerate(responses) if i % 2]
    stagings = [r for i, r in enumerate(responses) if i % 2 == 0]
    assert all(r.status_code == 200 for r in reads), _statuses(reads)
    staged = sum(r.status_code == 201 for r in stagings)
    assert staged + sum(r.status_code == 503 for r in stagings) == len(stagings), _statuses(stagings)
    assert _events() - before == _times(per_staging, staged)
    with httpx.Client(base_url=server.url, timeout=HANG_GUARD_SECONDS) as client:
        files = client.get(f"/api/v1/releases/{request_id}", headers=server.headers("analyst")).json()[
            "files"
        ]
    assert len([f for f in files if f["name"].startswith("note-")]) == staged + 1
    _chain_ok()


def test_concurrent_privacy_budget_charges_are_granted_or_refused_never_crash(server: Server) -> None:
    """Ten DP charges of ε=0.3 at once against a budget of ε=1: three fit, the rest are refused cleanly,
    the ledger never overspends, and each charge or refusal is audited."""
    project = server.world.ids["approved"]
    body = {"dataset_ids": [server.world.ids["lfs"]], "epsilon": 0.3, "description": "a count"}

    def send(client: httpx.Client, _i: int) -> httpx.Response:
        return client.post(
            f"/api/v1/projects/{project}/privacy-budget/charges", json=body, headers=server.headers("analyst")
        )

    before = _events()
    responses = _storm(server, send, 10)
    _assert_clean(responses, server)
    statuses = _statuses(responses)
    assert set(statuses) <= {201, 403, 503}, statuses
    assert statuses[201] == 3, statuses  # 0.9 of the 1.0 fits; a fourth would overspend
    refused = [r.json() for r in responses if r.status_code == 403]
    assert all(r["error"] == "budget_exceeded" for r in refused), refused
    with httpx.Client(base_url=server.url, timeout=HANG_GUARD_SECONDS) as client:
        scopes = client.get(f"/api/v1/projects/{project}/privacy-budget", headers=server.headers("analyst"))
    assert all(s["epsilon_spent"] <= s["epsilon_limit"] + 1e-9 for s in scopes.json()), scopes.json()
    written = _events() - before
    assert sum(written.values()) >= statuses[201] + statuses[403], written
    _chain_ok()
