"""In a real browser: each role's home page shows the demo's waiting work; a researcher secures their
account (password, API token, authenticator app with its QR code); a data owner registers a dataset and
ingests a delivery from the browser."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from browser_support import shot, sign_in, sign_out, totp_code
from playwright.sync_api import Page, expect
from sqlalchemy import select

pytestmark = pytest.mark.browser


def with_server_settings(server: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point this process's settings at the demo server's database and data directory."""
    from tre_platform.db.session import reset_engines
    from tre_platform.settings import get_settings

    for name, value in server.env.items():  # type: ignore[attr-defined]
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    reset_engines()


def test_every_role_home_page_shows_the_demo_work_waiting(
    page: Page, demo_server: object, shots: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As after ``tre up --demo``: the demo world and its staged release requests."""
    from tre_platform.db.session import reset_engines, session_scope
    from tre_platform.demo.releases import seed_releases
    from tre_platform.settings import get_settings

    with_server_settings(demo_server, monkeypatch)
    try:
        with session_scope() as session:
            seed_releases(session)
    finally:
        reset_engines()
        get_settings.cache_clear()

    waiting = {
        "admin": ["Accreditations expired or expiring", "Carol Researcher"],
        "approver": ["Applications waiting for a decision", "Churn in GP registrations"],
        "checker2": ["Release requests waiting for your review", "Length of stay by admission method"],
        "owner-health": ["Projects that asked for your data", "Churn in GP registrations"],
        "alice": ["Your release requests", "Diagnosis by sex, long stays"],
        "carol": ["no valid researcher accreditation"],
    }
    for username, texts in waiting.items():
        sign_in(page, demo_server, username)
        main = page.locator("main")
        for text in texts:
            expect(main).to_contain_text(text)
        shot(page, shots, f"home-{username}")
        sign_out(page)


def test_a_researcher_secures_their_account(
    page: Page, demo_server: object, shots: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tre_platform.actor import Actor
    from tre_platform.api.users import service as users
    from tre_platform.api.users.models import User
    from tre_platform.db.session import reset_engines, session_scope
    from tre_platform.settings import get_settings

    # Dan lost his phone: an administrator resets his second factor, so he enrols a new one at sign-in.
    with_server_settings(demo_server, monkeypatch)
    try:
        with session_scope() as session:
            dan = session.scalar(select(User).where(User.username == "dan"))
            assert dan is not None and dan.totp_enabled, "the demo enrols every user's second factor"
            users.reset_totp(session, Actor.system("tests"), dan.id)
    finally:
        reset_engines()
        get_settings.cache_clear()
    new_password = "dan's much longer passphrase"
    page.goto("/login")
    page.get_by_label("Username").fill("dan")
    page.get_by_label("Password").fill(demo_server.logins["dan"].password)  # type: ignore[attr-defined]
    page.get_by_role("button", name="Sign in").click()
    # Researchers need a second factor too: the first sign-in without one sets it up, from a QR code.
    expect(page.locator("figure.qr svg")).to_be_visible()
    secret = page.locator("code.secret").inner_text().strip()
    shot(page, shots, "account-totp-qr")
    page.get_by_label("6-digit code").fill(totp_code(demo_server, "dan", secret))
    page.get_by_role("button", name="Confirm").click()
    expect(page.locator(".flash")).to_contain_text("authenticator app is set up")
    page.get_by_role("link", name="Your account").click()
    expect(page.get_by_role("heading", name="Your account")).to_be_visible()

    # A personal API token: shown once, listed by its prefix, revoked.
    page.get_by_label("Token name").fill("laptop scripts")
    page.get_by_label("Scope").select_option("api")
    page.get_by_label("Expires after").select_option("30")
    page.get_by_role("button", name="Create token").click()
    token = page.locator("#new-token")
    expect(token).to_contain_text("tre_")
    shot(page, shots, "account-token-created")
    page.goto("/account")
    expect(page.locator("#new-token")).to_have_count(0)
    expect(page.locator("table.tokens")).to_contain_text("laptop scripts")
    page.get_by_role("button", name="Revoke laptop scripts").click()
    expect(page.locator(".flash")).to_contain_text("is revoked")
    expect(page.locator("table.tokens")).to_contain_text("revoked")

    # The password: a wrong current one is refused next to the field; then changed, which signs out.
    page.get_by_label("Current password").fill("not my password at all")
    page.locator("#f-new_password").fill(new_password)
    page.get_by_label("New password again").fill(new_password)
    page.get_by_role("button", name="Change password").click()
    expect(page.locator("#current_password-error")).to_contain_text("current password is wrong")
    page.get_by_label("Current password").fill(demo_server.logins["dan"].password)  # type: ignore[attr-defined]
    page.locator("#f-new_password").fill(new_password)
    page.get_by_label("New password again").fill(new_password)
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.locator(".flash")).to_contain_text("password is changed")

    # Signing in again takes the new password and a code from the new app.
    page.get_by_label("Username").fill("dan")
    page.get_by_label("Password").fill(new_password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Enter your authenticator code")).to_be_visible()
    page.get_by_label("6-digit code").fill(totp_code(demo_server, "dan", secret))
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Welcome")
    shot(page, shots, "account-signed-in-with-totp")


def test_a_data_owner_registers_a_dataset_and_ingests_a_delivery(
    page: Page, demo_server: object, shots: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from tre_lib.synth import generate_world
    from tre_lib.synth import make_dataset as synth_dataset
    from tre_platform.demo.deliveries import build_indexes
    from tre_platform.settings import get_settings

    # The demo's own reference indexes (the world `tre up --demo` draws), so the delivery links.
    with_server_settings(demo_server, monkeypatch)
    world = generate_world(2_000, seed=7)
    try:
        build_indexes(world, get_settings().ensure_data_dir())
    finally:
        get_settings.cache_clear()
    records, _ = synth_dataset(world, "hospital_episodes", 80, seed=21)
    records = records[records["nhs_number"].notna() & records["dob"].notna()].head(50)
    good = pd.DataFrame(
        {
            "nhs_number": records["nhs_number"],
            "date_of_birth": records["dob"],
            "ward": ["A" if i % 2 else "B" for i in range(len(records))],
        }
    )
    good_path = tmp_path / "wards.csv"
    good.to_csv(good_path, index=False)
    bad = good.copy()
    bad.loc[bad.index[2], "ward"] = "Z"
    bad_path = tmp_path / "wards-bad.csv"
    bad.to_csv(bad_path, index=False)

    sign_in(page, demo_server, "owner-health")
    page.get_by_role("link", name="Datasets", exact=True).click()
    page.get_by_role("link", name="Register a dataset").click()
    page.locator("#f-name").fill("ward_stays")
    page.get_by_label("Title").fill("Ward stays")
    page.get_by_label("Sensitivity tier").select_option("3")
    rows = [
        ("nhs_number", "string", "demographic", ""),
        ("date_of_birth", "date", "demographic", ""),
        ("ward", "string", "", "A, B"),
    ]
    for i, (name, kind, index, allowed) in enumerate(rows):
        page.locator(f"#f-c{i}_name").fill(name)
        page.locator(f"#f-c{i}_type").select_option(kind)
        page.locator(f"#f-c{i}_required").check()
        if index:
            page.locator(f"#f-c{i}_identifier").check()
        if allowed:
            page.locator(f"#f-c{i}_allowed").fill(allowed)
    # First a mistake: an identifier without its index is refused next to the field.
    page.get_by_role("button", name="Register dataset").click()
    expect(page.locator("#c0_index-error")).to_contain_text("which reference index")
    shot(page, shots, "owner-register-error")
    page.locator("#f-c0_index").select_option("demographic")
    page.locator("#f-c1_index").select_option("demographic")
    page.get_by_role("button", name="Register dataset").click()
    expect(page.locator(".flash")).to_contain_text("is registered")

    page.get_by_role("link", name="Upload a delivery").click()
    page.get_by_label(re.compile("^Delivery file")).set_input_files(str(bad_path))
    page.get_by_role("button", name="Upload and ingest").click()
    problems = page.locator("table.problems")
    expect(problems).to_contain_text("ward")
    expect(problems).to_contain_text("row 3")
    shot(page, shots, "owner-upload-problems")
    page.get_by_label(re.compile("^Delivery file")).set_input_files(str(good_path))
    page.get_by_role("button", name="Upload and ingest").click()
    expect(page.locator(".flash")).to_contain_text("Published ward_stays version 1")
    expect(page.get_by_role("heading", name=re.compile(r"^Version 1 · 50 rows"))).to_be_visible()
    expect(page.locator("main")).to_contain_text("Match rate")
    shot(page, shots, "owner-version-published")
