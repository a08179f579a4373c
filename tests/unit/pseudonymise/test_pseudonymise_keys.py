"""HKDF derivation, envelope encryption with a local KEK, and the versioned key ring."""

from __future__ import annotations

import base64
import json
import logging
import pickle
import stat
from pathlib import Path

import pytest
from pydantic import SecretStr

from tre_lib.pseudonymise import (
    InvalidKeyError,
    KekConfigError,
    KeyExistsError,
    KeyNotFoundError,
    KeyRing,
    KeyUnwrapError,
    LocalKek,
    derive_index_key,
    derive_project_key,
    hkdf_sha256,
)
from tre_lib.pseudonymise.errors import KeyRingCorruptError
from tre_lib.pseudonymise.keys import KeyEncryptionKey, encode_key, generate_kek, load_kek


# ------------------------------------------------------------------------------------------------ HKDF
def test_hkdf_matches_rfc5869_test_case_1():
    okm = hkdf_sha256(
        master=bytes.fromhex("0b" * 22),
        info=bytes.fromhex("f0f1f2f3f4f5f6f7f8f9"),
        length=42,
        salt=bytes.fromhex("000102030405060708090a0b0c"),
    )
    assert okm.hex() == (
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    )


def test_hkdf_matches_rfc5869_test_case_3_without_salt_or_info():
    okm = hkdf_sha256(bytes.fromhex("0b" * 22), b"", length=42)
    assert okm.hex() == (
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"
    )


def test_project_key_is_hkdf_of_the_documented_info_string():
    master = bytes(range(32))
    assert derive_project_key(master, "P-2024-017", 3) == hkdf_sha256(master, b"tre/project/P-2024-017|3")
    assert derive_index_key(master, "person", 1) == hkdf_sha256(master, b"tre/index/person|1")


def test_project_keys_differ_by_project_version_and_kind():
    master = bytes(range(32))
    keys = {
        derive_project_key(master, "A", 1),
        derive_project_key(master, "B", 1),
        derive_project_key(master, "A", 2),
        derive_project_key(master, "A|1", 2),
        derive_index_key(master, "A", 1),
    }
    assert len(keys) == 5
    assert all(len(k) == 32 for k in keys)


@pytest.mark.parametrize("version", [0, -1, True, "1", 1.0])
def test_derivation_refuses_a_bad_key_version(version: object):
    with pytest.raises(InvalidKeyError, match="key_version"):
        derive_project_key(bytes(32), "P", version)  # type: ignore[arg-type]


def test_derivation_refuses_a_short_master_or_empty_project():
    with pytest.raises(InvalidKeyError, match="master key"):
        derive_project_key(b"password", "P", 1)
    with pytest.raises(InvalidKeyError, match="project_id"):
        derive_project_key(bytes(32), "", 1)


# --------------------------------------------------------------------------------------------- KEK
def test_local_kek_round_trips_and_binds_the_context():
    kek = LocalKek(generate_kek())
    dek = bytes(range(32))
    blob = kek.wrap(dek, context=b"tre/master/1")
    assert dek not in blob
    assert kek.unwrap(blob, context=b"tre/master/1") == dek
    with pytest.raises(KeyUnwrapError):
        kek.unwrap(blob, context=b"tre/master/2")
    assert isinstance(kek, KeyEncryptionKey)


def test_unwrapping_with_another_kek_says_the_kek_does_not_match():
    blob = LocalKek(generate_kek()).wrap(bytes(32))
    with pytest.raises(KeyUnwrapError, match="does not match the one that wrapped"):
        LocalKek(generate_kek()).unwrap(blob)


def test_a_tampered_blob_is_refused():
    kek = LocalKek(generate_kek())
    blob = bytearray(kek.wrap(bytes(32)))
    blob[-1] ^= 1
    with pytest.raises(KeyUnwrapError):
        kek.unwrap(bytes(blob))


def test_kek_repr_and_pickle_never_expose_the_key():
    raw = generate_kek()
    kek = LocalKek(raw)
    for text in (repr(kek), str(kek)):
        assert raw.hex() not in text and encode_key(raw) not in text and str(raw) not in text
        assert kek.key_id in text
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(kek)


@pytest.mark.parametrize("encode", [bytes.hex, encode_key, lambda b: base64.urlsafe_b64encode(b).decode()])
def test_load_kek_accepts_hex_and_base64(encode):
    raw = generate_kek()
    assert load_kek(encode(raw)).key_id == LocalKek(raw).key_id
    assert load_kek(SecretStr(encode(raw))).key_id == LocalKek(raw).key_id


def test_load_kek_accepts_raw_bytes_and_text_bytes():
    raw = generate_kek()
    assert load_kek(raw).key_id == load_kek(raw.hex().encode()).key_id == LocalKek(raw).key_id


def test_load_kek_reads_a_file_of_text_or_raw_bytes(tmp_path: Path):
    raw = generate_kek()
    text_file, raw_file = tmp_path / "kek.txt", tmp_path / "kek.bin"
    text_file.write_text(encode_key(raw) + "\n")
    raw_file.write_bytes(raw)
    assert load_kek(path=text_file).key_id == LocalKek(raw).key_id
    assert load_kek(path=raw_file).key_id == LocalKek(raw).key_id


def test_from_environ_reads_tre_kek():
    raw = generate_kek()
    assert LocalKek.from_environ({"TRE_KEK": raw.hex()}).key_id == LocalKek(raw).key_id


