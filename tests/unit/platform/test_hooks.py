"""Enforcement after access changes runs when enabled, and not while suppressed or turned off."""

from __future__ import annotations

import pytest

import tre_platform.views.enforce as enforce
from tre_platform.actor import Actor
from tre_platform.hooks import access_changed, suppressed
from tre_platform.settings import get_settings


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[list[str] | None]:
    seen: list[list[str] | None] = []

    def fake(session: object, actor: object, *, project_ids: list[str] | None = None) -> object:
        seen.append(project_ids)
        return enforce.EnforcementReport()

    monkeypatch.setattr(enforce, "enforce_access", fake)
    monkeypatch.setenv("TRE_ENFORCE_ON_CHANGE", "true")
    get_settings.cache_clear()
    return seen


def test_enforces_the_named_projects(calls: list[list[str] | None]) -> None:
    access_changed(None, Actor.system(), ["p1"])  # type: ignore[arg-type]
    access_changed(None, Actor.system())  # type: ignore[arg-type]
    assert calls == [["p1"], None]


def test_suppressed_defers_enforcement_until_the_block_ends(calls: list[list[str] | None]) -> None:
    with suppressed():
        access_changed(None, Actor.system(), ["p1"])  # type: ignore[arg-type]
    assert calls == []
    access_changed(None, Actor.system(), ["p2"])  # type: ignore[arg-type]
    assert calls == [["p2"]]


def test_turned_off_by_setting(calls: list[list[str] | None], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRE_ENFORCE_ON_CHANGE", "false")
    get_settings.cache_clear()
    access_changed(None, Actor.system(), ["p1"])  # type: ignore[arg-type]
    assert calls == []
