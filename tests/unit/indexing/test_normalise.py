"""Normalisation of direct identifiers."""

from __future__ import annotations

import pandas as pd

from tre_lib.indexing import (
    canonical_given_name,
    format_postcode,
    is_valid_nhs_number,
    normalise_business_name,
    normalise_company_number,
    normalise_date,
    normalise_name,
    normalise_nhs_number,
    normalise_postcode,
    normalise_sex,
)


def test_names_lose_case_diacritics_and_punctuation() -> None:
    raw = pd.Series(["  Zoë ", "O'BRIEN", "Smith-Jones", "Siân", "", None])
    assert normalise_name(raw).tolist() == ["zoe", "obrien", "smithjones", "sian", None, None]


def test_nicknames_map_to_one_canonical_form() -> None:
    names = normalise_name(pd.Series(["Bob", "Robert", "BOBBY", "Liz", "Olivia"]))
    assert canonical_given_name(names).tolist() == ["robert", "robert", "robert", "elizabeth", "olivia"]


def test_postcodes_are_upper_case_without_spaces_and_can_be_reformatted() -> None:
    raw = pd.Series(["sw1a 1aa", " LS2  9JT", "m1 1ae", "XX", None])
    clean = normalise_postcode(raw)
    assert clean.tolist() == ["SW1A1AA", "LS29JT", "M11AE", None, None]
    assert format_postcode(clean).tolist() == ["SW1A 1AA", "LS2 9JT", "M1 1AE", None, None]


def test_dates_in_iso_and_uk_forms_become_iso_and_invalid_become_none() -> None:
    raw = pd.Series(["1980-03-07", "07/03/1980", "1980-02-30", "not a date", None])
    assert normalise_date(raw).tolist() == ["1980-03-07", "1980-03-07", None, None, None]
    # The compact ISO form (FEBRL, many extracts); eight digits only, and still validated.
    compact = pd.Series(["19800307", "19801307", "1980037", "2001-02-03"])
    assert normalise_date(compact).tolist() == ["1980-03-07", None, None, "2001-02-03"]
    stamps = pd.Series(pd.to_datetime(["2001-02-03", None]))
    assert normalise_date(stamps).tolist() == ["2001-02-03", None]


def test_nhs_numbers_are_checked_with_modulus_11() -> None:
    raw = pd.Series(["943 476 5919", "9434765918", "401 023 2137", "123", None])
    assert is_valid_nhs_number(raw).tolist() == [True, False, True, False, False]
    assert normalise_nhs_number(raw).tolist() == ["9434765919", None, "4010232137", None, None]


def test_business_names_and_company_numbers_normalise_legal_forms() -> None:
    names = pd.Series(["Acme Toys Ltd", "ACME TOYS LIMITED", "Acme Toys (UK) Ltd.", "Smith & Sons PLC"])
    assert normalise_business_name(names).tolist() == [
        "acme toys",
        "acme toys",
        "acme toys",
        "smith and sons",
    ]
    numbers = pd.Series(["1234567", "sc 123456", "00123456", "bad!", None])
    assert normalise_company_number(numbers).tolist() == ["01234567", "SC123456", "00123456", None, None]


def test_sex_codes_map_to_f_and_m() -> None:
    assert normalise_sex(pd.Series(["f", "Male", "2", "x", None])).tolist() == ["F", "M", "F", None, None]
