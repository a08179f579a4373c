"""`tre release ...` (the typer app the lead mounts as ``tre release``) on a real database and the real
policy engine: verifying bundles, listing, showing and reviewing requests."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from airlock_helpers import staged_request
from airlock_world import Airlock, microdata, with_small_cell
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from tre_platform.actor import Actor
from tre_platform.api.releases import bundle as bundles
from tre_platform.api.releases import service
from tre_platform.api.releases.cli import release_app
from tre_platform.api.releases.models import ReleaseRequest
from tre_platform.api.users.models import User
from tre_platform.settings import get_settings

runner = CliRunner()


def tre_release(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(release_app, list(args))
    return result.exit_code, result.stdout, result.stderr


def submitted(session: Session, airlock: Airlock, *, safe: bool = True) -> ReleaseRequest:
    researcher = airlock.actor(airlock.researcher)
    frame = microdata() if safe else with_small_cell(microdata())
    request = staged_request(session, researcher, airlock.project_id, frame, protect=safe)
    service.submit(session, researcher, request.id)
    session.commit()
    return request


def approve(session: Session, request_id: str, *checkers: User) -> None:
    for checker in checkers:
        service.review(session, Actor.of(checker), request_id, "approve")
    session.commit()


@pytest.fixture
def bundle_path(airlock: Airlock, session: Session) -> Path:
    """A released request's bundle, signed with this deployment's key."""
    request = submitted(session, airlock)
    approve(session, request.id, *airlock.checkers[:2])
    service.release(session, airlock.actor(airlock.researcher), request.id)
    session.commit()
    assert request.bundle_path is not None
    return get_settings().resolved_data_dir / request.bundle_path


def rewrite(source: Path, target: Path, *, change: str | None = None, drop: str | None = None) -> Path:
    """A copy of a bundle with one member's bytes changed, or one member left out."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for item in old.infolist():
            if item.filename == drop:
                continue
            content = old.read(item)
            if item.filename == change:
                content = content.replace(b"north", b"NORTH", 1)
            new.writestr(item, content)
    return target


def write_pem(path: Path, key: Ed25519PrivateKey, *, public: bool = True) -> Path:
    if public:
        path.write_text(bundles.public_key_pem(key))
    else:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    return path


# verify ---------------------------------------------------------------------------------------------


def test_verify_accepts_a_released_bundle_with_the_deployments_key(bundle_path: Path) -> None:
    code, out, err = tre_release("verify", str(bundle_path))
    assert code == 0, err
    assert "bundle verified: signature valid, 1 file(s) match their SHA-256" in out


def test_verify_json_reports_the_release_and_key(bundle_path: Path) -> None:
    code, out, _ = tre_release("verify", str(bundle_path), "--json")
    report = json.loads(out)
    assert code == 0
    assert report["ok"] is True and report["problems"] == []
    assert report["files"] == ["admissions.csv"]
    assert report["key_fingerprint"] == bundles.fingerprint(bundles.signing_key(get_settings()))


def test_verify_with_the_published_public_key_file(bundle_path: Path, tmp_path: Path) -> None:
    pem = write_pem(tmp_path / "tre-release.pub", bundles.signing_key(get_settings()))
    code, out, err = tre_release("verify", str(bundle_path), "--key", str(pem))
    assert code == 0, err
    assert "bundle verified" in out


def test_verify_names_the_file_that_was_changed(bundle_path: Path, tmp_path: Path) -> None:
    tampered = rewrite(bundle_path, tmp_path / "tampered.zip", change="files/admissions.csv")
    code, _, err = tre_release("verify", str(tampered))
    assert code == 1
    assert "bundle NOT verified: admissions.csv does not match its SHA-256 in the manifest" in err
    code, out, _ = tre_release("verify", str(tampered), "--json")
    assert code == 1
    assert json.loads(out)["problems"] == ["admissions.csv does not match its SHA-256 in the manifest"]


def test_verify_names_a_file_missing_from_the_bundle(bundle_path: Path, tmp_path: Path) -> None:
    stripped = rewrite(bundle_path, tmp_path / "stripped.zip", drop="files/admissions.csv")
    code, _, err = tre_release("verify", str(stripped))
    assert code == 1
    assert "admissions.csv is listed in the manifest but missing" in err


def test_verify_refuses_an_edited_manifest(bundle_path: Path, tmp_path: Path) -> None:
    # Editing the manifest (e.g. to match changed files) breaks the signature, which is checked first.
    edited = rewrite(bundle_path, tmp_path / "edited.zip", change="manifest.json")
    code, _, err = tre_release("verify", str(edited))
    assert code == 1
    assert "the manifest's signature does not verify with this key" in err


def test_verify_refuses_another_tres_key(bundle_path: Path, tmp_path: Path) -> None:
    other = write_pem(tmp_path / "other.pub", Ed25519PrivateKey.generate())
    code, _, err = tre_release("verify", str(bundle_path), "--key", str(other))
    assert code == 1
    assert "signature does not verify" in err


def test_verify_accepts_a_private_key_pem_for_its_public_half(bundle_path: Path, tmp_path: Path) -> None:
    private = write_pem(tmp_path / "key.pem", bundles.signing_key(get_settings()), public=False)
    code, _, err = tre_release("verify", str(bundle_path), "--key", str(private))
    assert code == 0, err


