"""Normalisation of direct identifiers before matching.

Every function takes and returns a pandas Series and is vectorised (pandas string methods), so the same
code normalises a 1k-row test delivery and a 10M-row production one. Missing or unusable values become
``None`` so that Splink's null levels, not a bogus "mismatch", handle them.
"""

from __future__ import annotations

import unicodedata

import numpy as np
import pandas as pd

from tre_lib.indexing.nicknames import CANONICAL_OF

_UK_POSTCODE = r"[A-Z]{1,2}\d[A-Z\d]?\d[A-Z]{2}"
_NHS_WEIGHTS = np.arange(10, 1, -1, dtype=np.int64)  # weights 10..2 for the first nine digits

# Legal-form words dropped from business names: "Acme Toys Ltd" and "ACME TOYS LIMITED" are one business.
_LEGAL_WORDS = r"\b(?:ltd|limited|plc|public|llp|llc|co|company|holdings|uk|inc|the)\b"


def _strip_diacritics(value: str) -> str:
    # NFKD splits "é" into "e" + combining accent; dropping combining marks keeps the base letter.
    decomposed = unicodedata.normalize("NFKD", value)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def _blank_to_none(series: pd.Series) -> pd.Series:
    out = series.where(series.str.len() > 0)
    return out.astype(object).where(out.notna(), None)


def normalise_name(series: pd.Series) -> pd.Series:
    """Lower-case a name, strip diacritics and punctuation, and collapse whitespace.

    Hyphens and apostrophes are removed without a space ("O'Brien" -> "obrien", "Smith-Jones" ->
    "smithjones") so that a delivery that drops the hyphen still agrees exactly with the index.

    Args:
        series: Raw names.

    Returns:
        Normalised names; empty or missing values become ``None``.

    Example:
        >>> normalise_name(pd.Series(["  Zoë ", "O'Brien", None])).tolist()
        ['zoe', 'obrien', None]
    """
    text = series.astype("string").str.strip()
    # Only strings with non-ASCII characters need the (per-value) unicode pass.
    non_ascii = text.str.contains(r"[^\x00-\x7f]", regex=True).fillna(False).astype(bool)
    if non_ascii.any():
        text = text.copy()
        text[non_ascii] = text[non_ascii].map(_strip_diacritics)
    text = text.str.lower().str.replace(r"['\-\u2019`.]", "", regex=True)
    text = text.str.replace(r"[^a-z ]", " ", regex=True).str.replace(r"\s+", " ", regex=True).str.strip()
    return _blank_to_none(text)


def canonical_given_name(series: pd.Series) -> pd.Series:
    """Map a normalised given name to its canonical form ("bob" -> "robert").

    Args:
        series: Given names already passed through :func:`normalise_name`.

    Returns:
        Canonical given names; names without a known nickname are returned unchanged.
    """
    mapped = series.map(CANONICAL_OF)
    return mapped.where(mapped.notna(), series)


def normalise_postcode(series: pd.Series) -> pd.Series:
    """Upper-case a postcode or zip code of any country and remove spaces and punctuation.

    UK ("sw1a 1aa" -> "SW1A1AA"), US zip ("02139-4307" -> "021394307"), Australian ("2600"), Dutch
    ("1012 AB" -> "1012AB"): anything of 3 to 10 letters and digits is kept.

    Args:
        series: Raw postcodes.

    Returns:
        Normalised postcodes, or ``None`` where fewer than 3 or more than 10 characters remain.
    """
    text = series.astype("string").str.upper().str.replace(r"[^A-Z0-9]", "", regex=True)
    text = text.where(text.str.len().between(3, 10))
    return _blank_to_none(text.fillna(""))


def format_postcode(series: pd.Series) -> pd.Series:
    """Format a normalised postcode with one space before the inward code ("SW1A1AA" -> "SW1A 1AA").

    Splink's postcode comparison finds the sector and district with regular expressions that expect
    this standard form. Codes that are not UK-shaped (a US zip, an Australian postcode) are unchanged.

    Args:
        series: Postcodes from :func:`normalise_postcode`.

    Returns:
        Postcodes in the standard spaced form (``None`` stays ``None``).
    """
    text = series.astype("string")
    # Only UK-shaped codes get the space; any other country's code is returned unchanged.
    uk = text.str.fullmatch(_UK_POSTCODE).fillna(False).astype(bool)
    spaced = text.where(~uk, text.str[:-3] + " " + text.str[-3:])
    return spaced.astype(object).where(spaced.notna(), None)


def normalise_date(series: pd.Series) -> pd.Series:
    """Parse ISO (``1980-03-07``), compact ISO (``19800307``), UK (``07/03/1980``) or datetime values.

    Args:
        series: Raw dates (strings, ``datetime64`` or ``date`` objects).

    Returns:
        ISO-8601 date strings (``1980-03-07``), ``None`` where the value is not a valid date.
    """
    if pd.api.types.is_datetime64_any_dtype(series):
        parsed = series
    else:
        text = series.astype("string").str.strip()
        # The first ten characters cover "1980-03-07" and a stringified Timestamp "1980-03-07 00:00:00".
        parsed = pd.to_datetime(text.str.slice(0, 10), format="%Y-%m-%d", errors="coerce")
        # Fall back to the UK day-first form only where ISO failed, so "2001-02-03" is never read as 2 March.
        uk = pd.to_datetime(text, format="%d/%m/%Y", errors="coerce")
        # The compact ISO form "19800307" (FEBRL, many extracts): eight digits only, never a shorter number.
        compact = pd.to_datetime(text.where(text.str.fullmatch(r"\d{8}")), format="%Y%m%d", errors="coerce")
        parsed = parsed.fillna(uk).fillna(compact)
    iso = parsed.dt.strftime("%Y-%m-%d")
    return iso.astype(object).where(iso.notna(), None)


