"""A data owner can list every release of their data, over the API and the CLI, and nobody else's."""

from __future__ import annotations

import json

from airlock_helpers import staged_request
from airlock_world import Airlock, microdata
from factories import make_org, make_token, make_user
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session
from test_release_cli import approve, submitted, tre_release

from tre_platform.api.datasets.models import Dataset
from tre_platform.api.releases import service


def test_the_data_owner_lists_every_release_of_their_data_over_api_and_cli(
    airlock: Airlock, session: Session, client: TestClient
) -> None:
    hes = session.get(Dataset, airlock.hes_id)
    assert hes is not None
    owner = make_user(session, username="olivia", roles=["data_owner"], organisation_id=hes.owner_org_id)
    stranger = make_user(
        session, username="sam", roles=["data_owner"], organisation_id=make_org(session, kind="data_owner").id
    )
    tokens = {"olivia": make_token(session, owner), "sam": make_token(session, stranger)}
    released = []
    for _ in range(2):
        request = submitted(session, airlock)
        approve(session, request.id, *airlock.checkers[:2])
        service.release(session, airlock.actor(airlock.researcher), request.id)
        session.commit()
        released.append(request.id)
    pending = submitted(session, airlock).id
    staged_request(session, airlock.actor(airlock.researcher), airlock.project_id, microdata())  # a draft

    def api(who: str, **params: str) -> list[str]:
        response = client.get(
            "/api/v1/releases", params=params, headers={"Authorization": f"Bearer {tokens[who]}"}
        )
        assert response.status_code == 200, response.text
        return [r["id"] for r in response.json()]

    def cli(who: str, *args: str) -> list[str]:
        code, out, err = tre_release("list", "--as", who, "--json", *args)
        assert code == 0, err
        return [r["id"] for r in json.loads(out)]

    assert sorted(api("olivia", state="released")) == sorted(released)
    assert sorted(cli("olivia", "--state", "released")) == sorted(released)
    # Past-draft requests on their data are visible too; drafts and other owners' data are not.
    for listing in (api, cli):
        assert set(listing("olivia")) == {*released, pending}
        assert listing("sam") == []
