"""`tre policy explain|validate` and GET /decisions/explain show decisions and why, to the right people."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from policy_db_world import DbWorld
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from tre_platform.api.audit.models import AuditEvent
from tre_platform.api.users.models import User
from tre_platform.db.session import make_session_factory
from tre_platform.errors import TreError
from tre_platform.policy.cli import policy_app
from tre_platform.policy.router import build_router

runner = CliRunner()


def test_cli_explains_a_member_everything_they_may_do(world: DbWorld) -> None:
    result = runner.invoke(policy_app, ["explain", "--user", "alice", "--project", "P1", "--json"])
    assert result.exit_code == 0, result.output
    decisions = json.loads(result.output)["decisions"]
    assert [(d["action"], d["resource"], d["decision"]) for d in decisions] == [
        ("spawn_workspace", "P1", "allow"),
        ("read_dataset", "census", "allow"),
        ("read_dataset", "hes", "allow"),
    ]
    assert decisions[2]["agreement"] == "DSA-7"


def test_cli_explains_a_deny_in_words_and_exits_1(world: DbWorld) -> None:
    result = runner.invoke(
        policy_app,
        ["explain", "--user", "carol", "--project", "P1", "--dataset", "hes", "--action", "read_dataset"],
    )
    assert result.exit_code == 1
    assert "DENY" in result.output
    assert "carol is not a member of project P1" in result.output
    assert "project.not_member" in result.output


def test_cli_explain_is_audited(world: DbWorld, session: Session) -> None:
    runner.invoke(
        policy_app, ["explain", "--user", "carol", "--project", "P1", "--action", "spawn_workspace"]
    )
    events = session.execute(select(AuditEvent)).scalars().all()
    assert [(e.actor, e.action, e.decision) for e in events] == [("carol", "policy.spawn_workspace", "deny")]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--user", "nobody", "--project", "P1"], "no user 'nobody'"),
        (["--user", "alice", "--project", "P9"], "no project 'P9'"),
        (["--user", "alice", "--project", "P1", "--action", "fly"], "explain shows"),
        (["--user", "alice", "--project", "P1", "--action", "read_dataset"], "give --dataset"),
    ],
)
def test_cli_explain_says_what_to_fix(world: DbWorld, args: list[str], message: str) -> None:
    result = runner.invoke(policy_app, ["explain", *args])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_cli_validate_checks_the_bundle_and_runs_the_golden_cases() -> None:
    result = runner.invoke(policy_app, ["validate", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["ok"] and report["cases"] >= 40 and report["failed"] == []
    assert report["policies"] > 30


def test_cli_validate_names_file_and_line_of_a_broken_bundle(tmp_path: pytest.TempPathFactory) -> None:
    import shutil

    from tre_platform.settings import REPO_ROOT

    target = tmp_path / "policies"  # type: ignore[operator]
    shutil.copytree(REPO_ROOT / "policies", target)
    (target / "cedar" / "20_researcher.cedar").write_text("permit (principal, action, resource) when {\n")
    result = runner.invoke(policy_app, ["validate", "--dir", str(target)])
    assert result.exit_code == 1
    assert "20_researcher.cedar:" in result.output.replace("\n", "")


# The API route ---------------------------------------------------------------------------------


@pytest.fixture
def client(world: DbWorld, engine: Engine) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """The explain router mounted as the lead mounts it, with a header standing in for sign-in."""
    factory = make_session_factory(engine)

    def get_session() -> Iterator[Session]:
        with factory() as db:
            yield db
            db.commit()

    def current_user(request: Request) -> User:
        with factory() as db:
            user = (
                db.execute(select(User).where(User.username == request.headers["x-user"]))
                .unique()
                .scalar_one()
            )
            db.expunge(user)
            return user

    app = FastAPI()
    app.include_router(build_router(current_user=current_user, get_session=get_session), prefix="/api/v1")

    @app.exception_handler(TreError)
    def _tre_error(_request: Request, exc: TreError) -> JSONResponse:
        return JSONResponse({"error": exc.code, "message": exc.message}, status_code=exc.status_code)

    with TestClient(app) as test_client:
        yield test_client, {name: user.id for name, user in world.users.items()}


def test_api_explains_the_callers_own_decisions(client: tuple[TestClient, dict[str, str]]) -> None:
    http, _ = client
    response = http.get("/api/v1/decisions/explain", params={"project": "P1"}, headers={"x-user": "alice"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["user"] == "alice" and body["project"] == "P1"
    assert [d["decision"] for d in body["decisions"]] == ["allow", "allow", "allow"]


def test_api_shows_which_condition_failed(client: tuple[TestClient, dict[str, str]]) -> None:
    http, _ = client
    response = http.get(
        "/api/v1/decisions/explain",
        params={"project": "P1", "dataset": "lfs", "action": "read_dataset"},
        headers={"x-user": "alice"},
    )
    decision = response.json()["decisions"][0]
    assert decision["decision"] == "deny"
    assert decision["reasons"] == ["the approval of project P1 does not list dataset lfs"]
    assert decision["policy_ids"] == ["dataset.not_listed"]


def test_api_lets_an_admin_explain_anyone(client: tuple[TestClient, dict[str, str]]) -> None:
    http, ids = client
    response = http.get(
        "/api/v1/decisions/explain",
        params={"project": "P1", "user": ids["carol"]},
        headers={"x-user": "adam"},
    )
    assert response.status_code == 200
    assert response.json()["decisions"][0]["reasons"] == ["carol is not a member of project P1"]


def test_api_refuses_to_explain_someone_else_to_a_non_admin(
    client: tuple[TestClient, dict[str, str]],
) -> None:
    http, _ = client
    response = http.get(
        "/api/v1/decisions/explain", params={"project": "P1", "user": "alice"}, headers={"x-user": "carol"}
    )
    assert response.status_code == 403
    assert "only your own" in response.json()["message"]


def test_api_unknown_objects_are_404(client: tuple[TestClient, dict[str, str]]) -> None:
    http, _ = client
    response = http.get("/api/v1/decisions/explain", params={"project": "NOPE"}, headers={"x-user": "alice"})
    assert response.status_code == 404


def test_api_does_not_tell_a_non_member_whether_a_project_exists(
    client: tuple[TestClient, dict[str, str]],
) -> None:
    http, _ = client
    answers = {
        code: http.get("/api/v1/decisions/explain", params={"project": code}, headers={"x-user": "carol"})
        for code in ("P1", "NOPE")  # P1 exists, carol is not in it; NOPE does not exist
    }
    assert {code: r.status_code for code, r in answers.items()} == {"P1": 404, "NOPE": 404}
    real, missing = (answers[code].json() for code in ("P1", "NOPE"))
    assert real["error"] == missing["error"]
    assert real["message"].replace("'P1'", "'X'") == missing["message"].replace("'NOPE'", "'X'")
    assert "that you may see" in real["message"]


def test_api_refuses_other_users_before_looking_them_up(client: tuple[TestClient, dict[str, str]]) -> None:
    http, _ = client
    for user in ("alice", "nobody-of-that-name"):
        response = http.get(
            "/api/v1/decisions/explain", params={"project": "P1", "user": user}, headers={"x-user": "carol"}
        )
        assert response.status_code == 403, user


def test_the_mounted_router_takes_sign_in_and_sessions_from_api_deps() -> None:
    deps = pytest.importorskip("tre_platform.api.deps")
    from tre_platform.policy import router as router_module

    route = next(r for r in router_module.router.routes if getattr(r, "path", "") == "/decisions/explain")
    calls = {dependency.call for dependency in route.dependant.dependencies}  # type: ignore[attr-defined]
    assert deps.get_session in calls
    expected_user = getattr(deps, "current_user", None)
    if expected_user is not None:
        assert expected_user in calls
