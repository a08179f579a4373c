"""The compiled HMAC helper (C over OpenSSL): exact, equal to the pure-Python path, thread- and fork-safe."""

from __future__ import annotations

import hashlib
import hmac
import multiprocessing
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_pseudonymise_hmac_vectors import RFC4231  # this folder is on sys.path (pytest prepend mode)

from tre_lib.pseudonymise import HmacKey, _core, hmac_sha256
from tre_lib.pseudonymise._core import _hashable, _hex_fast, _hex_python, fast_hmac_available, hmac_arrow

KEY = hashlib.sha256(b"tre-fast-hmac-test").digest()
# More values than one thread's share, so the tests below run the C loop on every core.
MANY = 2 * _core._MIN_PER_THREAD + 17

BINARY_TYPES = [pa.string(), pa.large_string(), pa.binary(), pa.large_binary(), pa.string_view()]


def _ref(value: str | bytes, key: bytes = KEY) -> str:
    data = value.encode("utf-8") if isinstance(value, str) else value
    return hmac.new(key, data, hashlib.sha256).hexdigest()


@pytest.fixture(autouse=True)
def _needs_the_helper() -> None:
    # Not a skip: `make setup` builds the helper, so its absence here is a broken install to report.
    assert fast_hmac_available(), (
        "the compiled helper tre_lib.pseudonymise._fasthmac is not installed; reinstall with gcc and "
        "libssl-dev present (make setup)"
    )


@pytest.mark.parametrize("typ", BINARY_TYPES, ids=str)
def test_rfc4231_vectors_through_the_c_loop(typ: pa.DataType):
    for _case, key, data, expected in RFC4231:
        if pa.types.is_string(typ) or pa.types.is_large_string(typ) or pa.types.is_string_view(typ):
            try:
                value: Any = data.decode("utf-8")
            except UnicodeDecodeError:
                continue  # cases 3 and 4 are not text; the binary types cover them
        else:
            value = data
        out = _hex_fast(_hashable(pa.array([value, None, value], type=typ)), HmacKey(key)).to_pylist()
        assert out[1] is None
        assert out[0] == out[2] and out[0] is not None and out[0][: len(expected)] == expected


def test_every_message_length_around_the_one_block_boundary():
    """Up to 55 bytes the C loop pads the last block by hand; from 56 on it uses SHA256_Update/Final."""
    values = [bytes(range(n)) for n in range(0, 200)]
    for key in (b"k", KEY, b"\xaa" * 131):
        got = hmac_sha256(pa.array(values, pa.binary()), key).to_pylist()
        assert got == [_ref(v, key) for v in values]


def test_nulls_empty_strings_and_unicode_in_every_container():
    values = ["", None, "é", "👩‍🔬", "a\x00b", "\x00", " ", "ID0000000001", "x" * 200] * 300
    expected = [None if v is None else _ref(v) for v in values]
    assert hmac_sha256(values, KEY) == expected  # > 1024 values: the list goes through Arrow and C
    assert hmac_sha256(pa.array(values), KEY).to_pylist() == expected
    assert hmac_sha256(pa.chunked_array([values[:1000], values[1000:]]), KEY).to_pylist() == expected
    arrow_backed = hmac_sha256(pd.Series(values, dtype="string[pyarrow]"), KEY)
    assert isinstance(arrow_backed.dtype, pd.StringDtype) and arrow_backed.dtype.storage == "pyarrow"
    assert [None if v is pd.NA else v for v in arrow_backed.tolist()] == expected
    assert hmac_sha256(pd.Series(values, dtype=object), KEY).tolist() == expected
    assert hmac_sha256(pl.Series("v", values), KEY).to_list() == expected
    assert hmac_sha256(pa.array([], pa.string()), KEY).to_pylist() == []
    assert hmac_sha256(pa.array([None, None], pa.string()), KEY).to_pylist() == [None, None]


def test_integers_dictionaries_and_slices_agree_with_the_reference():
    ints = list(range(-5, MANY))
    assert hmac_sha256(pa.array(ints), KEY).to_pylist() == [_ref(str(i)) for i in ints]
    assert hmac_sha256(ints, KEY) == [_ref(str(i)) for i in ints]  # the list path, through Arrow
    texts = [f"P{i % 97}" for i in range(MANY)]
    encoded = pa.array(texts).dictionary_encode()
    assert hmac_sha256(encoded, KEY).to_pylist() == [_ref(t) for t in texts]
    sliced = pa.array(texts)[12345 : MANY - 3]  # a non-zero offset into shared buffers
    out = hmac_sha256(sliced, KEY)
    out.validate(full=True)
    assert out.to_pylist() == [_ref(t) for t in texts[12345 : MANY - 3]]


