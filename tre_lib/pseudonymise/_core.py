"""HMAC-SHA256 over one key, shared by every engine (Python, pandas, Arrow, polars, Dask, Spark UDFs).

Values are encoded one way everywhere: ``str`` as UTF-8, ``int`` as its decimal string, ``bytes`` as they
are; nulls stay null. Floats and bools are refused because their text form is ambiguous (``1.0`` vs ``1``,
``True`` vs ``1``): an ID column must be text or integer before it is pseudonymised.

Columns (Arrow, pandas, polars, and lists that Arrow can hold) are hashed by the compiled helper
``_fasthmac`` (C over OpenSSL, built at install time by ``_fasthmac_build.py``) when it is importable, on
every core; otherwise by the pure-Python path below. Both give the same bytes (the tests compare them), so
which one ran never shows in the result. docs/adr/0007-fast-hmac.md records the measurements.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import itertools
import mmap
import numbers
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from tre_lib.pseudonymise.errors import InvalidKeyError, UnsupportedValueError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

try:  # the compiled helper; absent when the install had no C compiler or OpenSSL headers
    from tre_lib.pseudonymise._fasthmac import ffi as _ffi
    from tre_lib.pseudonymise._fasthmac import lib as _fast_lib
except ImportError:  # pragma: no cover - exercised by the fallback test in a subprocess
    _ffi = _fast_lib = None

_BLOCK = 64  # SHA-256 block size in bytes (RFC 2104's B)
_IPAD = 0x36
_OPAD = 0x5C


def _padded_keys(key: bytes) -> tuple[bytes, bytes]:
    """Return ``(K0 xor ipad, K0 xor opad)`` per RFC 2104: long keys are hashed, then zero-padded to B."""
    k0 = hashlib.sha256(key).digest() if len(key) > _BLOCK else key
    k0 = k0.ljust(_BLOCK, b"\0")
    return bytes(b ^ _IPAD for b in k0), bytes(b ^ _OPAD for b in k0)


class HmacKey:
    """An HMAC-SHA256 key with its inner and outer hash states precomputed.

    ``hashlib``'s ``copy()`` of a state that has already absorbed ``K0 xor ipad`` saves hashing the pad for
    every value; about 2x faster than ``hmac.new`` per value (bench/bench_hmac.py), and the tests check
    it against RFC 4231 and ``hmac.new`` for random input. It pickles (Spark and Dask ship it to workers
    inside closures, never inside a query plan) but never shows the key in ``repr``.
    """

    __slots__ = ("_inner", "_key", "_outer", "_pads")

    def __init__(self, key: bytes) -> None:
        if isinstance(key, HmacKey):
            key = key._key
        if not isinstance(key, bytes | bytearray | memoryview):
            raise InvalidKeyError(
                f"the HMAC key must be bytes, got {type(key).__name__}; derive one with derive_project_key()"
            )
        if len(key) == 0:
            raise InvalidKeyError("the HMAC key is empty; derive one with derive_project_key()")
        self._key = bytes(key)
        ipad_key, opad_key = _padded_keys(self._key)
        self._inner = hashlib.sha256(ipad_key)
        self._outer = hashlib.sha256(opad_key)
        self._pads = ipad_key + opad_key  # what the compiled helper takes: K0 xor ipad, then K0 xor opad

    def digest(self, message: bytes) -> bytes:
        """Return the 32-byte HMAC-SHA256 of ``message``."""
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    def hexdigest(self, message: bytes) -> str:
        """Return the HMAC-SHA256 of ``message`` as 64 lowercase hex characters."""
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()

    def padded_keys(self) -> tuple[bytes, bytes]:
        """Return ``(K0 xor ipad, K0 xor opad)``, secret material for engines that build HMAC from SHA-256."""
        return _padded_keys(self._key)

    @property
    def raw(self) -> bytes:
        """The key bytes (secret: for engines that need them, never for display)."""
        return self._key

    @property
    def fingerprint(self) -> str:
        """A non-secret 16-hex-character id of the key, ``HMAC(key, "tre/key-fingerprint")`` truncated."""
        return hmac.new(self._key, b"tre/key-fingerprint", hashlib.sha256).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"HmacKey(fingerprint={self.fingerprint!r})"

    __str__ = __repr__

    def __reduce__(self) -> tuple[Any, ...]:
        # hashlib states do not pickle; rebuild them from the key on the worker.
        return (HmacKey, (self._key,))

    def __dask_tokenize__(self) -> tuple[str, str]:
        # Dask names tasks after a hash of their arguments; a keyed fingerprint keeps the key out of it.
        return ("tre-hmac-key", self.fingerprint)


def as_hmac_key(key: bytes | HmacKey) -> HmacKey:
    """Return ``key`` as an :class:`HmacKey`, validating it."""
    return key if isinstance(key, HmacKey) else HmacKey(key)


def message_bytes(value: Any) -> bytes:
    """Encode one non-null value: UTF-8 for text, decimal for integers, bytes unchanged.

    Raises:
        UnsupportedValueError: For floats, bools and any other type.
    """
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return str(int(value)).encode("ascii")
    raise UnsupportedValueError(
        f"cannot pseudonymise a {type(value).__name__} value: IDs must be str, int or bytes; convert the "
        "column first (e.g. pandas .astype('Int64') or .astype('string'), "
        "Spark .cast('long') or .cast('string'))"
    )


def fast_hmac_available() -> bool:
    """Return True when the compiled helper is installed, so columns are hashed in C on every core."""
    return _fast_lib is not None


def hmac_list(values: Any, key: HmacKey) -> list[str | None]:
    """HMAC every element of an iterable of str/int/bytes/None; ``None`` stays ``None``."""
    if isinstance(values, str | bytes | bytearray):
        raise UnsupportedValueError(
            "hmac_sha256 takes a sequence of values, not one string; wrap it: hmac_sha256([value], key)"
        )
    if _fast_lib is not None:
        values = values if isinstance(values, list | tuple) else list(values)
        if len(values) >= _MIN_LIST_FOR_ARROW:
            hashed = _hex_list_via_arrow(values, key)
            if hashed is not None:
                return hashed
    return _hex_all(values, key)


# Below this many values a list is hashed value by value: converting to Arrow (and importing pyarrow for a
# plain-Python caller) costs more than the C loop saves.
_MIN_LIST_FOR_ARROW = 1024


def _hex_list_via_arrow(values: list[Any] | tuple[Any, ...], key: HmacKey) -> list[str | None] | None:
    """Hash a list through Arrow and the C loop, or return None if Arrow would change its meaning.

    Only lists Arrow stores as text, binary or integers qualify; anything else (floats, bools, mixed str and
    int, ints beyond 64 bits) goes value by value, which encodes mixed lists per value and raises the
    per-value error for the rest.
    """
    import pyarrow as pa

    try:
        array = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
        return None
    typ = array.type
    if not (pa.types.is_integer(typ) or pa.types.is_null(typ) or _is_text_or_binary(typ)):
        return None
    return hmac_arrow(array, key).to_pylist()  # type: ignore[no-any-return]


def _hex_all(values: Any, key: HmacKey) -> list[str | None]:
    hexdigest = key.hexdigest
    # `type(v) is str` first: the common case skips a function call per value (measured ~15% faster).
    return [
        hexdigest(v.encode("utf-8")) if type(v) is str else None if v is None else hexdigest(message_bytes(v))
        for v in values
    ]


def hmac_pandas(series: pd.Series, key: HmacKey) -> pd.Series:
    """HMAC a pandas Series; nulls (None, NaN, NA) become null.

    The result keeps the index and name; it has the input's string dtype if it had one (a
    ``string[pyarrow]`` column stays Arrow-backed, without a copy), else ``object``.
    """
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    if series.dtype.kind in "fcb" or pd.api.types.is_bool_dtype(series.dtype):
        raise UnsupportedValueError(
            f"cannot pseudonymise a column of dtype {series.dtype}: IDs must be text or integers; "
            "convert it first, e.g. series.astype('Int64') or series.astype('string')"
        )
    string_dtype = series.dtype if isinstance(series.dtype, pd.StringDtype) else None
    try:
        # Arrow, not pd.factorize, reads the values: pandas' string hash table stops at NUL, so factorize
        # merges "" with "\x00" (found by the property test) and would give them one HMAC.
        array = pa.array(series, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        array = None  # mixed str/int objects, or ints beyond int64: hash value by value below
    if array is not None:
        hashed = hmac_arrow(array, key)
        if string_dtype is not None:
            values: Any = string_dtype.__from_arrow__(hashed)
        else:
            values = hashed.to_numpy(zero_copy_only=False)  # object array, None for nulls
        return pd.Series(values, index=series.index, name=series.name, copy=False)
    nulls = series.isna().to_numpy()
    objects = series.to_numpy(dtype=object)
    out = np.empty(len(objects), dtype=object)
    out[:] = _hex_all([None if null else v for v, null in zip(objects, nulls, strict=True)], key)
    return pd.Series(out, index=series.index, name=series.name, dtype=string_dtype or object)


def _is_text_or_binary(typ: pa.DataType) -> bool:
    import pyarrow as pa

    return bool(
        pa.types.is_string(typ)
        or pa.types.is_large_string(typ)
        or pa.types.is_string_view(typ)
        or pa.types.is_binary(typ)
        or pa.types.is_large_binary(typ)
        or pa.types.is_binary_view(typ)
    )


def _hashable(array: pa.Array) -> pa.Array:
    """Return ``array`` as string/large_string/binary/large_binary holding the bytes to authenticate."""
    import pyarrow as pa
    import pyarrow.compute as pc

    typ = array.type
    if pa.types.is_integer(typ) or pa.types.is_null(typ):
        return pc.cast(array, pa.string())  # decimal text, as message_bytes() does for Python ints
    if pa.types.is_string_view(typ):
        return array.cast(pa.large_string())
    if pa.types.is_binary_view(typ):
        return array.cast(pa.large_binary())
    if _is_text_or_binary(typ):
        return array
    raise UnsupportedValueError(
        f"cannot pseudonymise a column of type {typ}: IDs must be text, integers or binary; cast it first"
    )


def hmac_arrow(array: pa.Array | pa.ChunkedArray, key: HmacKey) -> pa.Array:
    """HMAC an Arrow array of strings, integers or binary; returns a ``string`` array with nulls kept.

    (``large_string`` when the hex of a chunk passes 2 GiB, Arrow's limit for ``string``.)
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(array, pa.ChunkedArray):
        if array.num_chunks == 1:
            array = array.chunk(0)
        else:
            # Chunk by chunk: combining first would copy the input, and fail past 2 GiB of text.
            parts = [hmac_arrow(chunk, key) for chunk in array.chunks]
            wide = sum(len(p) for p in parts) * _HEX_LEN > _MAX_STRING_BYTES
            typ = pa.large_string() if wide else pa.string()
            return pa.concat_arrays([p.cast(typ) for p in parts]) if parts else pa.array([], typ)
    if pa.types.is_dictionary(array.type):
        # Each distinct value is in the dictionary once: hash those, then look the rows up.
        return pc.take(hmac_arrow(array.dictionary, key), array.indices)
    values = _hashable(array)
    return _hex_fast(values, key) if _fast_lib is not None else _hex_python(values, key)


def _hex_python(array: pa.Array, key: HmacKey) -> pa.Array:
    """The pure-Python path: hash each distinct value once with hashlib, then take per row."""
    import pyarrow as pa
    import pyarrow.compute as pc

    # dictionary_encode finds the distinct values (repeated IDs are the norm); nulls get null indices.
    encoded = array.dictionary_encode()
    hexdigest = key.hexdigest
    dictionary = encoded.dictionary.to_pylist()
    if dictionary and isinstance(dictionary[0], str):
        hashed = [hexdigest(v.encode("utf-8")) for v in dictionary]
    else:
        hashed = [hexdigest(v) for v in dictionary]
    return pc.take(pa.array(hashed, type=pa.string()), encoded.indices)


# ------------------------------------------------------------------------------ the compiled C path
_HEX_LEN = 64
_MAX_STRING_BYTES = 2**31 - 1  # Arrow `string` has int32 offsets
# Each slice has at least this many values: below it, handing work to a thread costs more than it saves.
_MIN_PER_THREAD = 50_000
# Several slices per core, taken in turn by the pool's threads: on a shared machine one thread is often
# descheduled, and with one slice per core the whole call would wait for it.
_SLICES_PER_CORE = 8
_HUGE_PAGE = 2**21
_EMPTY = b"\0"  # a valid pointer for arrays whose data buffer is absent (all values empty or null)

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _thread_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=_cores(), thread_name_prefix="tre-hmac")
        return _pool


