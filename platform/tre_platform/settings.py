"""The one typed settings object of the control plane.

Every option is read from the environment with the ``TRE_`` prefix (``TRE_DATABASE_URL``, ``TRE_DATA_DIR``
...) or from a ``.env`` file in the working directory. Nothing else in the code base reads ``os.environ``.
"""

from __future__ import annotations

import contextlib
import enum
import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

#: Values that look like somebody forgot to set a real secret. Refused unless TRE_ENV=dev.
PLACEHOLDER_SECRETS = frozenset(
    {"", "change-me", "changeme", "change_me", "secret", "password", "placeholder", "dev", "test", "xxx"}
)

#: Roles whose users sign in with a second factor by default (every role; only dev and test may relax it).
SECOND_FACTOR_ROLES = ("admin", "data_owner", "approver", "output_checker", "researcher")

REPO_ROOT = Path(__file__).resolve().parents[2]


class Environment(enum.StrEnum):
    dev = "dev"
    test = "test"
    prod = "prod"


class StorageMode(enum.StrEnum):
    """How project storage is separated on this host."""

    #: Per-project Unix groups, per-researcher Unix users; needs root. The default.
    unix = "unix"
    #: No separation at all: for a laptop without root, with synthetic data only. Loudly labelled.
    insecure_single_user = "insecure-single-user"


class SettingsError(ValueError):
    """The configuration cannot be used; the message says which variable to fix."""


