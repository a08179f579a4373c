from factories import World
from fastapi.testclient import TestClient


def test_whoami_with_bearer_token_names_the_user(client: TestClient, world: World) -> None:
    response = client.get("/api/v1/auth/whoami", headers=world.headers("researcher"))
    assert response.status_code == 200, response.text
    assert response.json()["user"]["username"] == "researcher"
