"""Fixtures of the policy unit tests: the shipped engine and the golden-case world."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tre_platform.policy import PolicyEngine
from tre_platform.settings import REPO_ROOT

POLICIES = REPO_ROOT / "policies"


@pytest.fixture(scope="session")
def policy_engine() -> PolicyEngine:
    return PolicyEngine.load(POLICIES)


@pytest.fixture
def world_data() -> dict[str, Any]:
    """A fresh copy of policies/cases/world.json to change freely."""
    data: dict[str, Any] = json.loads((POLICIES / "cases" / "world.json").read_text())
    return data