def nhs_check_digit(first_nine: np.ndarray) -> np.ndarray:
    """Compute the NHS number modulus-11 check digit for rows of nine digits.

    Args:
        first_nine: Integer array of shape ``(n, 9)``.

    Returns:
        Array of check digits; 10 means "no valid check digit" (such numbers are never issued).
    """
    total = (first_nine.astype(np.int64) * _NHS_WEIGHTS).sum(axis=1)
    check = 11 - total % 11
    return np.where(check == 11, 0, check)


def is_valid_nhs_number(series: pd.Series) -> pd.Series:
    """Return True where the value is ten digits with a correct modulus-11 check digit.

    Args:
        series: NHS numbers, as strings (spaces and dashes allowed) or integers.

    Returns:
        Boolean Series aligned with ``series``.

    Example:
        >>> is_valid_nhs_number(pd.Series(["943 476 5919", "9434765918", None])).tolist()
        [True, False, False]
    """
    digits = series.astype("string").str.replace(r"[\s\-]", "", regex=True)
    shaped = digits.str.fullmatch(r"\d{10}").fillna(False).astype(bool).to_numpy()
    valid = np.zeros(len(series), dtype=bool)
    if shaped.any():
        matrix = np.frombuffer("".join(digits[shaped].tolist()).encode("ascii"), dtype=np.uint8).reshape(
            -1, 10
        ) - ord("0")
        valid[shaped] = nhs_check_digit(matrix[:, :9]) == matrix[:, 9]
    return pd.Series(valid, index=series.index)


def normalise_nhs_number(series: pd.Series) -> pd.Series:
    """Strip separators from NHS numbers and blank out any that fail the check digit.

    Args:
        series: Raw NHS numbers.

    Returns:
        Ten-digit strings, ``None`` where missing or invalid (an invalid number is unusable as a key).
    """
    digits = series.astype("string").str.replace(r"[\s\-]", "", regex=True)
    valid = is_valid_nhs_number(digits)
    return digits.astype(object).where(valid.to_numpy(), None)


def normalise_ni_number(series: pd.Series) -> pd.Series:
    """Upper-case a National Insurance number, drop spaces, and blank out malformed values.

    Args:
        series: Raw NI numbers.

    Returns:
        Values of the form ``AB123456C``; ``None`` otherwise.
    """
    text = series.astype("string").str.upper().str.replace(r"\s", "", regex=True)
    ok = text.str.fullmatch(r"[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]\d{6}[A-D]").fillna(False).astype(bool)
    return text.astype(object).where(ok.to_numpy(), None)


def normalise_sex(series: pd.Series) -> pd.Series:
    """Map sex codes to "F" / "M" (accepts F/M, female/male, 1/2 as in NHS data dictionaries).

    Args:
        series: Raw sex values.

    Returns:
        "F", "M", or ``None``.
    """
    text = series.astype("string").str.strip().str.upper()
    mapped = text.map({"F": "F", "FEMALE": "F", "2": "F", "M": "M", "MALE": "M", "1": "M"})
    return mapped.astype(object).where(mapped.notna(), None)


def normalise_business_name(series: pd.Series) -> pd.Series:
    """Normalise a business name: lower-case, "&" to "and", legal-form words and punctuation removed.

    Args:
        series: Raw business names.

    Returns:
        Normalised names ("Acme Toys (UK) Ltd." -> "acme toys").
    """
    text = series.astype("string").str.replace("&", " and ", regex=False)
    text = normalise_name(text).astype("string")
    text = text.str.replace(_LEGAL_WORDS, " ", regex=True).str.replace(r"\s+", " ", regex=True).str.strip()
    return _blank_to_none(text.fillna(""))


def normalise_company_number(series: pd.Series) -> pd.Series:
    """Normalise a Companies House number to its eight-character form ("1234567" -> "01234567").

    Args:
        series: Raw company numbers.

    Returns:
        Eight-character company numbers, ``None`` where missing or malformed.
    """
    text = series.astype("string").str.upper().str.replace(r"[^A-Z0-9]", "", regex=True)
    numeric = text.str.fullmatch(r"\d{1,8}").fillna(False).astype(bool)
    text = text.where(~numeric, text.str.zfill(8))
    ok = text.str.fullmatch(r"(?:\d{8}|[A-Z]{2}\d{6})").fillna(False).astype(bool)
    return text.astype(object).where(ok.to_numpy(), None)


def normalise_code(series: pd.Series) -> pd.Series:
    """Normalise a classification or area code: upper-case, no spaces.

    Args:
        series: Raw codes.

    Returns:
        Normalised codes, ``None`` where blank.
    """
    text = series.astype("string").str.upper().str.replace(r"\s", "", regex=True)
    return _blank_to_none(text.fillna(""))