def _forget_pool_in_child() -> None:
    # A forked child (Spark's Python workers, multiprocessing) inherits the pool object but not its threads;
    # submitting to it would wait forever. The child makes its own on first use.
    global _pool, _pool_lock
    _pool = None
    _pool_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_in_child)


def _output_buffer(size: int) -> Any:
    """Return ``size`` writable bytes; large ones asked for on transparent huge pages.

    Faulting in a fresh 4 KiB-page buffer took about a third of the hashing time on the 10M-value bench;
    2 MiB pages cut the faults 512-fold. ``madvise`` is only a hint: without THP it is plain memory.
    """
    if size < _HUGE_PAGE:
        return bytearray(size)
    buf = mmap.mmap(-1, size)
    madvise = getattr(buf, "madvise", None)
    hugepage = getattr(mmap, "MADV_HUGEPAGE", None)
    if madvise is not None and hugepage is not None:
        with contextlib.suppress(OSError):  # kernel without THP
            madvise(hugepage)
    return buf


def _hex_fast(array: pa.Array, key: HmacKey) -> pa.Array:
    """Hash a string/binary array in C, splitting it across the cores (cffi releases the GIL)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    assert _ffi is not None and _fast_lib is not None
    n = len(array)
    total = n * _HEX_LEN
    out_type = pa.string() if total <= _MAX_STRING_BYTES else pa.large_string()
    if n == 0:
        return pa.array([], out_type)
    wide = pa.types.is_large_string(array.type) or pa.types.is_large_binary(array.type)
    _, offsets_buf, data_buf = array.buffers()
    offsets = _ffi.from_buffer("int64_t[]" if wide else "int32_t[]", offsets_buf) + array.offset
    data = _ffi.from_buffer("unsigned char[]", data_buf if data_buf is not None and data_buf.size else _EMPTY)
    out_mem = _output_buffer(total)
    out = _ffi.from_buffer("char[]", out_mem, require_writable=True)
    pads = key._pads

    def run(bounds: tuple[int, int]) -> int:
        start, stop = bounds
        status: int = _fast_lib.tre_hmac_sha256_hex(
            pads, offsets, int(wide), data, start, stop, out + start * _HEX_LEN
        )
        return status

    parts = max(1, min(_SLICES_PER_CORE * _cores(), n // _MIN_PER_THREAD))
    cuts = [n * i // parts for i in range(parts + 1)]
    ranges = list(itertools.pairwise(cuts))
    statuses = [run(ranges[0])] if parts == 1 else list(_thread_pool().map(run, ranges))
    if any(statuses):
        raise UnsupportedValueError("the Arrow array has decreasing offsets (it is corrupt); rebuild it")
    out_offsets = np.arange(
        0, total + 1, _HEX_LEN, dtype=np.int64 if pa.types.is_large_string(out_type) else np.int32
    )
    validity = None
    if array.null_count:
        valid = pc.is_valid(array)
        if valid.offset:
            valid = pa.concat_arrays([valid])
        validity = valid.buffers()[1]
    return pa.Array.from_buffers(
        out_type, n, [validity, pa.py_buffer(out_offsets), pa.py_buffer(out_mem)], null_count=array.null_count
    )
