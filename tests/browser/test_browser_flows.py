"""Each role's main flow, end to end, in a real browser against a real server and database."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from browser_support import release_in_review, shot, sign_in, sign_out
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser


def test_researcher_applies_approver_approves_admin_activates(
    page: Page, demo_server: object, shots: Path
) -> None:
    sign_in(page, demo_server, "alice")
    shot(page, shots, "researcher-home")
    page.get_by_role("link", name="Apply for a project").first.click()
    page.get_by_label("Title").fill("Employment after cancer treatment")
    page.get_by_label("Lay summary").fill(
        "Do people return to work after cancer treatment, and how quickly? Evidence for workplace support."
    )
    page.get_by_label("Purpose").select_option("policy_evidence")
    page.get_by_label("Legal gateway").select_option("dea")
    page.get_by_label("Other members").fill("bob")
    page.locator("summary", has_text="hospital_episodes").click()
    page.get_by_role("checkbox", name=re.compile(r"^admission_date")).check()
    page.get_by_role("checkbox", name=re.compile(r"^diagnosis_chapter")).check()
    # The live check (htmx) names the agreement that would cover the data.
    coverage = page.locator("#coverage")
    expect(coverage).to_contain_text("covered by DSA-NHS-2026-01")
    shot(page, shots, "researcher-apply")
    page.get_by_role("button", name="Submit for approval").click()
    expect(page.locator(".flash")).to_contain_text("submitted for approval")
    code = re.search(r"P-\d{4}-[0-9A-F]{6}", page.locator(".lead").first.inner_text())
    assert code, "the project page shows the project's code"
    project_url = page.url
    sign_out(page)

    sign_in(page, demo_server, "approver")
    page.get_by_role("link", name=code.group(0)).click()
    expect(
        page.get_by_role("heading", name="Requested data and the agreements that cover it")
    ).to_be_visible()
    expect(page.locator("table.coverage")).to_contain_text("DSA-NHS-2026-01")
    page.get_by_label("Comment to the applicants").fill("Clear benefit; columns are minimal.")
    shot(page, shots, "approver-decision")
    page.get_by_role("button", name="Approve").click()
    expect(page.locator(".flash")).to_contain_text("is now approved")
    sign_out(page)

    sign_in(page, demo_server, "admin")
    expect(page.get_by_role("heading", name="Approved, waiting to be activated")).to_be_visible()
    shot(page, shots, "admin-home")
    page.goto(project_url)
    page.get_by_label("Note").fill("Workspace provisioned.")
    page.get_by_role("button", name="Activate the project").click()
    expect(page.locator(".flash")).to_contain_text("is now active")
    sign_out(page)

    sign_in(page, demo_server, "alice")
    page.goto(project_url)
    workspace = page.get_by_role("link", name="Open a workspace in JupyterHub")
    expect(workspace).to_have_attribute("href", re.compile(r"/hub/spawn\?project=P-"))


def test_data_owner_grants_and_revokes_an_agreement(page: Page, demo_server: object, shots: Path) -> None:
    sign_in(page, demo_server, "owner-health")
    shot(page, shots, "owner-home")
    page.get_by_role("link", name="Agreements", exact=True).click()
    page.get_by_role("link", name="Grant an agreement").click()
    page.get_by_label("Title").fill("GP registrations for Northfield")
    page.get_by_label("Only these datasets:").check()
    page.get_by_role("checkbox", name=re.compile(r"^gp_registrations")).check()
    page.get_by_label("Only these organisations:").check()
    page.get_by_role("checkbox", name="University of Northfield").check()
    page.get_by_role("checkbox", name="Evidence for public service delivery").check()
    page.get_by_role("checkbox", name="NHS Act 2006 s.251 / COPI").check()
    # First a mistake: an end before the start is refused next to the field, and nothing is granted.
    today = dt.date.today()
    page.get_by_label("Valid from").fill(today.isoformat())
    page.get_by_label("Valid to").fill((today - dt.timedelta(days=1)).isoformat())
    page.get_by_role("button", name="Grant agreement").click()
    expect(page.locator("#valid_to-error")).to_be_visible()
    shot(page, shots, "owner-grant-error")
    page.get_by_label("Valid to").fill((today + dt.timedelta(days=365)).isoformat())
    page.get_by_role("button", name="Grant agreement").click()
    expect(page.locator(".flash")).to_contain_text("granted")
    shot(page, shots, "owner-agreement")
    page.get_by_label("Reason").fill("The programme was cancelled.")
    page.get_by_role("button", name="Revoke agreement").click()
    expect(page.locator(".flash")).to_contain_text("revoked")
    expect(page.locator(".lead")).to_contain_text("revoked")
    page.get_by_role("link", name="Usage", exact=True).click()
    expect(page.get_by_role("heading", name="Usage of your data")).to_be_visible()
    shot(page, shots, "owner-usage")


def test_admin_reviews_the_audit_log(page: Page, demo_server: object, shots: Path) -> None:
    sign_in(page, demo_server, "admin")
    page.get_by_role("link", name="Audit log", exact=True).click()
    expect(page.locator(".notice")).to_contain_text("chain intact")
    page.get_by_label("Action").fill("agreement.")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("tbody tr").first).to_contain_text("agreement.")
    shot(page, shots, "admin-audit")
    page.get_by_role("link", name="Accreditations", exact=True).click()
    expect(page.locator(".notice.warn")).to_contain_text("expire")
    shot(page, shots, "admin-accreditations")


def test_output_checkers_approve_and_the_researcher_downloads(
    page: Page, demo_server: object, shots: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(11)
    frame = pd.DataFrame({"region": rng.choice(["north", "south", "west"], 150)})
    frame = pd.concat([frame, pd.DataFrame({"region": ["east"] * 2})], ignore_index=True)
    request_id = release_in_review(demo_server, monkeypatch, "alice", frame)

    for checker in ("checker1", "checker2"):
        sign_in(page, demo_server, checker)
        page.get_by_role("link", name="Admissions by region").first.click()
        expect(page.locator("table.output td.suppressed").first).to_be_visible()
        if checker == "checker1":
            shot(page, shots, "checker-review")
        page.get_by_label("Comment to the researcher").fill("Suppression is correct.")
        page.get_by_role("button", name="Approve").click()
        expect(page.locator(".flash")).to_contain_text("recorded")
        sign_out(page)

    sign_in(page, demo_server, "alice")
    page.goto(f"/releases/{request_id}")
    page.get_by_role("button", name="Release (build the signed bundle)").click()
    expect(page.locator(".flash")).to_contain_text("released")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download the released bundle").click()
    assert download.value.suggested_filename.endswith(".zip")
    shot(page, shots, "researcher-release")
