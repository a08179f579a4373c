"""Vectorised generators for identifier-shaped values (NHS, NI, company numbers, postcodes, UPRNs)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from tre_lib.indexing.normalise import nhs_check_digit
from tre_lib.synth._reference_data import POSTCODE_UNIT_LETTERS

# NI number prefixes: the first letter is never D F I Q U V, the second never D F I O Q U V, and a few
# pairs (BG GB NK KN TN NT ZZ) are not allocated.
_NI_FIRST = np.array(list("ABCEGHJKLMNOPRSTWXYZ"))
_NI_SECOND = np.array(list("ABCEGHJKLMNPRSTWXYZ"))
_NI_EXCLUDED = frozenset({"BG", "GB", "NK", "KN", "TN", "NT", "ZZ"})
_NI_PREFIXES = np.array(sorted({a + b for a in _NI_FIRST for b in _NI_SECOND} - _NI_EXCLUDED))


def _int_strings(values: np.ndarray, width: int) -> np.ndarray:
    # numpy's fixed-width unicode formatting is vectorised and zero-pads via char.zfill.
    return np.char.zfill(values.astype(np.int64).astype(str), width)


def as_string_series(values: np.ndarray | list[str], index: pd.Index | None = None) -> pd.Series:
    """Wrap values in an Arrow-backed string Series (compact: ~1/4 the memory of Python objects)."""
    return pd.Series(pd.arrays.ArrowStringArray(pa.array(np.asarray(values, dtype=object))), index=index)


def _spread_slots(rng: np.random.Generator, index: np.ndarray, n_total: int, space: int) -> np.ndarray:
    # Each row owns a disjoint stride of the value space and takes a random offset inside it: values are
    # unique by construction (no global de-duplication pass, so chunks can be generated independently)
    # yet do not reveal the row order beyond the stride.
    stride = max(1, space // max(1, n_total))
    return index.astype(np.int64) * stride + rng.integers(0, stride, len(index))


def nhs_numbers(rng: np.random.Generator, index: np.ndarray, n_total: int) -> np.ndarray:
    """Draw unique NHS-number-like values: ten digits, first digit 4-6, valid modulus-11 check digit.

    Args:
        rng: Random generator.
        index: Global row numbers (0-based) of the people being generated in this chunk.
        n_total: Total number of people across all chunks (sets the stride that keeps values unique).

    Returns:
        Array of ten-character digit strings.
    """
    space = 300_000_000  # nine-digit stems 400000000..699999999
    stride = max(1, space // max(1, n_total))
    start = 400_000_000 + index.astype(np.int64) * stride
    offset = rng.integers(0, stride, len(index))
    place = 10 ** np.arange(8, -1, -1, dtype=np.int64)
    nine = start + offset
    check = nhs_check_digit((nine[:, None] // place) % 10)
    # About 1 in 11 stems has check digit 10 (never issued): step to the next stem inside the row's stride.
    for step in range(1, stride + 1):
        todo = check == 10
        if not todo.any():
            break
        nine[todo] = start[todo] + (offset[todo] + step) % stride
        check[todo] = nhs_check_digit((nine[todo][:, None] // place) % 10)
    return (nine * 10 + check).astype(str)


def ni_numbers(rng: np.random.Generator, index: np.ndarray, n_total: int) -> np.ndarray:
    """Draw unique National-Insurance-number-like values (``AB123456C``) respecting excluded prefixes.

    Args:
        rng: Random generator.
        index: Global row numbers of the people in this chunk.
        n_total: Total number of people across all chunks.

    Returns:
        Array of nine-character strings.
    """
    slots = _spread_slots(rng, index, n_total, len(_NI_PREFIXES) * 1_000_000)
    prefix = _NI_PREFIXES[slots // 1_000_000]
    digits = _int_strings(slots % 1_000_000, 6)
    suffix = np.array(list("ABCD"))[rng.integers(0, 4, len(index))]
    return np.char.add(np.char.add(prefix, digits), suffix)


def company_numbers(rng: np.random.Generator, region_codes: np.ndarray) -> np.ndarray:
    """Draw unique Companies-House-like numbers: 8 digits in England and Wales, ``SC``/``NI`` + 6 digits.

    Args:
        rng: Random generator.
        region_codes: One ONS region code per business (decides the prefix).

    Returns:
        Array of eight-character strings.
    """
    n = len(region_codes)
    index = np.arange(n)
    eight = _int_strings(100_000 + _spread_slots(rng, index, n, 15_000_000), 8)
    six = _int_strings(_spread_slots(rng, index, n, 1_000_000) % 1_000_000, 6)
    scot = np.char.startswith(region_codes.astype(str), "S")
    ni = np.char.startswith(region_codes.astype(str), "N")
    out = np.where(scot, np.char.add("SC", six), eight)
    return np.where(ni, np.char.add("NI", six), out)


def uprns(rng: np.random.Generator, n: int, start: int = 100_000_000_000) -> np.ndarray:
    """Draw ``n`` distinct UPRN-like integers (12 digits) as increasing values with random gaps."""
    return start + np.cumsum(rng.integers(1, 50, n, dtype=np.int64))


def postcodes(rng: np.random.Generator, areas: np.ndarray) -> np.ndarray:
    """Draw postcodes of the standard form ``AA9 9AA`` for the given postcode areas.

    Args:
        rng: Random generator.
        areas: One postcode area ("LS", "M", ...) per postcode wanted.

    Returns:
        Array of postcodes with a single space before the inward code (duplicates possible).
    """
    n = len(areas)
    district = rng.integers(1, 30, n).astype(str)
    sector = rng.integers(0, 10, n).astype(str)
    letters = np.array(list(POSTCODE_UNIT_LETTERS))
    unit = np.char.add(letters[rng.integers(0, len(letters), n)], letters[rng.integers(0, len(letters), n)])
    outward = np.char.add(areas.astype(str), district)
    return np.char.add(np.char.add(outward, " "), np.char.add(sector, unit))