def test_lists_arrow_cannot_hold_exactly_still_hash_value_by_value():
    mixed = ["7", 7, b"7", None] * 400
    assert hmac_sha256(mixed, KEY) == [None if v is None else _ref("7") for v in mixed]
    huge = [2**70] * 2000
    assert hmac_sha256(huge, KEY) == [_ref(str(2**70))] * 2000


def test_hex_past_two_gib_switches_to_large_string(monkeypatch: pytest.MonkeyPatch):
    # 33.5M values would be needed for real; lower the limit instead to exercise the wide layout.
    monkeypatch.setattr(_core, "_MAX_STRING_BYTES", 64 * 10)
    out = hmac_sha256(pa.array([str(i) for i in range(11)] + [None]), KEY)
    assert out.type == pa.large_string()
    out.validate(full=True)
    assert out.to_pylist() == [_ref(str(i)) for i in range(11)] + [None]


keys = st.binary(min_size=1, max_size=150)  # past 64 bytes the key is hashed first (RFC 2104)
texts = st.lists(st.one_of(st.none(), st.text(max_size=80)), max_size=40)
blobs = st.lists(st.one_of(st.none(), st.binary(max_size=130)), max_size=40)


@settings(max_examples=150)
@given(key=keys, values=texts, start=st.integers(0, 5), typ=st.sampled_from(BINARY_TYPES[:2]))
def test_c_loop_is_byte_identical_to_the_python_path_on_random_text(
    key: bytes, values: list[str | None], start: int, typ: pa.DataType
):
    array = pa.array(values, type=typ)[start:]
    hk = HmacKey(key)
    fast, slow = _hex_fast(_hashable(array), hk), _hex_python(_hashable(array), hk)
    assert (
        fast.to_pylist() == slow.to_pylist() == [None if v is None else _ref(v, key) for v in values[start:]]
    )


@settings(max_examples=100)
@given(key=keys, values=blobs, typ=st.sampled_from([pa.binary(), pa.large_binary()]))
def test_c_loop_is_byte_identical_to_the_python_path_on_random_bytes(
    key: bytes, values: list[bytes | None], typ: pa.DataType
):
    array = pa.array(values, type=typ)
    hk = HmacKey(key)
    assert _hex_fast(array, hk).to_pylist() == _hex_python(array, hk).to_pylist()


def test_many_threads_hashing_at_once_each_get_their_own_answer():
    jobs = [(hashlib.sha256(bytes([i])).digest(), [f"T{i}-{j}" for j in range(MANY)]) for i in range(6)]
    expected = [[_ref(v, key) for v in values] for key, values in jobs]
    arrays = [(key, pa.array(values)) for key, values in jobs]
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda job: hmac_arrow(job[1], HmacKey(job[0])).to_pylist(), arrays * 2))
    assert results == expected * 2


def _hash_in_child(values: list[str]) -> list[str | None]:
    return hmac_sha256(pa.array(values), KEY).to_pylist()  # type: ignore[no-any-return]


def test_a_forked_child_hashes_on_threads_after_the_parent_made_its_pool():
    values = [f"F{j}" for j in range(MANY)]
    hmac_sha256(pa.array(values), KEY)  # the parent's pool now has threads, which a fork does not copy
    with multiprocessing.get_context("fork").Pool(1) as pool:
        # The timeout only turns the deadlock this test guards against into a failure; it is no speed limit.
        result = pool.apply_async(_hash_in_child, (values,)).get(timeout=600)
    assert result == [_ref(v) for v in values]


def test_without_the_helper_the_pure_python_path_gives_the_same_answers():
    """A subprocess where the compiled module cannot be imported, as after an install without gcc."""
    script = textwrap.dedent(
        """
        import sys
        sys.modules["tre_lib.pseudonymise._fasthmac"] = None  # makes its import raise ImportError
        import pandas as pd, pyarrow as pa
        from tre_lib.pseudonymise import hmac_sha256
        from tre_lib.pseudonymise._core import fast_hmac_available
        assert not fast_hmac_available()
        values = ["what do ya want for nothing?", None] * 600
        print(hmac_sha256(values, b"Jefe")[0])
        print(hmac_sha256(pa.array(values), b"Jefe")[0])
        print(hmac_sha256(pd.Series(values, dtype="string[pyarrow]"), b"Jefe").iloc[0])
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"] * 3


def test_the_padded_keys_held_for_c_never_show_in_repr():
    hk = HmacKey(KEY)
    ipad_key, opad_key = hk.padded_keys()
    for text in (repr(hk), str(hk)):
        assert ipad_key.hex() not in text and opad_key.hex() not in text and KEY.hex() not in text