def test_verify_bad_inputs_say_what_to_do(bundle_path: Path, tmp_path: Path) -> None:
    code, _, err = tre_release("verify", str(tmp_path / "nope.zip"))
    assert code == 1 and "does not exist" in err
    not_a_key = tmp_path / "key.txt"
    not_a_key.write_text("hello")
    code, _, err = tre_release("verify", str(bundle_path), "--key", str(not_a_key))
    assert code == 1 and "not an Ed25519 key in PEM form" in err
    not_a_zip = tmp_path / "bundle.zip"
    not_a_zip.write_bytes(b"not a zip")
    code, _, err = tre_release("verify", str(not_a_zip))
    assert code == 1 and "cannot be read" in err


def test_verify_without_a_deployment_key_asks_for_one(
    bundle_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "elsewhere"
    monkeypatch.setenv("TRE_DATA_DIR", str(empty))
    get_settings.cache_clear()
    code, _, err = tre_release("verify", str(bundle_path))
    assert code == 1
    assert "--key" in err and "signing-key" in err
    assert not (empty / bundles.KEY_FILE).exists(), "verifying must never create a signing key"


# list / show ----------------------------------------------------------------------------------------


def test_list_shows_each_user_what_they_may_see(airlock: Airlock, session: Session) -> None:
    request = submitted(session, airlock)
    for who, expected in [("checker1", [request.id]), ("researcher", [request.id]), ("otto", [])]:
        username = airlock.researcher.username if who == "researcher" else who
        code, out, err = tre_release("list", "--as", username, "--json")
        assert code == 0, err
        assert [r["id"] for r in json.loads(out)] == expected, who
    code, out, _ = tre_release("list")  # the operator sees everything
    assert request.id in out and "in_review" in out


def test_list_filters_by_state_and_project(airlock: Airlock, session: Session) -> None:
    in_review = submitted(session, airlock)
    draft = staged_request(session, airlock.actor(airlock.researcher), airlock.project_id, microdata())
    code, out, _ = tre_release("list", "--state", "draft", "--json")
    assert code == 0 and [r["id"] for r in json.loads(out)] == [draft.id]
    code, out, _ = tre_release("list", "--project", in_review.project.code, "--json")
    assert code == 0 and {r["id"] for r in json.loads(out)} == {draft.id, in_review.id}
    code, _, err = tre_release("list", "--state", "pending")
    assert code == 1 and "unknown state 'pending'" in err and "in_review" in err
    code, _, err = tre_release("list", "--project", "P-NOPE")
    assert code == 1 and "no project" in err


def test_show_prints_the_server_findings(airlock: Airlock, session: Session) -> None:
    request = submitted(session, airlock, safe=False)
    code, out, err = tre_release("show", request.id, "--as", "checker1")
    assert code == 0, err
    assert "checks fail" in out
    assert "cell(s) are published that the rules suppress" in out
    code, out, _ = tre_release("show", request.id, "--json", "--as", airlock.researcher.username)
    shown = json.loads(out)
    assert shown["check_status"] == "fail" and shown["files"][0]["status"] == "fail"
    assert shown["allowed_actions"] == ["approve", "reject", "return"]


def test_show_hides_requests_from_outsiders(airlock: Airlock, session: Session) -> None:
    request = submitted(session, airlock)
    code, _, err = tre_release("show", request.id, "--as", "otto")
    assert code == 1 and "no release request" in err
    code, _, err = tre_release("show", request.id, "--as", "nobody")
    assert code == 1 and "no user named 'nobody'" in err


# review ---------------------------------------------------------------------------------------------


def test_two_checkers_approve_through_the_cli(airlock: Airlock, session: Session) -> None:
    request = submitted(session, airlock)
    code, out, err = tre_release("review", request.id, "approve", "--as", "checker1", "--comment", "ok")
    assert code == 0, err
    assert "in_review (approvals 1/2)" in out
    code, out, _ = tre_release("review", request.id, "approve", "--as", "checker2", "--json")
    assert code == 0
    assert json.loads(out)["state"] == "approved"
    session.expire_all()
    assert [r.checker.username for r in session.get_one(ReleaseRequest, request.id).approvals] == [
        "checker1",
        "checker2",
    ]


def test_review_refusals_are_one_line_messages(airlock: Airlock, session: Session) -> None:
    request = submitted(session, airlock)
    assert tre_release("review", request.id, "approve", "--as", "checker1")[0] == 0
    code, _, err = tre_release("review", request.id, "approve", "--as", "checker1")
    assert code == 1 and "already reviewed" in err and "Traceback" not in err
    code, _, err = tre_release("review", request.id, "approve", "--as", airlock.researcher.username)
    assert code == 1 and "cannot review it" in err
    code, _, err = tre_release("review", request.id, "return", "--as", "checker2")
    assert code == 1 and "say why" in err
    code, _, err = tre_release("review", request.id, "maybe", "--as", "checker2")
    assert code == 1 and "unknown decision 'maybe'" in err
    code, _, err = tre_release("review", request.id, "approve")
    assert code == 2 and "--as" in err  # the operator is not an output checker
    session.expire_all()
    assert len(session.get_one(ReleaseRequest, request.id).reviews) == 1


def test_a_failed_request_is_returned_not_approved(airlock: Airlock, session: Session) -> None:
    request = submitted(session, airlock, safe=False)
    code, _, err = tre_release("review", request.id, "approve", "--as", "checker1")
    assert code == 1 and "cannot be approved" in err
    code, out, err = tre_release(
        "review", request.id, "return", "--as", "checker1", "--comment", "suppress the west region"
    )
    assert code == 0, err
    assert "the request is returned" in out
