"""Pseudonymisation and key management: keyed HMAC-SHA256 on every engine, HKDF, envelope-encrypted keys.

Typical use in a view build::

    ring = KeyRing(settings.key_dir, load_kek(settings.tre_kek, settings.tre_kek_file))
    version = ring.active_version()
    k_project = derive_project_key(ring.get(version), project.id, version)
    view = spark_pseudonymise(df, ["person_id"], k_project)            # Spark DataFrame
    ids = hmac_sha256(pandas_df["person_id"], k_project)                # pandas / polars / dask / lists
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tre_lib.pseudonymise._core import HmacKey, fast_hmac_available
from tre_lib.pseudonymise.errors import (
    InvalidKeyError,
    KekConfigError,
    KeyExistsError,
    KeyManagementError,
    KeyNotFoundError,
    KeyRingCorruptError,
    KeyUnwrapError,
    PseudonymiseError,
    UnsupportedValueError,
)
from tre_lib.pseudonymise.hmac_engines import hmac_dask, hmac_polars, hmac_sha256
from tre_lib.pseudonymise.keys import (
    KeyEncryptionKey,
    KeyRing,
    KeyVersion,
    LocalKek,
    MasterKeyStore,
    derive_index_key,
    derive_project_key,
    encode_key,
    generate_kek,
    generate_master_key,
    hkdf_sha256,
    load_kek,
)

if TYPE_CHECKING:
    from tre_lib.pseudonymise.spark import spark_hmac_sha256, spark_pseudonymise

__all__ = [
    "HmacKey",
    "InvalidKeyError",
    "KekConfigError",
    "KeyEncryptionKey",
    "KeyExistsError",
    "KeyManagementError",
    "KeyNotFoundError",
    "KeyRing",
    "KeyRingCorruptError",
    "KeyUnwrapError",
    "KeyVersion",
    "LocalKek",
    "MasterKeyStore",
    "PseudonymiseError",
    "UnsupportedValueError",
    "derive_index_key",
    "derive_project_key",
    "encode_key",
    "fast_hmac_available",
    "generate_kek",
    "generate_master_key",
    "hkdf_sha256",
    "hmac_dask",
    "hmac_polars",
    "hmac_sha256",
    "load_kek",
    "spark_hmac_sha256",
    "spark_pseudonymise",
]


def __getattr__(name: str) -> Any:
    # The Spark functions import pandas and pyarrow; load them only when asked for.
    if name in ("spark_hmac_sha256", "spark_pseudonymise"):
        from tre_lib.pseudonymise import spark

        return getattr(spark, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
