"""The control plane under load: Locust users of every role on loopback, SQLite and PostgreSQL, and a floor.

For each database a demo control plane (``tre up --demo``, the same seeded world) is started with uvicorn
in its own process, and Locust (in this process) runs mixed workflows as each role at once:

- researcher (alice): list projects, datasets and release requests, open one, stage a text output into a
  draft request of her own (a write: one audit event each);
- output checker (checker1): list the requests in review, open each;
- data owner (owner-health): list datasets and agreements, open one dataset;
- administrator (admin): list users, organisations and the newest audit events, and grant an
  accreditation (a write).

The floor is a plain FastAPI app in its own uvicorn process serving the same read bodies from memory (no
database, no authentication, no audit): what the machine and the HTTP stack give at best. Each target is
driven with an increasing number of simultaneous users; per step the table shows requests/s, p50 and p99
latency and errors (goal 0: a 503 "busy, retry" counts as an error), and the summary says where each
target saturates (the first step whose throughput is within 10 % of the previous one's).

    .venv/bin/python bench/load_bench.py [--users 1,5,20,50] [--seconds 15] [--db sqlite,postgres]

PostgreSQL is the server on 127.0.0.1:5432, database ``test`` (TRE_BENCH_POSTGRES_URL to change it); a
fresh schema is created and dropped.
"""

# ruff: noqa: I001  (Locust patches the standard library for gevent on import: it must come first)
from __future__ import annotations

from locust import HttpUser, between, task
from locust.env import Environment
import gevent

import argparse
import itertools
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import httpx
from rich.console import Console
from rich.table import Table

