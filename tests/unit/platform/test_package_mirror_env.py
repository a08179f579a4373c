"""A workspace's pip is pointed at the vetted mirror, and at nothing the host's pip configuration names."""

from __future__ import annotations

import os

import pytest

from tre_platform.api.packages.mirror import index_url
from tre_platform.hub.workspace import workspace_env
from tre_platform.settings import get_settings


def test_a_workspace_installs_from_the_mirror_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRE_PACKAGE_MIRROR_PORT", "4141")
    get_settings.cache_clear()
    env = workspace_env("P-1", "/views", get_settings(), api_url="", token="")  # type: ignore[arg-type]
    assert env["PIP_INDEX_URL"] == "http://127.0.0.1:4141/simple/" == index_url()
    assert env["PIP_CONFIG_FILE"] == os.devnull
    assert not any(k in env for k in ("PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS"))


def test_the_index_url_takes_the_host_a_workspace_reaches_the_mirror_at() -> None:
    assert index_url(host="10.200.0.1") == "http://10.200.0.1:3141/simple/"
