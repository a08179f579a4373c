"""Schemathesis against the real application's OpenAPI document, as each role.

Every operation the document lists is called with generated input (valid and invalid) by a researcher, an
output checker, a data owner and an administrator of the standard world. Whatever is sent, the answer must
be no server error, a status the document lists for that operation, and a body and content type that match
what the document says for that status. Bounded (``TRE_FUZZ_EXAMPLES`` inputs per operation and role,
default 4) so the file runs in a few minutes; raise it for a longer campaign.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import schemathesis
from factories import World
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

#: Generated inputs per operation and role.
FUZZ_EXAMPLES = int(os.environ.get("TRE_FUZZ_EXAMPLES", "4"))
ROLES = ("researcher", "output_checker", "data_owner", "admin")
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance, content_type_conformance]


def _fuzz(operation: Any, headers: dict[str, str]) -> None:
    @given(case=operation.as_strategy())
    @settings(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS)

    run()


@pytest.mark.parametrize("role", ROLES)
def test_no_input_gets_a_server_error_or_an_undocumented_answer(
    role: str, client: TestClient, world: World
) -> None:
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", client.app)
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        try:
            _fuzz(operation, world.headers(role))
        except (Exception, BaseExceptionGroup) as exc:  # collected, then reported all together
            found = exc.exceptions if isinstance(exc, BaseExceptionGroup) else (exc,)
            failures.append(f"{operation.label}: " + "\n".join(str(e) for e in found)[:3000])
    assert operations > 50
    assert not failures, f"{len(failures)} of {operations} operations failed:\n\n" + "\n\n".join(failures)


#: The list endpoints that take paging.
PAGED = ("/orgs", "/users", "/projects", "/datasets", "/agreements", "/audit/events", "/releases")


@pytest.mark.parametrize("path", PAGED)
def test_an_offset_past_64_bits_is_refused_with_422_not_a_server_error(
    path: str, client: TestClient, world: World
) -> None:
    response = client.get(f"/api/v1{path}?offset={2**63}", headers=world.headers("admin"))
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "offset"


@pytest.mark.parametrize("step", ["archive", "destroy"])
def test_a_version_number_past_64_bits_is_refused_with_422_not_a_server_error(
    step: str, client: TestClient, world: World
) -> None:
    response = client.post(
        f"/api/v1/datasets/{world.ids['hes']}/versions/{2**63}/{step}",
        json={"reason": "retention reached"},
        headers=world.headers("admin"),
    )
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "version"