@pytest.mark.parametrize(
    ("value", "path", "message"),
    [
        (None, None, "no key-encryption key configured"),
        ("00" * 16, None, "exactly 32 bytes"),
        ("not a key", None, "exactly 32 bytes"),
        ("00" * 32, "/some/file", "set only one"),
        (None, "/nonexistent/tre/kek", "cannot read the KEK file"),
    ],
)
def test_load_kek_errors_say_what_to_fix(value, path, message):
    with pytest.raises(KekConfigError, match=message):
        load_kek(value, path)


# ---------------------------------------------------------------------------------------- key ring
@pytest.fixture
def kek() -> LocalKek:
    return LocalKek(generate_kek())


@pytest.fixture
def ring(tmp_path: Path, kek: LocalKek) -> KeyRing:
    return KeyRing(tmp_path / "keyring", kek)


def test_an_empty_ring_has_no_active_version(ring: KeyRing):
    with pytest.raises(KeyNotFoundError, match="create one"):
        ring.active_version()


def test_create_writes_one_private_json_file_per_version(ring: KeyRing, kek: LocalKek):
    assert ring.create() == 1
    master = ring.get(1)
    assert len(master) == 32
    path = ring.directory / "master-v000001.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(ring.directory.stat().st_mode) == 0o700
    record = json.loads(path.read_text())
    assert record["version"] == 1 and record["status"] == "active" and record["kek_id"] == kek.key_id
    assert "T" in record["created_at"]
    assert base64.b64decode(record["wrapped_key"]) != master
    assert master.hex() not in path.read_text() and encode_key(master) not in path.read_text()
    assert sorted(p.name for p in ring.directory.iterdir()) == [".lock", "master-v000001.json"]


def test_rotation_activates_a_new_version_and_keeps_old_ones_readable(ring: KeyRing):
    ring.create()
    first = ring.get(1)
    assert ring.rotate() == 2
    assert ring.active_version() == 2
    assert ring.get(1) == first
    assert ring.get(2) != first
    assert [(v.version, v.status) for v in ring.versions()] == [(1, "retired"), (2, "active")]
    assert stat.S_IMODE((ring.directory / "master-v000001.json").stat().st_mode) == 0o600
    assert ring.project_key("P") == derive_project_key(ring.get(2), "P", 2)
    assert ring.project_key("P", 1) == derive_project_key(first, "P", 1)
    assert ring.index_key("person") == derive_index_key(ring.get(2), "person", 2)


def test_a_version_is_never_overwritten(ring: KeyRing):
    ring.create(5)
    with pytest.raises(KeyExistsError):
        ring.create(5)
    assert ring.rotate() == 6


def test_a_missing_version_is_a_typed_error(ring: KeyRing):
    ring.create()
    with pytest.raises(KeyNotFoundError, match=r"version 9 is not in .*versions present: \[1\]"):
        ring.get(9)


def test_a_ring_opened_with_the_wrong_kek_says_the_kek_does_not_match(ring: KeyRing):
    ring.create()
    other = KeyRing(ring.directory, LocalKek(generate_kek()))
    with pytest.raises(KeyUnwrapError, match="does not match the one that wrapped the key"):
        other.get(1)


def test_swapped_version_files_do_not_unwrap(ring: KeyRing):
    ring.create()
    ring.rotate()
    one, two = (ring.directory / f"master-v00000{v}.json" for v in (1, 2))
    rec1, rec2 = json.loads(one.read_text()), json.loads(two.read_text())
    rec1["wrapped_key"], rec2["wrapped_key"] = rec2["wrapped_key"], rec1["wrapped_key"]
    one.write_text(json.dumps(rec1))
    with pytest.raises(KeyUnwrapError):
        ring.get(1)


def test_a_corrupt_file_is_reported(ring: KeyRing):
    ring.create()
    (ring.directory / "master-v000001.json").write_text("{not json")
    with pytest.raises(KeyRingCorruptError, match="restore it"):
        ring.get(1)


def test_rewrap_moves_every_version_to_the_new_kek(ring: KeyRing, kek: LocalKek):
    ring.create()
    ring.rotate()
    before = {v: ring.get(v) for v in (1, 2)}
    new_kek = LocalKek(generate_kek())
    assert ring.rewrap(new_kek) == 2
    assert ring.kek_id == new_kek.key_id
    assert all(v.kek_id == new_kek.key_id for v in ring.versions())
    reopened = KeyRing(ring.directory, new_kek)
    assert {v: reopened.get(v) for v in (1, 2)} == before
    assert reopened.active_version() == 2
    with pytest.raises(KeyUnwrapError):
        KeyRing(ring.directory, kek).get(1)
    for path in ring.directory.glob("master-*.json"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ring.rewrap(new_kek) == 0  # already done: an interrupted rewrap can simply be run again


def test_rewrap_with_the_wrong_current_kek_changes_nothing(ring: KeyRing):
    ring.create()
    files = {p.name: p.read_bytes() for p in ring.directory.glob("master-*.json")}
    stranger = KeyRing(ring.directory, LocalKek(generate_kek()))
    with pytest.raises(KeyUnwrapError):
        stranger.rewrap(LocalKek(generate_kek()))
    assert {p.name: p.read_bytes() for p in ring.directory.glob("master-*.json")} == files


def test_ring_repr_and_logs_never_show_key_material(ring: KeyRing, caplog: pytest.LogCaptureFixture):
    with caplog.at_level(logging.DEBUG):
        ring.create()
        ring.rotate()
        master = ring.get(2)
        ring.rewrap(LocalKek(generate_kek()))
    secrets = [master.hex(), encode_key(master), str(master)]
    for text in (repr(ring), str(ring), caplog.text):
        assert not any(s in text for s in secrets)
    assert "created master key version 2" in caplog.text
