"""How values, containers and keys are handled outside the RFC vectors: types, nulls, errors, repr."""

from __future__ import annotations

import hashlib
import hmac
import pickle
from typing import Any

import pandas as pd
import polars as pl
import pytest

from tre_lib.pseudonymise import HmacKey, InvalidKeyError, UnsupportedValueError, hmac_sha256

KEY = hashlib.sha256(b"tre-values-test").digest()


def _ref(value: str) -> str:
    return hmac.new(KEY, value.encode(), hashlib.sha256).hexdigest()


def test_integers_and_their_decimal_text_pseudonymise_alike():
    assert hmac_sha256([7, "7", -12, None], KEY) == [_ref("7"), _ref("7"), _ref("-12"), None]


def test_tuples_and_generators_give_lists():
    assert hmac_sha256(("a",), KEY) == hmac_sha256(iter(["a"]), KEY) == [_ref("a")]
    assert hmac_sha256([], KEY) == []


@pytest.mark.parametrize("bad", [[1.5], [True], [object()], [float("nan")]])
def test_ambiguous_python_values_are_refused(bad: list[Any]):
    with pytest.raises(UnsupportedValueError, match="IDs must be str, int or bytes"):
        hmac_sha256(bad, KEY)


def test_a_bare_string_is_refused_rather_than_hashed_per_character():
    with pytest.raises(UnsupportedValueError, match=r"hmac_sha256\(\[value\], key\)"):
        hmac_sha256("abc", KEY)


def test_pandas_keeps_index_name_and_string_dtype_and_nulls():
    s = pd.Series(["a", None, "a", "b"], index=[10, 11, 12, 13], name="person_id", dtype="string")
    out = hmac_sha256(s, KEY)
    assert out.name == "person_id" and list(out.index) == [10, 11, 12, 13]
    assert isinstance(out.dtype, pd.StringDtype)
    assert out.isna().tolist() == [False, True, False, False]
    assert out.tolist()[0] == out.tolist()[2] == _ref("a")


def test_pandas_nullable_integers_and_nan_nulls():
    ints = hmac_sha256(pd.Series([1, None, 3], dtype="Int64"), KEY)
    assert ints.tolist() == [_ref("1"), None, _ref("3")]
    objs = hmac_sha256(pd.Series(["x", float("nan"), pd.NA, None], dtype=object), KEY)
    assert objs.tolist() == [_ref("x"), None, None, None]


@pytest.mark.parametrize("dtype", ["float64", "bool"])
def test_pandas_float_and_bool_columns_are_refused(dtype: str):
    with pytest.raises(UnsupportedValueError, match="convert it first"):
        hmac_sha256(pd.Series([1, 0], dtype=dtype), KEY)


def test_polars_integers_categoricals_and_refused_floats():
    assert hmac_sha256(pl.Series("i", [5, None]), KEY).to_list() == [_ref("5"), None]
    cats = pl.Series("c", ["u", "v", "u"], dtype=pl.Categorical)
    assert hmac_sha256(cats, KEY).to_list() == [_ref("u"), _ref("v"), _ref("u")]
    with pytest.raises(UnsupportedValueError, match="cast it first"):
        hmac_sha256(pl.Series("f", [1.0]), KEY)


def test_polars_expression_works_per_group_and_in_lazy_frames():
    lf = pl.LazyFrame({"g": [1, 1, 2], "id": ["a", "b", "a"]})
    out = lf.with_columns(pid=hmac_sha256(pl.col("id"), KEY)).collect()
    assert out["pid"].to_list() == [_ref("a"), _ref("b"), _ref("a")]
    assert out.schema["pid"] == pl.String


def test_a_dataframe_is_refused_with_a_pointer_to_the_column_api():
    with pytest.raises(UnsupportedValueError, match="one column"):
        hmac_sha256(pd.DataFrame({"a": ["x"]}), KEY)


@pytest.mark.parametrize("key", [b"", "a text key", None])
def test_bad_keys_are_refused(key: Any):
    with pytest.raises(InvalidKeyError, match="derive_project_key"):
        hmac_sha256(["a"], key)


def test_hmac_key_repr_hides_the_key_and_pickles_for_workers():
    hk = HmacKey(KEY)
    for text in (repr(hk), str(hk), repr([hk])):
        assert KEY.hex() not in text and str(KEY) not in text
    clone = pickle.loads(pickle.dumps(hk))  # noqa: S301 - our own bytes, as Spark ships closures
    assert clone.hexdigest(b"a") == hk.hexdigest(b"a") == _ref("a")
    assert clone.fingerprint == hk.fingerprint != HmacKey(b"other key").fingerprint


def test_dask_task_names_depend_on_the_key_but_do_not_contain_it(dask_client: Any):
    import dask.dataframe as dd

    ds = dd.from_pandas(pd.Series(["a", "b"], name="v"), npartitions=1)
    first, second = hmac_sha256(ds, KEY), hmac_sha256(ds, b"another key")
    assert first._name != second._name  # different keys must never share cached results
    assert KEY.hex() not in first._name
    assert first.compute().tolist() == [_ref("a"), _ref("b")]


def test_pandas_keeps_strings_that_differ_only_after_a_nul_apart():
    """Regression: pd.factorize merges "" and "\\x00" (its string hash table stops at NUL)."""
    values = ["", "\x00", "a\x00b", "a"]
    assert hmac_sha256(pd.Series(values), KEY).tolist() == [_ref(v) for v in values]


def test_pandas_mixed_object_columns_and_huge_integers_hash_value_by_value():
    s = pd.Series(["a", 7, 2**70, None, float("nan")], dtype=object)
    assert hmac_sha256(s, KEY).tolist() == [_ref("a"), _ref("7"), _ref(str(2**70)), None, None]
