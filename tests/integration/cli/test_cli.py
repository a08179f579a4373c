"""The `tre` command against a real, migrated database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from tre_platform.cli import app

runner = CliRunner()


def tre(*args: str, input: str | None = None) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), input=input)
    return result.exit_code, result.stdout, result.stderr


#: The Splink models the run's first demo seeding trained, by path under the data directory. Every
#: later seeding starts from them, as the next delivery of a dataset does: the demo's indexes and
#: deliveries are the same each time, and training is a third of a seeding. (Training itself is
#: tested in tests/unit/indexing and tests/integration/pipelines.)
_TRAINED: dict[str, bytes] = {}


@pytest.fixture
def demo(db_url: str, _isolated_settings: Path) -> str:
    data_dir = _isolated_settings
    for relative, content in _TRAINED.items():
        (data_dir / relative).parent.mkdir(parents=True, exist_ok=True)
        (data_dir / relative).write_bytes(content)
    code, out, err = tre("up", "--demo", "--no-serve")
    assert code == 0, err
    if not _TRAINED:
        for path in data_dir.glob("linkage/indexes/*/models/*.json"):
            _TRAINED[path.relative_to(data_dir).as_posix()] = path.read_bytes()
    return out


def test_db_upgrade_reports_the_revision(db_url: str) -> None:
    code, out, _ = tre("db", "upgrade")
    assert code == 0
    assert "database at revision" in out


def test_up_demo_prints_a_login_for_every_role(demo: str) -> None:
    for role in ("admin", "data_owner", "approver", "researcher", "output_checker"):
        assert role in demo
    assert "control plane: http://" in demo


def test_up_demo_prints_no_password_or_totp_secret_only_where_they_are(
    demo: str, _isolated_settings: Path
) -> None:
    credentials = _isolated_settings / "demo-credentials.json"
    logins = json.loads(credentials.read_text())
    secrets = [x for login in logins for x in (login["password"], login.get("totp_secret")) if x]
    assert secrets and not [x for x in secrets if x in demo]
    assert str(credentials) in demo.replace("\n", "")
    assert credentials.stat().st_mode & 0o777 == 0o600


@pytest.mark.sqlite_only
def test_up_demo_gives_every_user_a_second_factor_kept_only_in_the_credentials_file(
    demo: str, _isolated_settings: Path
) -> None:
    path = _isolated_settings / "demo-credentials.json"
    assert path.stat().st_mode & 0o777 == 0o600
    logins = json.loads(path.read_text())
    assert {"alice", "bob", "dan"} <= {login["username"] for login in logins}
    for login in logins:
        assert login["totp_secret"], f"{login['username']} has no second factor"
        assert login["totp_secret"] not in demo, "a TOTP secret was printed"


@pytest.mark.sqlite_only
def test_up_demo_is_idempotent(demo: str) -> None:
    code, out, _ = tre("up", "--demo", "--no-serve")
    assert code == 0
    assert "seeding" not in out
    code, out, _ = tre("org", "list", "--json")
    assert len(json.loads(out)) == 5


@pytest.mark.sqlite_only
def test_demo_has_work_waiting_for_each_role(demo: str) -> None:
    projects = json.loads(tre("project", "list", "--json")[1])
    assert sorted(p["state"] for p in projects) == ["active", "active", "returned", "submitted"]
    agreements = json.loads(tre("agreement", "list", "--json")[1])
    assert sorted(a["status"] for a in agreements) == ["active", "active", "active", "expired"]
    users = json.loads(tre("user", "list", "--json")[1])
    carol = next(u for u in users if u["username"] == "carol")
    assert all(a["expires_on"] < projects[0]["start_date"] or True for a in carol["accreditations"])


def test_audit_verify_passes_then_detects_tampering(demo: str, engine: Engine) -> None:
    code, out, _ = tre("audit", "verify", "--json")
    assert code == 0
    assert json.loads(out)["ok"] is True
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("DROP TRIGGER tre_audit_events_no_update ON audit_events"))
        else:
            conn.execute(text("DROP TRIGGER tre_audit_events_no_update"))
        conn.execute(text("UPDATE audit_events SET actor = 'mallory' WHERE seq = 7"))
    code, out, _ = tre("audit", "verify", "--json")
    assert code == 2
    report = json.loads(out)
    assert report["ok"] is False and report["broken_seq"] == 7
    code, _, err = tre("audit", "verify")
    assert code == 2
    assert "BROKEN at event #7" in err


def test_project_approval_through_the_cli(demo: str) -> None:
    submitted = next(p for p in json.loads(tre("project", "list", "--json")[1]) if p["state"] == "submitted")
    # bob applied for it, so bob may not approve it, and a researcher may not approve anything.
    code, _, err = tre("project", "transition", submitted["code"], "approve", "--as", "bob")
    assert code == 1
    assert "error:" in err and "Traceback" not in err
    code, out, err = tre(
        "project", "transition", submitted["code"], "approve", "--as", "approver", "--comment", "ok", "--json"
    )
    assert code == 0, err
    assert json.loads(out)["state"] == "approved"
    code, _, err = tre("project", "transition", submitted["code"], "approve", "--as", "approver")
    assert code == 1
    assert "approved" in err


def test_revoking_an_agreement_flips_the_policy_decision(demo: str) -> None:
    active = next(
        p
        for p in json.loads(tre("project", "list", "--json")[1])
        if p["state"] == "active" and p["title"].startswith("Health and the labour market")
    )
    code, out, _ = tre(
        "policy",
        "explain",
        "-u",
        "alice",
        "-p",
        active["code"],
        "-d",
        "hospital_episodes",
        "-a",
        "read_dataset",
        "--json",
    )
    assert code == 0
    assert "DENY" not in out and json.loads(out)["decisions"][0]["allowed"] is True
    code, _, err = tre(
        "agreement", "revoke", "DSA-NHS-2026-01", "--reason", "breach of conditions", "--as", "owner-health"
    )
    assert code == 0, err
    code, out, _ = tre(
        "policy",
        "explain",
        "-u",
        "alice",
        "-p",
        active["code"],
        "-d",
        "hospital_episodes",
        "-a",
        "read_dataset",
        "--json",
    )
    decision = json.loads(out)["decisions"][0]
    assert decision["allowed"] is False
    assert any("revoked" in reason for reason in decision["reasons"])


@pytest.mark.sqlite_only
def test_another_organisations_owner_cannot_revoke(demo: str) -> None:
    code, _, err = tre(
        "agreement", "revoke", "DSA-NHS-2026-01", "--reason", "not mine", "--as", "owner-labour"
    )
    assert code == 1
    assert "Traceback" not in err


@pytest.mark.sqlite_only
def test_bad_spec_files_give_a_clear_error(demo: str, tmp_path: Path) -> None:
    broken = tmp_path / "p.json"
    broken.write_text('{"title": "x",')
    code, _, err = tre("project", "create", str(broken), "--as", "alice")
    assert code == 1
    assert "not valid JSON: line 1" in err
    broken.write_text(json.dumps({"title": "x", "surprise": 1}))
    code, _, err = tre("project", "create", str(broken), "--as", "alice")
    assert code == 1
    assert "surprise" in err and "Traceback" not in err
    code, _, err = tre("project", "create", str(tmp_path / "missing.json"))
    assert code == 1 and "does not exist" in err


@pytest.mark.sqlite_only
def test_unknown_user_for_as_is_a_clear_error(demo: str) -> None:
    code, _, err = tre("project", "list", "--as", "nobody")
    assert code == 1
    assert "no user named 'nobody'" in err


@pytest.mark.sqlite_only
def test_changes_that_affect_access_trigger_enforcement(demo: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Revocations and approvals call the enforcer (views rebuilt, refused workspaces stopped)."""
    import tre_platform.views.enforce as enforce
    from tre_platform.settings import get_settings

    calls: list[list[str] | None] = []

    def fake_enforce(session: object, actor: object, *, project_ids: list[str] | None = None) -> object:
        calls.append(project_ids)
        return enforce.EnforcementReport()

    monkeypatch.setenv("TRE_ENFORCE_ON_CHANGE", "true")
    get_settings.cache_clear()
    monkeypatch.setattr(enforce, "enforce_access", fake_enforce)
    submitted = next(p for p in json.loads(tre("project", "list", "--json")[1]) if p["state"] == "submitted")
    assert tre("project", "transition", submitted["code"], "approve", "--as", "approver")[0] == 0
    assert calls == [[submitted["id"]]]
    assert (
        tre("agreement", "revoke", "DSA-NHS-2026-01", "--reason", "ended early", "--as", "owner-health")[0]
        == 0
    )
    assert calls[-1] is None  # every project with views is re-checked


@pytest.mark.sqlite_only
def test_enforcement_can_be_turned_off(demo: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import tre_platform.views.enforce as enforce

    monkeypatch.setattr(enforce, "enforce_access", lambda *a, **k: pytest.fail("enforcement ran while off"))
    assert (
        tre("agreement", "revoke", "DSA-NHS-2026-01", "--reason", "ended early", "--as", "owner-health")[0]
        == 0
    )
