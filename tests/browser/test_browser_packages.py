"""In a real browser: a researcher asks for a package, an administrator reviews its whole dependency tree
(hashes, licences, advisories) and approves it; then pip, pointed only at the mirror, installs it into a
fresh virtualenv as a non-root user, and cannot install a package nobody approved.

The pip step runs in a plain virtualenv of a throw-away Unix user, not inside a spawned workspace: the
workspace's network namespace (which forwards its gateway's mirror port here) is another branch's work.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from browser_support import shot, sign_in, sign_out
from mirror_support import (
    DEPENDENCY,
    PACKAGE,
    UNAPPROVED,
    VERSION,
    free_port,
    fresh_venv,
    pip_cache,
    pip_install,
    researcher_account,
    running_mirror,
)
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser
__all__ = ["pip_cache"]


def test_a_researcher_asks_an_admin_approves_the_tree_and_pip_installs_it_from_the_mirror(
    page: Page, demo_server: object, shots: Path, monkeypatch: pytest.MonkeyPatch, pip_cache: Path
) -> None:
    from tre_platform.settings import get_settings

    for name, value in demo_server.env.items():  # type: ignore[attr-defined]
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()

    # A researcher whose accreditation expired is refused, with the policy's reason.
    sign_in(page, demo_server, "carol")
    page.get_by_role("link", name="Packages").click()
    page.get_by_label("Package name").fill(PACKAGE)
    page.get_by_label("Version").fill(VERSION)
    page.get_by_label("Why your research needs it").fill("Parse RFC 3339 timestamps.")
    page.get_by_role("button", name="Ask for it").click()
    expect(page.locator("main")).to_contain_text("expired")
    sign_out(page)

    # An accredited researcher asks; the tree is resolved at once.
    sign_in(page, demo_server, "alice")
    page.get_by_role("link", name="Packages").click()
    page.get_by_label("Package name").fill(PACKAGE)
    page.get_by_label("Version").fill(VERSION)
    page.get_by_label("Why your research needs it").fill("Parse RFC 3339 timestamps in the survey data.")
    page.get_by_role("button", name="Ask for it").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"{PACKAGE}=={VERSION}")
    expect(page.locator(".flash")).to_contain_text("an administrator will review")
    request_url = page.url
    # A researcher sees the tree but has no approval form.
    expect(page.get_by_role("button", name="Approve and add to the mirror")).to_have_count(0)
    shot(page, shots, "packages-requested")
    sign_out(page)

    # The administrator sees the whole tree with hashes and licences, and approves.
    sign_in(page, demo_server, "admin")
    page.get_by_role("link", name="Packages").click()
    page.get_by_role("link", name=f"{PACKAGE}=={VERSION}").click()
    assert page.url == request_url
    tree = page.locator("#dependency-tree")
    for name in (PACKAGE, DEPENDENCY):
        row = tree.locator(f'tr[data-package="{name}"]')
        expect(row).to_contain_text("MIT")
        expect(row.locator("code.hash")).to_have_text(re.compile(r"^[0-9a-f]{64}$"))
    expect(tree.locator(f'tr[data-package="{PACKAGE}"]')).to_contain_text(DEPENDENCY)  # it requires six
    shot(page, shots, "packages-admin-review")
    page.get_by_label("Comment").fill("Small, MIT, no advisories.")
    page.get_by_role("button", name="Approve and add to the mirror").click()
    expect(page.locator(".flash")).to_contain_text("is in the mirror")
    expect(page.locator("main")).to_contain_text("approved")
    shot(page, shots, "packages-approved")

    # pip, pointed only at the mirror, installs the approved package and its dependency; nothing else.
    with running_mirror(free_port()) as index, researcher_account() as user, fresh_venv(user) as venv:
        installed = pip_install(user, venv, index, f"{PACKAGE}=={VERSION}")
        assert installed.returncode == 0, installed.stderr
        assert f"Successfully installed {PACKAGE}-{VERSION} {DEPENDENCY}-" in installed.stdout
        refused = pip_install(user, venv, index, UNAPPROVED)
        assert refused.returncode != 0
        assert "No matching distribution found" in refused.stderr
    get_settings.cache_clear()