class Settings(BaseSettings):
    """Configuration of a tre deployment. See the README's configuration table."""

    model_config = SettingsConfigDict(env_prefix="TRE_", env_file=".env", extra="ignore")

    env: Environment = Field(Environment.prod, description="dev | test | prod; dev relaxes secret checks")
    data_dir: Path = Field(Path(".tre"), description="where the database, keys, datasets and views live")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default SQLite in the data directory")
    secret_key: SecretStr | None = Field(
        None, description="signs sessions and CSRF tokens; generated into the data directory when unset"
    )
    kek: SecretStr | None = Field(
        None, description="key-encryption key for the master key (base64, 32 bytes)"
    )
    kek_file: Path | None = Field(None, description="file holding the key-encryption key instead of TRE_KEK")
    audit_witness_file: Path | None = Field(
        None,
        description="append-only log of every audit chain head, outside the data directory (default: "
        "<data dir>.witness/audit-witness.log); put it where whoever can write the database and the data "
        "directory cannot rewrite it (another filesystem, chattr +a, a log host), see ADR 0015",
    )
    audit_witness_append_only: bool = Field(
        True, description="make the witness log append-only (chattr +a) when it is created; needs root"
    )
    policies_dir: Path = Field(REPO_ROOT / "policies", description="Cedar policies and disclosure profiles")
    policy_verify: bool = Field(
        False,
        description=(
            "Cedar also evaluates every candidate of every decision and the compiled policies must agree "
            "(each allow is decided by Cedar regardless); the test suite sets it"
        ),
    )
    host: str = Field("127.0.0.1", description="control-plane bind address")
    port: int = Field(8000, ge=1, le=65535, description="control-plane port")
    public_url: str | None = Field(None, description="external URL of the control plane")
    hub_url: str = Field("http://127.0.0.1:8081", description="external URL of JupyterHub")
    max_body_bytes: int = Field(1_048_576, ge=1024, description="largest accepted request body (bytes)")
    max_upload_bytes: int = Field(
        2 * 1024**3, ge=1024, description="largest accepted dataset delivery upload (bytes)"
    )
    ingest_pause_at: str | None = Field(
        None,
        description=(
            "tests only: an ingest pauses at this publication stage (see pipelines.publish.checkpoint) so a "
            "test can kill it there; ignored when env=prod"
        ),
    )
    session_ttl_minutes: int = Field(480, ge=5, description="browser session lifetime")
    token_ttl_days: int = Field(90, ge=1, description="default API token lifetime")
    totp_required_roles: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(SECOND_FACTOR_ROLES),
        description=(
            "roles whose users must pass a second factor (comma-separated); every role by default, and "
            "leaving one out is refused outside dev and test"
        ),
    )
    cookie_secure: bool = Field(False, description="mark cookies Secure (set true behind HTTPS)")
    login_max_failures: int = Field(
        5, ge=1, description="failed sign-in steps of one account, within the window, that lock it"
    )
    login_max_failures_per_client: int = Field(
        20, ge=1, description="failed sign-in steps from one client address, within the window, that lock it"
    )
    login_failure_window_minutes: int = Field(
        15, ge=1, description="how far back failed sign-ins count, and how long a lockout lasts"
    )
    # Single sign-on (OpenID Connect) ----------------------------------------------------------------
    oidc_issuer: str | None = Field(
        None, description="OpenID Connect issuer URL; set it (with the client id and secret) to offer SSO"
    )
    oidc_client_id: str | None = Field(None, description="this deployment's client id at the OIDC provider")
    oidc_client_secret: SecretStr | None = Field(None, description="the OIDC client's secret")
    oidc_user_claim: str = Field(
        "email",
        description=(
            "the ID-token claim naming the tre user: email (matched to the user's email; the provider must "
            "say email_verified) or preferred_username (matched to the username)"
        ),
    )
    oidc_mfa_amr: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description=(
            "amr values (comma-separated, e.g. mfa,otp,hwk) that count as the second factor; "
            "none by default, so TOTP still applies after SSO"
        ),
    )
    oidc_mfa_acr: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="acr values (comma-separated) that count as the second factor"
    )
    spark_master: str = Field("local[2]", description="Spark master for pipelines and workspaces")
    dask_scheduler: str | None = Field(None, description="Dask scheduler address; default a LocalCluster")

    # Workspaces ---------------------------------------------------------------------------------
    storage_mode: StorageMode = Field(
        StorageMode.unix,
        description="unix (per-project groups, needs root) | insecure-single-user (laptops, synthetic data)",
    )
    workspace_venv: Path = Field(
        Path("/opt/tre/workspace-venv"),
        description="environment the single-user servers run in (readable by researchers' Unix users)",
    )
    hub_bind_url: str = Field("http://127.0.0.1:8081", description="where JupyterHub's proxy listens")
    hub_api_port: int = Field(8082, ge=1, le=65535, description="port of the hub's own API (loopback)")
    proxy_api_port: int = Field(8083, ge=1, le=65535, description="configurable-http-proxy API port")
    workspace_mem_limit: str = Field("4G", description="memory a single-user server may use")
    workspace_cpu_limit: float = Field(2.0, gt=0, description="CPUs a single-user server may use")
    workspace_idle_timeout: int = Field(3600, ge=60, description="seconds before an idle server is culled")
    workspace_token_hours: int = Field(12, ge=1, le=168, description="lifetime of a workspace's API token")
    spark_conf_json: str = Field("", description="extra Spark conf for workspaces (JSON object)")
    workspace_dask_scheduler: str | None = Field(None, description="Dask scheduler for workspaces")
    workspace_spark_master: str | None = Field(
        None, description="Spark master for workspaces (default local[*] inside the server)"
    )
    # Vetted package mirror (tre_platform.api.packages) --------------------------------------------
    package_mirror_port: int = Field(
        3141, ge=1, le=65535, description="port of the vetted package mirror (loopback)"
    )
    package_wheelhouse: Path | None = Field(
        None, description="directory of approved wheels the mirror serves (default: <data dir>/wheelhouse)"
    )
    package_base_set: bool = Field(
        True,
        description="tre up approves the workspace environment's packages into the mirror (background)",
    )
    package_base_requirements: Path | None = Field(
        None,
        description=(
            "pinned requirements (name==version lines) of the base set; default: `pip freeze` of the "
            "workspace environment"
        ),
    )
    workspace_sealed: bool = Field(
        True,
        description="each workspace in its own network namespace, mount namespace and cgroup (ADR 0012); "
        "may be off only in insecure-single-user mode",
    )
    workspace_subnet: str = Field(
        "10.213.0.0/16", description="IPv4 range the sealed workspaces' /30 links are taken from"
    )
    enforce_on_change: bool = Field(
        True,
        description="after a revocation, expiry or approval change: rebuild views, stop refused workspaces",
    )
    enforcer_class: str = Field(
        "tre_platform.views.enforce:ViewEnforcer",
        description="the Enforcer the domains' access_changed calls ('module:Class', see enforcement.py)",
    )
    workspace_control_class: str = Field(
        "tre_platform.hub.client:HubClient",
        description="lists and stops running workspaces ('module:Class' with from_settings())",
    )
    scheduler_enabled: bool = Field(
        True, description="`tre up` runs the expiry (every minute) and retention (daily) jobs in-process"
    )

    @field_validator("totp_required_roles", "oidc_mfa_amr", "oidc_mfa_acr", mode="before")
    @classmethod
    def _split_roles(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _refuse_unsealed_workspaces(self) -> Settings:
        # Off only where nothing is separated anyway (insecure single-user mode), or outside production
        # (the workspace benchmark times a spawn without sealing against one with it, ADR 0012).
        if (
            not self.workspace_sealed
            and self.env is Environment.prod
            and self.storage_mode is StorageMode.unix
        ):
            raise SettingsError(
                "TRE_WORKSPACE_SEALED=false is refused in production: a workspace would reach the network, "
                "the host's services and other workspaces (ADR 0012)"
            )
        return self

    @model_validator(mode="after")
    def _refuse_placeholders(self) -> Settings:
        missing = [role for role in SECOND_FACTOR_ROLES if role not in self.totp_required_roles]
        if missing and self.env is Environment.prod:
            raise SettingsError(
                f"TRE_TOTP_REQUIRED_ROLES leaves out {', '.join(missing)}: every role signs in with a second "
                "factor outside dev and test; unset it, or set TRE_ENV=dev for a throw-away setup"
            )
        if self.env is Environment.dev:
            return self
        for name in ("secret_key", "kek", "oidc_client_secret"):
            value: SecretStr | None = getattr(self, name)
            if value is not None and value.get_secret_value().strip().lower() in PLACEHOLDER_SECRETS:
                raise SettingsError(
                    f"TRE_{name.upper()} is a placeholder value; set a real secret "
                    f"(or unset it to have one generated), or set TRE_ENV=dev for a throw-away setup"
                )
        return self

    # Derived values -----------------------------------------------------------------------------

    @property
    def resolved_data_dir(self) -> Path:
        return self.data_dir.expanduser().resolve()

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.resolved_data_dir / 'tre.db'}"

    @property
    def resolved_audit_witness_file(self) -> Path:
        if self.audit_witness_file is not None:
            return self.audit_witness_file.expanduser().resolve()
        data = self.resolved_data_dir
        return data.with_name(f"{data.name}.witness") / "audit-witness.log"

    def ensure_data_dir(self) -> Path:
        path = self.resolved_data_dir
        path.mkdir(parents=True, exist_ok=True, mode=0o750)
        return path

    @property
    def resolved_wheelhouse(self) -> Path:
        """Where the mirror's approved wheels live."""
        base = self.package_wheelhouse or self.resolved_data_dir / "wheelhouse"
        return base.expanduser().resolve()

    @property
    def demo_kek_file(self) -> Path:
        return self.resolved_data_dir / "demo-kek.key"

    def kek_source(self) -> tuple[SecretStr | None, Path | None]:
        """Where the key-encryption key comes from: TRE_KEK, TRE_KEK_FILE, or the demo's generated file.

        The demo file (written by ``tre up --demo``) sits beside the keys it protects, which defeats the
        envelope: it is for throw-away demo data only, and ``tre up`` says so when it creates it.
        """
        if self.kek is not None or self.kek_file is not None:
            return self.kek, self.kek_file
        if self.demo_kek_file.exists():
            return None, self.demo_kek_file
        return None, None

    def create_demo_kek(self) -> Path:
        """Generate the demo key-encryption key into the data directory (mode 0600), once."""
        import base64

        path = self.demo_kek_file
        if not path.exists():
            self.ensure_data_dir()
            _create_once(path, base64.b64encode(secrets.token_bytes(32)).decode())
        return path

    def get_secret_key(self) -> bytes:
        """The signing secret: TRE_SECRET_KEY, or one generated once into the data directory (mode 0600)."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value().encode()
        path = self.ensure_data_dir() / "secret.key"
        if not path.exists():
            _create_once(path, secrets.token_urlsafe(48))
        return path.read_text().strip().encode()


def _create_once(path: Path, content: str) -> None:
    """Write a new secret file (mode 0600) unless one exists: the first writer wins, atomically.

    Threads and processes may race to create the same key at first use; a plain write-then-rename would
    let a later writer replace a key something was already signed with. ``os.link`` of a complete
    temporary file (a name unique to this writer) refuses an existing target, so every racer ends up
    reading the one winner's key, and nobody ever sees a half-written file.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(content)
        with contextlib.suppress(FileExistsError):  # another writer won: its key is the key
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once. Tests call ``get_settings.cache_clear()`` after changing env."""
    return Settings()
