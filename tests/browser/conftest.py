"""A real server and a real browser for the Playwright tests, one of each per test session.

The server is uvicorn running ``create_app`` in a subprocess on a free loopback port, on a SQLite database
in a temporary data directory (with ``--db postgres``, a PostgreSQL schema of its own) seeded with the demo
world (``tre_platform.demo.seed``). The browser is Debian's chromium, driven headless by Playwright; it is
never downloaded (no ``playwright install``). Screenshots go to ``test-artifacts/screenshots/`` (git-ignored).
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyotp
import pytest

from tre_platform.hub.local import serve_control_plane

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


@dataclass(frozen=True)
class Login:
    username: str
    password: str
    totp_secret: str | None

    def code(self) -> str:
        assert self.totp_secret, f"{self.username} has no second factor"
        return pyotp.TOTP(self.totp_secret).now()


@dataclass(frozen=True)
class DemoServer:
    url: str
    data_dir: Path
    env: dict[str, str]
    logins: dict[str, Login]


@pytest.fixture(scope="session")
def _browser_database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The demo server's database URL: a SQLite file, or with ``--db postgres`` a schema of its own."""
    if request.config.getoption("--db") != "postgres":
        yield f"sqlite:///{tmp_path_factory.mktemp('browser-db') / 'tre.db'}"
        return
    from sqlalchemy import create_engine, text

    base = os.environ.get("TRE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    schema = f"b_{secrets.token_hex(6)}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    yield f"{base}?options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(scope="session")
def demo_server(tmp_path_factory: pytest.TempPathFactory, _browser_database: str) -> Iterator[DemoServer]:
    """uvicorn serving the demo world; ``env`` points this process's settings at the same data."""
    from tre_platform.db.migrate import upgrade
    from tre_platform.db.session import reset_engines, session_scope
    from tre_platform.demo.seed import seed
    from tre_platform.settings import get_settings

    data_dir = tmp_path_factory.mktemp("browser-data")
    env = {
        "TRE_DATA_DIR": str(data_dir),
        "TRE_DATABASE_URL": _browser_database,
        "TRE_ENV": "test",
        "TRE_SECRET_KEY": "browser-" + secrets.token_urlsafe(32),
        "TRE_HUB_URL": "http://127.0.0.1:8081",
    }
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        get_settings.cache_clear()
        upgrade(env["TRE_DATABASE_URL"])
        with session_scope() as session:
            demo = seed(session)
        reset_engines()
    get_settings.cache_clear()
    logins = {d.username: Login(d.username, d.password, d.totp_secret) for d in demo}
    (data_dir / "logins.json").write_text(json.dumps(sorted(logins)))

    with serve_control_plane({**os.environ, **env}, data_dir / "server.log") as (url, _):
        yield DemoServer(url=url, data_dir=data_dir, env=env, logins=logins)


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's chromium (make setup-dev); never 'playwright install'"
        )
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def db_url(demo_server: DemoServer) -> str:
    """The demo server's database (so ``--db postgres`` selects the browser tests as database tests)."""
    return demo_server.env["TRE_DATABASE_URL"]


@pytest.fixture
def page(browser: object, demo_server: DemoServer, db_url: str) -> Iterator[object]:
    """A fresh browser context (no cookies) at laptop size, on the demo server."""
    context = browser.new_context(base_url=demo_server.url, viewport={"width": 1366, "height": 800})  # type: ignore[attr-defined]
    tab = context.new_page()
    tab.set_default_timeout(30_000)
    yield tab
    context.close()


@pytest.fixture(scope="session")
def shots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
