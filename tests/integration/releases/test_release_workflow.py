"""The airlock's workflow end to end on a real database and the real policy engine."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from airlock_helpers import count_table, staged_request
from airlock_world import Airlock, microdata, with_small_cell
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from tre_lib.outputs.specs import Filter, TableSpec
from tre_platform.actor import Actor
from tre_platform.api.audit.models import AuditEvent
from tre_platform.api.releases import service
from tre_platform.api.releases.bundle import verify_bundle
from tre_platform.api.releases.models import ReleasedTable, ReleaseState
from tre_platform.api.releases.schemas import ReleaseCreate
from tre_platform.errors import Conflict, Forbidden, InvalidInput, NotFound, PolicyDenied
from tre_platform.settings import get_settings


def test_happy_path_over_http_ends_in_a_signed_bundle_that_verifies(
    airlock: Airlock, client: TestClient, tmp_path: Path
) -> None:
    content, spec, data = count_table(microdata())
    created = client.post(
        "/api/v1/releases",
        json={"project_id": airlock.project_id, "title": "Admissions", "justification": "annual report"},
        headers=airlock.headers("researcher"),
    )
    assert created.status_code == 201, created.text
    request_id = created.json()["id"]
    staged = client.post(
        f"/api/v1/releases/{request_id}/files",
        data={"name": "admissions.csv", "kind": "table", "spec": json.dumps(spec)},
        files={"content": ("admissions.csv", content), "data": ("admissions-data.parquet", data)},
        headers=airlock.headers("researcher"),
    )
    assert staged.status_code == 201, staged.text

    submitted = client.post(f"/api/v1/releases/{request_id}/submit", headers=airlock.headers("researcher"))
    assert submitted.status_code == 200, submitted.text
    body = submitted.json()
    assert body["state"] == "in_review"
    (checked,) = body["files"]
    assert checked["status"] == "review"  # uploaded data, no view: at most review
    assert checked["server_check"]["record"]["rules"]["threshold"] == 10
    assert checked["server_check"]["comparison"]["ok"] is True

    first = client.post(
        f"/api/v1/releases/{request_id}/reviews",
        json={"decision": "approve"},
        headers=airlock.headers("checker1"),
    )
    assert first.json()["state"] == "in_review"
    second = client.post(
        f"/api/v1/releases/{request_id}/reviews",
        json={"decision": "approve", "comment": "fine"},
        headers=airlock.headers("checker2"),
    )
    assert second.json()["state"] == "approved"
    released = client.post(f"/api/v1/releases/{request_id}/release", headers=airlock.headers("researcher"))
    assert released.json()["state"] == "released", released.text

    download = client.get(f"/api/v1/releases/{request_id}/bundle", headers=airlock.headers("member"))
    assert download.status_code == 200
    bundle = tmp_path / "bundle.zip"
    bundle.write_bytes(download.content)
    key = client.get("/api/v1/releases/signing-key", headers=airlock.headers("researcher")).json()
    check = verify_bundle(bundle, key["public_key_pem"])
    assert check.ok, check.problems
    manifest = check.manifest
    assert [f["name"] for f in manifest["files"]] == ["admissions.csv"]
    assert manifest["files"][0]["sha256"] == checked["sha256"]
    assert {r["checker"] for r in manifest["reviews"]} == {"checker1", "checker2"}
    assert manifest["disclosure_rules"]["threshold"] == 10
    assert manifest["signing_key"]["fingerprint"] == key["fingerprint"]
    with zipfile.ZipFile(bundle) as archive:
        assert archive.read("files/admissions.csv") == content

    # Tampering with a released file breaks verification.
    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(bundle) as source, zipfile.ZipFile(tampered, "w") as target:
        for item in source.namelist():
            payload = source.read(item)
            if item == "files/admissions.csv":
                payload = payload.replace(b"north", b"North")
            target.writestr(item, payload)
    bad = verify_bundle(tampered, key["public_key_pem"])
    assert not bad.ok
    assert any("admissions.csv" in p for p in bad.problems)


def test_a_bundle_with_a_forged_manifest_or_an_extra_file_fails_verification(
    airlock: Airlock, session: Session, tmp_path: Path
) -> None:
    request = _released(airlock, session)
    from tre_platform.api.releases.bundle import public_key_pem, signing_key

    public = public_key_pem(signing_key(get_settings()))
    original = get_settings().resolved_data_dir / str(request.bundle_path)
    forged, extra = tmp_path / "forged.zip", tmp_path / "extra.zip"
    with zipfile.ZipFile(original) as source:
        names = source.namelist()
        with zipfile.ZipFile(forged, "w") as target:
            for item in names:
                payload = source.read(item)
                if item == "manifest.json":
                    payload = payload.replace(b'"threshold": 10', b'"threshold": 1')
                target.writestr(item, payload)
        with zipfile.ZipFile(extra, "w") as target:
            for item in names:
                target.writestr(item, source.read(item))
            target.writestr("files/rows.csv", b"person,value\n1,2\n")
    assert verify_bundle(original, public).ok
    assert "signature" in verify_bundle(forged, public).problems[0]
    assert any("rows.csv" in p for p in verify_bundle(extra, public).problems)


def test_a_disclosive_table_is_flagged_by_the_server_even_when_the_client_says_it_passed(
    airlock: Airlock, session: Session
) -> None:
    researcher = Actor.of(airlock.researcher)
    request = staged_request(
        session,
        researcher,
        airlock.project_id,
        with_small_cell(microdata()),
        protect=False,
        client_status="pass",
    )
    service.submit(session, researcher, request.id)
    session.commit()
    (item,) = request.files
    assert item.status == "fail"
    assert request.check_status == "fail"
    assert item.server_check["client_status"] == "pass"
    findings = " ".join(item.server_check["findings"])
    assert "published that the rules suppress" in findings
    assert "the server's re-check says 'fail'" in findings
    flagged = item.server_check["comparison"]["published_but_suppressed"]
    assert [["west"], ["f"]] in flagged
    # Checkers cannot approve it; they return it with what to change.
    with pytest.raises(Conflict, match="cannot be approved"):
        service.review(session, Actor.of(airlock.checkers[0]), request.id, "approve")
    session.rollback()
    service.review(session, Actor.of(airlock.checkers[0]), request.id, "return", "suppress the west cells")
    assert request.state is ReleaseState.returned


def test_a_table_that_does_not_match_its_declared_computation_fails(
    airlock: Airlock, session: Session
) -> None:
    researcher = Actor.of(airlock.researcher)
    frame = microdata()
    request = service.create_request(
        session, researcher, ReleaseCreate(project_id=airlock.project_id, title="t")
    )
    content, spec, data = count_table(frame)
    service.add_file(
        session,
        researcher,
        request.id,
        name="t.csv",
        kind="table",
        content=content.replace(b"All,", b"All,1"),  # the grand total row now claims other numbers
        spec=spec,
        data=data,
        data_name="d.parquet",
    )
    service.submit(session, researcher, request.id)
    assert request.files[0].status == "fail"
    assert request.files[0].server_check["comparison"]["mismatched"]


def test_the_requester_cannot_review_their_own_request(airlock: Airlock, session: Session) -> None:
    # mo is a project member and also an output checker.
    mo = Actor.of(airlock.member)
    request = staged_request(session, mo, airlock.project_id, microdata())
    service.submit(session, mo, request.id)
    session.commit()
    with pytest.raises(PolicyDenied) as denied:
        service.review(session, mo, request.id, "approve")
    assert any("cannot review" in r for r in denied.value.reasons)


def test_a_project_member_who_is_a_checker_cannot_review_a_colleagues_request(
    airlock: Airlock, session: Session
) -> None:
    researcher = Actor.of(airlock.researcher)
    request = staged_request(session, researcher, airlock.project_id, microdata())
    service.submit(session, researcher, request.id)
    session.commit()
    with pytest.raises(Forbidden, match="not independent"):
        service.review(session, Actor.of(airlock.member), request.id, "approve")


def test_the_same_checker_cannot_approve_twice(airlock: Airlock, session: Session) -> None:
    researcher = Actor.of(airlock.researcher)
    request = staged_request(session, researcher, airlock.project_id, microdata())
    service.submit(session, researcher, request.id)
    checker = Actor.of(airlock.checkers[0])
    service.review(session, checker, request.id, "approve")
    session.commit()
    with pytest.raises(PolicyDenied) as denied:
        service.review(session, checker, request.id, "approve")
    assert any("already reviewed" in r for r in denied.value.reasons)
    session.rollback()
    assert request.state is ReleaseState.in_review
    assert len(request.approvals) == 1


def test_a_researcher_outside_the_project_cannot_make_or_submit_requests(
    airlock: Airlock, session: Session, client: TestClient
) -> None:
    outsider = Actor.of(airlock.outsider)
    with pytest.raises(NotFound):
        service.create_request(session, outsider, ReleaseCreate(project_id=airlock.project_id, title="x"))
    session.rollback()
    # An administrator sees the project but is no accredited member: the policy refuses.
    with pytest.raises(PolicyDenied) as denied:
        service.create_request(
            session, Actor.of(airlock.admin), ReleaseCreate(project_id=airlock.project_id, title="x")
        )
    assert any("not a member" in r for r in denied.value.reasons)
    session.rollback()
    request = staged_request(session, Actor.of(airlock.researcher), airlock.project_id, microdata())
    refused = client.post(f"/api/v1/releases/{request.id}/submit", headers=airlock.headers("outsider"))
    assert refused.status_code == 404
    # A fellow member may see it but only the requester submits it.
    with pytest.raises(PolicyDenied) as not_theirs:
        service.submit(session, Actor.of(airlock.member), request.id)
    assert any("may submit it" in r for r in not_theirs.value.reasons)


def test_a_requester_whose_accreditation_was_revoked_cannot_submit(
    airlock: Airlock, session: Session
) -> None:
    from tre_platform.clock import clock

    researcher = Actor.of(airlock.researcher)
    request = staged_request(session, researcher, airlock.project_id, microdata())
    for accreditation in airlock.researcher.accreditations:
        accreditation.revoked_at = clock.now()
    session.commit()
    with pytest.raises(PolicyDenied) as denied:
        service.submit(session, researcher, request.id)
    assert any("revoked" in r for r in denied.value.reasons)


def test_reject_and_return_need_a_reason(airlock: Airlock, session: Session) -> None:
    researcher = Actor.of(airlock.researcher)
    request = staged_request(session, researcher, airlock.project_id, microdata())
    service.submit(session, researcher, request.id)
    with pytest.raises(InvalidInput, match="say why"):
        service.review(session, Actor.of(airlock.checkers[0]), request.id, "reject", "  ")


def test_a_resubmission_starts_a_new_round_where_old_approvals_do_not_count(
    airlock: Airlock, session: Session
) -> None:
    researcher = Actor.of(airlock.researcher)
    first, second = (Actor.of(c) for c in airlock.checkers[:2])
    request = staged_request(session, researcher, airlock.project_id, microdata())
    service.submit(session, researcher, request.id)
    service.review(session, first, request.id, "approve")
    service.review(session, second, request.id, "return", "add a justification")
    service.submit(session, researcher, request.id)
    assert request.round == 2
    assert request.approvals == []
    service.review(session, second, request.id, "approve")  # the checker who returned it may look again
    assert request.state is ReleaseState.in_review
    service.review(session, first, request.id, "approve")
    assert request.state is ReleaseState.approved


def test_only_members_download_and_only_after_release(airlock: Airlock, session: Session) -> None:
    request = _released(airlock, session)
    assert service.bundle_file(session, Actor.of(airlock.member), request.id).is_file()
    with pytest.raises(Forbidden):
        service.bundle_file(session, Actor.of(airlock.checkers[0]), request.id)
    draft = staged_request(session, Actor.of(airlock.researcher), airlock.project_id, microdata())
    with pytest.raises(Conflict, match="only a released one"):
        service.bundle_file(session, Actor.of(airlock.researcher), draft.id)


def test_release_keeps_every_released_table_cell_by_cell_for_differencing(
    airlock: Airlock, session: Session
) -> None:
    request = _released(airlock, session)
    (table,) = session.scalars(select(ReleasedTable).where(ReleasedTable.request_id == request.id)).all()
    assert table.project_id == airlock.project_id
    assert table.dataset_key == "+".join(sorted([airlock.hes_id, airlock.lfs_id]))
    cells = {tuple(c["labels"]): c["value"] for c in table.record["cells"]}
    frame = microdata()
    assert cells[("All", "All")] == len(frame)
    assert cells[("north", "f")] == int(((frame.region == "north") & (frame.sex == "f")).sum())


def test_a_table_that_differs_from_an_earlier_release_by_a_small_group_is_flagged(
    airlock: Airlock, session: Session
) -> None:
    """Released: the table without the west region (a filter). New: the same table over everyone. Its
    margins minus the earlier ones give the three people of the west region."""
    researcher = Actor.of(airlock.researcher)
    everyone = with_small_cell(microdata())
    first = service.create_request(
        session, researcher, ReleaseCreate(project_id=airlock.project_id, title="a")
    )
    spec = TableSpec(index=("sex",), filters=(Filter("region", "!=", "west"),), dataset="hes")
    without_west = everyone[everyone.region != "west"]
    _stage_table(session, researcher, first.id, "without-west.csv", spec, without_west)
    service.submit(session, researcher, first.id)
    assert first.files[0].status == "review"  # uploaded data, no view: at most review
    for checker in airlock.checkers[:2]:
        service.review(session, Actor.of(checker), first.id, "approve")
    service.release(session, researcher, first.id)
    session.commit()

    second = service.create_request(
        session, researcher, ReleaseCreate(project_id=airlock.project_id, title="b")
    )
    _stage_table(
        session, researcher, second.id, "all.csv", TableSpec(index=("sex",), dataset="hes"), everyone
    )
    service.submit(session, researcher, second.id)
    (item,) = second.files
    assert item.status == "fail"
    found = item.server_check["differencing"]["findings"]
    # The earlier table kept north, south and east; the new one recovers the rest (west) by sex exactly.
    recovered = {(tuple(f["cell"]["region"]), tuple(f["cell"]["sex"])): f["interval"] for f in found}
    assert recovered == {(("<any other>",), ("f",)): [2, 2], (("<any other>",), ("m",)): [1, 1]}
    assert {f["kind"] for f in found} == {"recoverable"}
    assert any(line.startswith("differencing:") for line in item.server_check["findings"])


def _stage_table(
    session: Session, requester: Actor, request_id: str, name: str, spec: TableSpec, frame: pd.DataFrame
) -> None:
    from tre_lib.disclosure import protect_table
    from tre_lib.outputs.specs import table_to_csv, write_data

    table = protect_table(frame, list(spec.index), list(spec.columns) or None, rules="default").table
    service.add_file(
        session,
        requester,
        request_id,
        name=name,
        kind="table",
        content=table_to_csv(table),
        spec=spec.to_dict(),
        data=write_data(frame[spec.needed_columns]),
        data_name=f"{name}.parquet",
    )


def test_every_step_is_audited(airlock: Airlock, session: Session) -> None:
    request = _released(airlock, session)
    actions = session.scalars(
        select(AuditEvent.action).where(AuditEvent.target_id == request.id).order_by(AuditEvent.seq)
    ).all()
    for expected in (
        "release.file.add",
        "release.submit",
        "release.checked",
        "release.check",
        "release.review",
        "release.approve",
        "release.bundle",
        "release.release",
    ):
        assert expected in actions
    assert "policy.review_release" in session.scalars(select(AuditEvent.action)).all()


def test_the_signing_key_is_created_once_with_mode_0600(airlock: Airlock) -> None:
    from tre_platform.api.releases.bundle import KEY_FILE, fingerprint, signing_key

    first = signing_key(get_settings())
    path = get_settings().resolved_data_dir / KEY_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    assert fingerprint(signing_key(get_settings())) == fingerprint(first)


@pytest.mark.parametrize(
    ("name", "kind", "content", "message"),
    [
        ("rows.parquet", "table", b"PAR1....", "must be one of .csv"),
        ("plot.png", "figure", b"not a png", "is not a PNG image"),
        ("notes.txt", "text", b"\xff\xfe\x00binary", "is not UTF-8 text"),
        ("plot.svg", "figure", b"<svg><script>alert(1)</script></svg>", "script"),
        ("../escape.txt", "text", b"hello", "not an allowed file name"),
        ("big.txt", "text", b"x" * 300_000, "at most 262144 bytes"),
        ("empty.md", "text", b"", "is empty"),
        ("data.csv", "microdata", b"a,b\n", "unknown output kind"),
    ],
)
def test_files_of_types_or_sizes_the_policy_does_not_allow_are_refused(
    airlock: Airlock, session: Session, name: str, kind: str, content: bytes, message: str
) -> None:
    researcher = Actor.of(airlock.researcher)
    request = service.create_request(
        session, researcher, ReleaseCreate(project_id=airlock.project_id, title="t")
    )
    with pytest.raises(InvalidInput, match=message):
        service.add_file(session, researcher, request.id, name=name, kind=kind, content=content)
    assert request.files == []


def test_a_table_without_its_data_or_with_a_bad_spec_is_refused(airlock: Airlock, session: Session) -> None:
    researcher = Actor.of(airlock.researcher)
    request = service.create_request(
        session, researcher, ReleaseCreate(project_id=airlock.project_id, title="t")
    )
    content, spec, data = count_table(microdata())
    with pytest.raises(InvalidInput, match="needs the data"):
        service.add_file(
            session, researcher, request.id, name="t.csv", kind="table", content=content, spec=spec
        )
    with pytest.raises(InvalidInput, match="unknown aggfunc"):
        service.add_file(
            session,
            researcher,
            request.id,
            name="t.csv",
            kind="table",
            content=content,
            spec={**spec, "aggfunc": "__import__"},
            data=data,
            data_name="d.parquet",
        )
    with pytest.raises(InvalidInput, match="lacks column"):
        service.add_file(
            session,
            researcher,
            request.id,
            name="t.csv",
            kind="table",
            content=content,
            spec={**spec, "values": "income", "aggfunc": "sum"},
            data=data,
            data_name="d.parquet",
        )


def test_regressions_are_refitted_and_their_degrees_of_freedom_checked(
    airlock: Airlock, session: Session
) -> None:
    from tre_lib.outputs.specs import RegressionSpec, coefficients_csv, fit_regression, write_data

    researcher = Actor.of(airlock.researcher)
    request = service.create_request(
        session, researcher, ReleaseCreate(project_id=airlock.project_id, title="r")
    )
    frame = microdata()
    spec = RegressionSpec(model="ols", outcome="cost", predictors=("age",), categorical=("sex",))
    fitted, _ = fit_regression(frame, spec)
    tiny = frame.head(8)
    tiny_fit, _ = fit_regression(tiny, spec)
    for name, data, result in (("model.csv", frame, fitted), ("tiny.csv", tiny, tiny_fit)):
        service.add_file(
            session,
            researcher,
            request.id,
            name=name,
            kind="regression",
            content=coefficients_csv(result),
            spec=spec.to_dict(),
            data=write_data(data[spec.needed_columns]),
            data_name=f"{name}.parquet",
        )
    service.submit(session, researcher, request.id)
    by_name = {f.name: f for f in request.files}
    assert by_name["model.csv"].status == "review"  # uploaded data, no view: at most review
    assert by_name["tiny.csv"].status == "fail"
    assert "fewer than the minimum of 10" in " ".join(by_name["tiny.csv"].server_check["findings"])


def test_figures_and_text_always_go_to_a_checker(airlock: Airlock, session: Session) -> None:
    researcher = Actor.of(airlock.researcher)
    request = service.create_request(
        session, researcher, ReleaseCreate(project_id=airlock.project_id, title="f")
    )
    png = b"\x89PNG\r\n\x1a\n" + bytes(64)
    service.add_file(session, researcher, request.id, name="plot.png", kind="figure", content=png)
    service.add_file(session, researcher, request.id, name="notes.md", kind="text", content=b"# Notes\n")
    service.submit(session, researcher, request.id)
    assert {f.status for f in request.files} == {"review"}
    assert request.check_status == "review"


def test_an_output_from_a_dataset_no_agreement_covers_cannot_be_submitted(
    airlock: Airlock, session: Session
) -> None:
    from tre_platform.api.agreements.models import DataSharingAgreement
    from tre_platform.clock import clock

    researcher = Actor.of(airlock.researcher)
    request = staged_request(session, researcher, airlock.project_id, microdata())
    for agreement in session.scalars(select(DataSharingAgreement)).unique():
        if agreement.owner.slug == "labour":
            agreement.revoked_at = clock.now()
    session.commit()
    with pytest.raises(Conflict, match="lfs"):
        service.submit(session, researcher, request.id)


def test_the_staged_data_is_kept_by_hash_and_a_changed_blob_is_refused(
    airlock: Airlock, session: Session
) -> None:
    from tre_platform.api.releases.files import request_dir

    researcher = Actor.of(airlock.researcher)
    request = staged_request(session, researcher, airlock.project_id, microdata())
    (item,) = request.files
    blob = request_dir(get_settings(), request.id) / "blobs" / item.sha256
    assert blob.read_bytes().startswith(b"region,")
    blob.write_bytes(b"region,f,m,All\nnorth,1,1,2\n")
    with pytest.raises(RuntimeError, match="changed after upload"):
        service.file_content(session, researcher, request.id, item.id)


def test_list_shows_checkers_submitted_requests_but_not_drafts(airlock: Airlock, session: Session) -> None:
    researcher = Actor.of(airlock.researcher)
    draft = staged_request(session, researcher, airlock.project_id, microdata())
    submitted = staged_request(session, researcher, airlock.project_id, microdata())
    service.submit(session, researcher, submitted.id)
    session.commit()
    seen = {r.id for r in service.list_requests(session, Actor.of(airlock.checkers[0]))}
    assert submitted.id in seen
    assert draft.id not in seen
    assert {draft.id, submitted.id} <= {r.id for r in service.list_requests(session, researcher)}
    assert service.list_requests(session, Actor.of(airlock.outsider)) == []


def _released(airlock: Airlock, session: Session):  # type: ignore[no-untyped-def]
    researcher = Actor.of(airlock.researcher)
    request = staged_request(session, researcher, airlock.project_id, microdata())
    service.submit(session, researcher, request.id)
    service.review(session, Actor.of(airlock.checkers[0]), request.id, "approve")
    service.review(session, Actor.of(airlock.checkers[1]), request.id, "approve")
    service.release(session, researcher, request.id)
    session.commit()
    return request


def test_bundle_download_over_http_is_a_zip(airlock: Airlock, session: Session, client: TestClient) -> None:
    request = _released(airlock, session)
    response = client.get(f"/api/v1/releases/{request.id}/bundle", headers=airlock.headers("researcher"))
    assert response.status_code == 200
    assert zipfile.is_zipfile(io.BytesIO(response.content))
    refused = client.get(f"/api/v1/releases/{request.id}/bundle", headers=airlock.headers("checker1"))
    assert refused.status_code == 403
