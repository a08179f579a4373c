"""A real OpenID Connect provider for the single sign-on tests: node-oidc-provider (OpenID Certified), run by
``tests/support/oidc_provider.mjs`` on a free loopback port, with one test client and test accounts.

The client is registered as a native application, so (RFC 8252 section 7.3) the provider accepts its loopback
redirect URIs on any port: the test servers choose their ports after the provider has started.
"""

from __future__ import annotations

import contextlib
import html
import json
import re
import secrets
import shutil
import subprocess
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tre_platform.hub.local import answers, free_port, wait_for

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tests" / "support" / "oidc_provider.mjs"
NODE_MODULE = REPO / "node_modules" / "oidc-provider"
REDIRECT_PATHS = ("/login/oidc/callback", "/hub/oauth_callback")

needs_provider = pytest.mark.skipif(
    shutil.which("node") is None or not NODE_MODULE.exists(),
    reason="needs node and oidc-provider (npm install)",
)
_FORM = re.compile(r'<form[^>]*action="([^"]+)"[^>]*>(.*?)</form>', re.S)
_INPUT = re.compile(r"<input([^>]*)>")
_ATTR = re.compile(r'(\w+)="([^"]*)"')


@dataclass(frozen=True)
class OidcProvider:
    issuer: str
    client_id: str
    client_secret: str

    def env(self) -> dict[str, str]:
        """The ``TRE_OIDC_*`` settings that point a deployment at this provider."""
        return {
            "TRE_OIDC_ISSUER": self.issuer,
            "TRE_OIDC_CLIENT_ID": self.client_id,
            "TRE_OIDC_CLIENT_SECRET": self.client_secret,
        }


@contextlib.contextmanager
def run_provider(accounts: dict[str, dict[str, object]], log: Path) -> Iterator[OidcProvider]:
    """The provider on a free port, with ``accounts`` (login name → claims); stopped afterwards."""
    port = free_port()
    provider = OidcProvider(
        issuer=f"http://127.0.0.1:{port}",
        client_id=f"tre-{secrets.token_hex(4)}",
        client_secret=secrets.token_urlsafe(32),
    )
    config = {
        "port": port,
        "cookie_key": secrets.token_urlsafe(32),
        "clients": [
            {
                "client_id": provider.client_id,
                "client_secret": provider.client_secret,
                "application_type": "native",
                "redirect_uris": [f"http://127.0.0.1{path}" for path in REDIRECT_PATHS],
            }
        ],
        "accounts": accounts,
    }
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["node", str(SCRIPT)],
            env={"PATH": "/usr/bin:/bin:/usr/local/bin", "OIDC_TEST_CONFIG": json.dumps(config)},
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
        )

    def dead() -> str | None:
        if process.poll() is None:
            return None
        return f"the OIDC provider exited ({process.returncode}):\n{log.read_text(errors='replace')[-3000:]}"

    try:
        wait_for(
            "the OIDC provider",
            lambda: answers(f"{provider.issuer}/.well-known/openid-configuration"),
            alive=dead,
        )
        yield provider
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def provider_sign_in(authorize_url: str, login: str, *, stop_at: str) -> str:
    """Sign in at the provider as ``login`` (its development sign-in page, then consent), starting at the
    authorization URL a tre server sent the browser to; returns the redirect back to ``stop_at`` (the URL
    with ``code`` and ``state``) without following it."""
    with httpx.Client(timeout=30, trust_env=False) as browser:
        url = authorize_url
        for _ in range(20):
            if url.startswith(stop_at):
                return url
            response = browser.get(url)
            if response.is_redirect:
                url = urllib.parse.urljoin(url, response.headers["location"])
                continue
            form = _FORM.search(response.text)
            assert form, f"the provider's page has no form:\n{response.text[:2000]}"
            fields: dict[str, str] = {}
            for tag in _INPUT.findall(form.group(2)):
                attrs = dict(_ATTR.findall(tag))
                if "name" in attrs:
                    fields[attrs["name"]] = html.unescape(attrs.get("value", ""))
            if "login" in fields:
                fields.update(login=login, password="any password")
            response = browser.post(urllib.parse.urljoin(url, html.unescape(form.group(1))), data=fields)
            assert response.is_redirect, f"the provider refused the form:\n{response.text[:2000]}"
            url = urllib.parse.urljoin(url, response.headers["location"])
    raise AssertionError(f"the provider never redirected back to {stop_at}")


def with_query(url: str, **changes: str) -> str:
    """``url`` with some query parameters replaced (a tampering attacker's move)."""
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query))
    query.update(changes)
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))
