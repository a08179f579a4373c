"""Realistic corruption of identifiers: typos, nicknames, swapped day/month, stale postcodes, etc.

Each function takes the clean values, a boolean mask of rows to corrupt and a random generator, and
returns ``(values, applied)`` where ``applied`` marks the rows actually changed (a day/month swap cannot
change 13 March, for instance). The flags go into the truth frame, so tests can check the realised rates.
"""

from __future__ import annotations

import string

import numpy as np
import pandas as pd

from tre_lib.indexing.nicknames import NICKNAMES

_LETTERS = np.array(list(string.ascii_lowercase))
_DIGITS = np.array(list(string.digits))


def _edit_one(value: str, op: int, pos_u: float, char: str) -> str:
    # One keyboard slip: substitute, delete, insert or swap two neighbours.
    if len(value) < 2:
        return value + char
    pos = min(int(pos_u * len(value)), len(value) - 1)
    if op == 0:
        new = char if char != value[pos].lower() else ("a" if char != "a" else "e")
        new = new.upper() if value[pos].isupper() else new
        return value[:pos] + new + value[pos + 1 :]
    if op == 1:
        return value[:pos] + value[pos + 1 :]
    if op == 2:
        return value[:pos] + char + value[pos:]
    pos = min(pos, len(value) - 2)
    if value[pos] == value[pos + 1]:
        return value[:pos] + value[pos + 1 :]
    return value[:pos] + value[pos + 1] + value[pos] + value[pos + 2 :]


def typo(values: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Apply one random keystroke error to the masked string values.

    Args:
        values: Object array of strings (``None`` allowed and left alone).
        mask: Rows to corrupt.
        rng: Random generator.

    Returns:
        The new values and the rows changed.
    """
    out = values.copy()
    rows = np.flatnonzero(mask & pd.notna(values))
    ops = rng.integers(0, 4, len(rows))
    pos = rng.random(len(rows))
    chars = _LETTERS[rng.integers(0, 26, len(rows))]
    # Python loop over the corrupted subset only (a few % of rows): string edits do not vectorise in numpy.
    for k, row in enumerate(rows):
        out[row] = _edit_one(str(values[row]), int(ops[k]), float(pos[k]), str(chars[k]))
    applied = np.zeros(len(values), dtype=bool)
    applied[rows] = out[rows] != values[rows]
    return out, applied


def digit_typo(
    values: np.ndarray, mask: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Replace one digit of the masked identifier strings with a different digit.

    Args:
        values: Object array of digit strings.
        mask: Rows to corrupt.
        rng: Random generator.

    Returns:
        The new values and the rows changed.
    """
    out = values.copy()
    rows = np.flatnonzero(mask & pd.notna(values))
    shift = rng.integers(1, 10, len(rows))
    pos_u = rng.random(len(rows))
    for k, row in enumerate(rows):
        text = str(values[row])
        digit_positions = [i for i, ch in enumerate(text) if ch.isdigit()]
        if not digit_positions:
            continue
        i = digit_positions[min(int(pos_u[k] * len(digit_positions)), len(digit_positions) - 1)]
        out[row] = text[:i] + str((int(text[i]) + int(shift[k])) % 10) + text[i + 1 :]
    applied = np.zeros(len(values), dtype=bool)
    applied[rows] = out[rows] != values[rows]
    return out, applied


def nickname(values: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Replace masked given names that have a known nickname with one of them ("Robert" -> "Bob").

    Args:
        values: Object array of given names (title case).
        mask: Rows to corrupt.
        rng: Random generator.

    Returns:
        The new values and the rows changed (names without a nickname are left alone).
    """
    out = values.copy()
    lowered = pd.Series(values, dtype=object).str.lower()
    has = lowered.isin(list(NICKNAMES)).to_numpy() & mask
    rows = np.flatnonzero(has)
    picks = rng.random(len(rows))
    for k, row in enumerate(rows):
        variants = NICKNAMES[lowered.iat[row]]
        out[row] = variants[min(int(picks[k] * len(variants)), len(variants) - 1)].title()
    applied = np.zeros(len(values), dtype=bool)
    applied[rows] = True
    return out, applied


def swap_day_month(dob: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Swap day and month of masked dates where the result is a different valid date.

    Args:
        dob: ``datetime64[D]`` array.
        mask: Rows to corrupt.

    Returns:
        The new dates and the rows changed.
    """
    ts = pd.DatetimeIndex(dob)
    day, month, year = ts.day.to_numpy(), ts.month.to_numpy(), ts.year.to_numpy()
    applied = mask & (day <= 12) & (day != month)
    swapped = pd.to_datetime(
        pd.DataFrame({"year": year[applied], "month": day[applied], "day": month[applied]})
    ).to_numpy()
    out = dob.copy()
    out[applied] = swapped.astype("datetime64[D]")
    return out, applied


def shift_dates(dob: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Move masked dates by a plausible slip: a day either way or a year either way.

    Args:
        dob: ``datetime64[D]`` array.
        mask: Rows to corrupt.
        rng: Random generator.

    Returns:
        The new dates and the rows changed.
    """
    n = int(mask.sum())
    choice = rng.integers(0, 4, n)
    delta = np.select([choice == 0, choice == 1, choice == 2], [1, -1, 365], default=-365)
    out = dob.copy()
    out[mask] = dob[mask] + delta.astype("timedelta64[D]")
    return out, mask.copy()


def blank(values: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Set masked values to ``None`` (a field not recorded)."""
    out = values.copy()
    applied = mask & pd.notna(values)
    out[applied] = None
    return out, applied