POSTGRES_URL = os.environ.get("TRE_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
API = "/api/v1"
#: Demo users who play each role.
ROLE_USERS = {"researcher": "alice", "checker": "checker1", "owner": "owner-health", "admin": "admin"}
BIN = Path(sys.executable).parent
console = Console()

FLOOR_APP = """
import json, os
from fastapi import FastAPI
from fastapi.responses import Response
with open(os.environ["TRE_FLOOR_BODIES"]) as handle:
    bodies = json.load(handle)
app = FastAPI()

@app.get("/healthz")
def healthz() -> dict:
    return {"status": "ok"}

def serve(path: str):
    body = bodies[path].encode()
    @app.get(path)
    def read() -> Response:
        return Response(body, media_type="application/json")

for path in bodies:
    serve(path)
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _uvicorn(args: list[str], env: dict[str, str], log: Path) -> Iterator[str]:
    port = _free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                *(str(BIN / "python"), "-m", "uvicorn", *args, "--host", "127.0.0.1", "--port", str(port)),
                *("--log-level", "warning", "--no-access-log"),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited:\n{log.read_text()}")
            try:
                httpx.get(f"{url}/healthz", timeout=5)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


@dataclass
class World:
    """What the users need: a token per role and the ids they work on."""

    tokens: dict[str, str]
    project_id: str
    colleague_id: str
    reads: dict[str, str]


def _tre(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([str(BIN / "tre"), *args], env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"tre {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def _seed(env: dict[str, str]) -> dict[str, str]:
    _tre(env, "up", "--demo", "--no-serve")
    return {
        role: _tre(env, "user", "token", user, "--name", "bench").strip() for role, user in ROLE_USERS.items()
    }


def _world(url: str, tokens: dict[str, str]) -> World:
    def get(role: str, path: str) -> Any:
        response = httpx.get(f"{url}{path}", headers={"Authorization": f"Bearer {tokens[role]}"}, timeout=60)
        response.raise_for_status()
        return response

    projects = get("researcher", f"{API}/projects").json()
    active = next(p for p in projects if p["state"] == "active")
    users = get("admin", f"{API}/users").json()
    colleague = next(u for u in users if u["username"] == "bob")
    reads = {
        f"{API}/projects": get("researcher", f"{API}/projects").text,
        f"{API}/datasets": get("owner", f"{API}/datasets").text,
        f"{API}/releases": get("checker", f"{API}/releases").text,
        f"{API}/users": get("admin", f"{API}/users").text,
    }
    return World(tokens, active["id"], colleague["id"], reads)


class _RoleUser(HttpUser):
    abstract = True
    wait_time = between(0.05, 0.2)
    world: ClassVar[World]
    role: ClassVar[str]

    def on_start(self) -> None:
        self.client.headers["Authorization"] = f"Bearer {self.world.tokens[self.role]}"


class Researcher(_RoleUser):
    role = "researcher"
    draft: str | None = None

    def on_start(self) -> None:
        super().on_start()
        created = self.client.post(
            f"{API}/releases",
            json={"project_id": self.world.project_id, "title": "load test", "justification": "bench"},
            name="POST /releases",
        )
        self.draft = created.json().get("id") if created.status_code == 201 else None

    @task(4)
    def browse(self) -> None:
        self.client.get(f"{API}/projects", name="GET /projects")
        self.client.get(f"{API}/datasets", name="GET /datasets")
        found = self.client.get(f"{API}/releases", name="GET /releases")
        if found.status_code == 200 and found.json():
            self.client.get(f"{API}/releases/{found.json()[0]['id']}", name="GET /releases/{id}")

    @task(1)
    def stage(self) -> None:
        if self.draft is None:
            return
        n = random.randrange(1_000_000)
        self.client.post(
            f"{API}/releases/{self.draft}/files",
            data={"name": f"note-{n}.txt", "kind": "text"},
            files={"content": (f"note-{n}.txt", b"mean age was about 40")},
            name="POST /releases/{id}/files",
        )


class Checker(_RoleUser):
    role = "checker"

    @task
    def review_queue(self) -> None:
        found = self.client.get(f"{API}/releases?state=in_review", name="GET /releases?state=in_review")
        for request in (found.json() if found.status_code == 200 else [])[:3]:
            self.client.get(f"{API}/releases/{request['id']}", name="GET /releases/{id}")


class Owner(_RoleUser):
    role = "owner"

    @task
    def catalogue(self) -> None:
        found = self.client.get(f"{API}/datasets", name="GET /datasets")
        self.client.get(f"{API}/agreements", name="GET /agreements")
        if found.status_code == 200 and found.json():
            self.client.get(f"{API}/datasets/{found.json()[0]['id']}", name="GET /datasets/{id}")


class Admin(_RoleUser):
    role = "admin"

    @task(4)
    def oversee(self) -> None:
        self.client.get(f"{API}/users", name="GET /users")
        self.client.get(f"{API}/orgs", name="GET /orgs")
        self.client.get(f"{API}/audit/events?limit=20", name="GET /audit/events")

    @task(1)
    def accredit(self) -> None:
        self.client.post(
            f"{API}/users/{self.world.colleague_id}/accreditations",
            json={
                "scheme": f"DEA-{uuid.uuid4().hex[:6]}",
                "granted_on": "2026-01-01",
                "expires_on": "2030-01-01",
            },
            name="POST /users/{id}/accreditations",
        )


class Floor(HttpUser):
    wait_time = between(0.05, 0.2)
    paths: ClassVar[list[str]] = []

    @task
    def read(self) -> None:
        self.client.get(random.choice(self.paths), name="GET (floor)")


@dataclass
class Step:
    users: int
    rps: float
    p50: float
    p99: float
    requests: int
    errors: int


def _drive(host: str, user_classes: list[type[HttpUser]], users: int, seconds: float) -> Step:
    env = Environment(user_classes=user_classes, host=host)
    runner = env.create_local_runner()
    runner.start(users, spawn_rate=max(users, 1))
    gevent.sleep(2)  # spawned and warm
    env.stats.reset_all()
    gevent.sleep(seconds)
    total = env.stats.total
    step = Step(
        users,
        total.num_requests / seconds,
        total.get_response_time_percentile(0.5) or 0.0,
        total.get_response_time_percentile(0.99) or 0.0,
        total.num_requests,
        total.num_failures,
    )
    runner.quit()
    return step


def _saturation(steps: list[Step]) -> str:
    for previous, step in itertools.pairwise(steps):
        if step.rps < previous.rps * 1.1:
            return (
                f"saturates at ~{max(previous.rps, step.rps):.0f} req/s (no gain from {previous.users} to "
                f"{step.users} users; p99 {previous.p99:.0f} → {step.p99:.0f} ms)"
            )
    return "not saturated at the largest step"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", default="1,5,20,50", help="simultaneous users per step")
    parser.add_argument("--seconds", type=float, default=15.0, help="measured seconds per step")
    parser.add_argument("--db", default="sqlite,postgres", help="sqlite, postgres or both")
    args = parser.parse_args()
    steps_users = [int(u) for u in args.users.split(",")]
    results: dict[str, list[Step]] = {}
    roles: list[type[HttpUser]] = [Researcher, Checker, Owner, Admin]
    for backend in args.db.split(","):
        with tempfile.TemporaryDirectory(prefix="tre-load-") as tmp:
            root = Path(tmp)
            env = {**os.environ, "TRE_DATA_DIR": str(root / "data"), "TRE_ENV": "dev"}
            env["TRE_AUDIT_WITNESS_FILE"] = str(root / "witness" / "audit-witness.log")
            env["TRE_AUDIT_WITNESS_APPEND_ONLY"] = "false"
            schema = f"load_{uuid.uuid4().hex[:10]}"
            if backend == "postgres":
                from sqlalchemy import create_engine, text

                admin = create_engine(POSTGRES_URL)
                with admin.begin() as conn:
                    conn.execute(text(f'CREATE SCHEMA "{schema}"'))
                env["TRE_DATABASE_URL"] = f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
            try:
                console.print(f"[bold]{backend}[/]: seeding the demo world …")
                tokens = _seed(env)
                with _uvicorn(
                    ["--factory", "tre_platform.api.app:create_app"], env, root / "server.log"
                ) as url:
                    world = _world(url, tokens)
                    _RoleUser.world = world
                    for users in steps_users:
                        step = _drive(url, roles, users, args.seconds)
                        results.setdefault(f"tre on {backend}", []).append(step)
                        console.print(f"  {users} users: {step.rps:.1f} req/s, {step.errors} errors")
                    if "floor" not in {k.split()[0] for k in results}:
                        bodies = root / "bodies.json"
                        bodies.write_text(json.dumps(world.reads))
                        (root / "floor_app.py").write_text(FLOOR_APP)
                        Floor.paths = list(world.reads)
                        floor_env = {
                            **env,
                            "PYTHONPATH": f"{root}{os.pathsep}{env.get('PYTHONPATH', '')}",
                            "TRE_FLOOR_BODIES": str(bodies),
                        }
                        with _uvicorn(["floor_app:app"], floor_env, root / "floor.log") as floor_url:
                            for users in steps_users:
                                results.setdefault("floor (plain FastAPI)", []).append(
                                    _drive(floor_url, [Floor], users, args.seconds)
                                )
            finally:
                if backend == "postgres":
                    with admin.begin() as conn:
                        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
                    admin.dispose()
    _report(results)


def _report(results: dict[str, list[Step]]) -> None:
    table = Table(title="mixed workflows of every role on loopback (Locust)")
    for column in ("target", "users", "req/s", "p50 ms", "p99 ms", "requests", "errors", "vs floor"):
        table.add_column(column, justify="right" if column != "target" else "left")
    floor = {s.users: s for s in results.get("floor (plain FastAPI)", [])}
    for target, steps in results.items():
        for step in steps:
            ratio = (
                f"{step.rps / floor[step.users].rps:.2f}x"
                if step.users in floor and floor[step.users].rps
                else ""
            )
            table.add_row(
                target,
                str(step.users),
                f"{step.rps:.1f}",
                f"{step.p50:.0f}",
                f"{step.p99:.0f}",
                str(step.requests),
                str(step.errors),
                ratio,
            )
    console.print(table)
    for target, steps in results.items():
        console.print(f"{target}: {_saturation(steps)}; errors {sum(s.errors for s in steps)}")


if __name__ == "__main__":
    main()
