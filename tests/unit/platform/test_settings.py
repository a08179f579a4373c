from __future__ import annotations

from pathlib import Path

import pytest

from tre_platform.settings import Environment, Settings


def test_database_defaults_to_sqlite_in_the_data_directory(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "d")
    assert settings.resolved_database_url == f"sqlite:///{(tmp_path / 'd').resolve() / 'tre.db'}"


def test_environment_variables_use_the_tre_prefix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TRE_DATABASE_URL", "postgresql+psycopg://u@h/db")
    monkeypatch.setenv("TRE_PORT", "9001")
    monkeypatch.setenv("TRE_TOTP_REQUIRED_ROLES", "admin, approver")
    settings = Settings()
    assert settings.resolved_database_url == "postgresql+psycopg://u@h/db"
    assert settings.port == 9001
    assert settings.totp_required_roles == ["admin", "approver"]


@pytest.mark.parametrize("placeholder", ["change-me", "CHANGEME", "secret", " password "])
@pytest.mark.parametrize("env", [Environment.prod, Environment.test])
def test_placeholder_secret_is_refused_outside_dev(placeholder: str, env: Environment) -> None:
    with pytest.raises(ValueError, match="TRE_SECRET_KEY is a placeholder"):
        Settings(env=env, secret_key=placeholder)


def test_placeholder_secret_is_allowed_in_dev() -> None:
    assert Settings(env=Environment.dev, secret_key="change-me").get_secret_key() == b"change-me"


def test_placeholder_kek_is_refused() -> None:
    with pytest.raises(ValueError, match="TRE_KEK"):
        Settings(env=Environment.prod, kek="changeme")


def test_secret_key_is_generated_once_into_the_data_directory(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    first = settings.get_secret_key()
    assert len(first) >= 48
    assert settings.get_secret_key() == first
    assert (tmp_path / "secret.key").stat().st_mode & 0o777 == 0o600


def test_secrets_never_show_in_repr() -> None:
    settings = Settings(secret_key="a-real-and-long-secret-value", kek="another-real-secret-value")
    assert "a-real-and-long-secret-value" not in repr(settings)
    assert "another-real-secret-value" not in str(settings.model_dump())


def test_bad_port_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="port"):
        Settings(port=70000)


def test_every_role_needs_a_second_factor_by_default() -> None:
    assert set(Settings(env=Environment.prod).totp_required_roles) == {
        "admin",
        "data_owner",
        "approver",
        "output_checker",
        "researcher",
    }


def test_leaving_researchers_without_a_second_factor_is_refused_in_prod() -> None:
    with pytest.raises(ValueError, match="TRE_TOTP_REQUIRED_ROLES leaves out researcher"):
        Settings(env=Environment.prod, totp_required_roles="admin,data_owner,approver,output_checker")


@pytest.mark.parametrize("env", [Environment.dev, Environment.test])
def test_dev_and_test_may_relax_the_second_factor(env: Environment) -> None:
    assert Settings(env=env, totp_required_roles="admin").totp_required_roles == ["admin"]


def test_a_placeholder_oidc_client_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="TRE_OIDC_CLIENT_SECRET is a placeholder"):
        Settings(env=Environment.prod, oidc_client_secret="changeme")


def test_the_secret_key_is_created_once_when_many_threads_ask_for_it_first(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    settings = Settings(data_dir=tmp_path)
    with ThreadPoolExecutor(max_workers=16) as pool:
        keys = set(pool.map(lambda _: settings.get_secret_key(), range(64)))
    assert len(keys) == 1  # one key, so nothing is ever signed with a key a later writer replaced
    assert (tmp_path / "secret.key").stat().st_mode & 0o777 == 0o600
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
