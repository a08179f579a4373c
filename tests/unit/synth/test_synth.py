"""The synthetic world and datasets: deterministic, realistic identifiers, corruption at configured rates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tre_lib.indexing import is_valid_nhs_number, normalise_ni_number
from tre_lib.synth import DATASETS, CorruptionRates, generate_world, make_dataset


@pytest.fixture(scope="module")
def world():
    return generate_world(1_500, seed=21)


def test_same_seed_gives_identical_world_and_datasets(world) -> None:
    again = generate_world(1_500, seed=21)
    for name in ("persons", "addresses", "address_history", "businesses", "geography"):
        pd.testing.assert_frame_equal(getattr(world, name), getattr(again, name))
    for name in DATASETS:
        first = make_dataset(world, name, 300, seed=4)
        second = make_dataset(again, name, 300, seed=4)
        pd.testing.assert_frame_equal(first[0], second[0])
        pd.testing.assert_frame_equal(first[1], second[1])


def test_different_seed_gives_different_people(world) -> None:
    other = generate_world(1_500, seed=22)
    assert (world.persons["nhs_number"] != other.persons["nhs_number"]).mean() > 0.99
    assert not world.persons["given_name"].astype(str).equals(other.persons["given_name"].astype(str))


def test_chunked_generation_keeps_identifiers_valid_and_unique() -> None:
    chunked = generate_world(1_000, seed=5, chunk_size=128)
    persons = chunked.persons
    assert persons["person_id"].tolist() == list(range(1_000))
    assert persons["nhs_number"].is_unique and persons["ni_number"].is_unique
    assert is_valid_nhs_number(persons["nhs_number"]).all()


def test_nhs_numbers_are_ten_digits_with_valid_mod11_check_digit(world) -> None:
    nhs = world.persons["nhs_number"].astype(str)
    assert nhs.str.fullmatch(r"[4-6]\d{9}").all()
    assert nhs.is_unique
    assert is_valid_nhs_number(nhs).all()
    digits = np.array([[int(c) for c in s] for s in nhs.head(200)])
    check = (11 - (digits[:, :9] * np.arange(10, 1, -1)).sum(axis=1) % 11) % 11
    assert (check == digits[:, 9]).all()


def test_ni_numbers_follow_the_real_format(world) -> None:
    ni = world.persons["ni_number"].astype(str)
    assert normalise_ni_number(ni).notna().all()
    assert not ni.str[:2].isin(["BG", "GB", "NK", "KN", "TN", "NT", "ZZ"]).any()
    assert ni.is_unique


def test_world_geography_is_hierarchical(world) -> None:
    geo = world.geography
    assert geo["postcode"].is_unique
    assert (geo.groupby("lsoa_code")["la_code"].nunique() == 1).all()
    assert (geo.groupby("la_code")["region_code"].nunique() == 1).all()
    assert world.persons["postcode"].isin(geo["postcode"]).all()
    assert world.businesses["company_number"].str.fullmatch(r"\d{8}|(SC|NI)\d{6}").all()
    products = world.products
    assert products["parent_code"].dropna().isin(products["code"]).all()


def test_truth_is_kept_aside_and_covers_every_record(world) -> None:
    for name, spec in DATASETS.items():
        records, truth = make_dataset(world, name, 200, seed=1)
        unit = "person_id" if spec.unit == "person" else "business_id"
        assert unit not in records.columns
        assert records[spec.id_column].tolist() == truth[spec.id_column].tolist()
        assert truth[unit].notna().all()


def test_labour_force_survey_has_no_nhs_number_and_ni_only_sometimes(world) -> None:
    records, _ = make_dataset(world, "labour_force_survey", 1_000, seed=2)
    assert "nhs_number" not in records.columns
    share = records["ni_number"].notna().mean()
    assert 0.3 < share < 0.5


def _within(observed: np.ndarray, rate: float) -> bool:
    n = len(observed)
    sigma = np.sqrt(rate * (1 - rate) / n)
    return abs(observed.mean() - rate) <= 4 * sigma + 1e-9


def test_corruption_is_applied_at_the_configured_rates(world) -> None:
    rates = CorruptionRates(
        given_name_typo=0.2,
        nickname=0.5,
        family_name_typo=0.15,
        dob_swap_day_month=0.3,
        nhs_missing=0.25,
        old_postcode=0.2,
        sex_missing=0.1,
    )
    records, truth = make_dataset(world, "hospital_episodes", 3_000, seed=9, rates=rates)
    people = world.persons.set_index("person_id").loc[truth["person_id"]]
    assert _within(truth["corrupt_nhs_missing"].to_numpy(), 0.25)
    assert records["nhs_number"].isna().mean() == pytest.approx(truth["corrupt_nhs_missing"].mean())
    assert _within(truth["corrupt_sex_missing"].to_numpy(), 0.1)
    assert _within(truth["corrupt_family_name_typo"].to_numpy(), 0.15)
    # A typo can only be seen where the name differs from the truth (one keystroke away).
    typo = truth["corrupt_family_name_typo"].to_numpy()
    changed = (
        records["family_name"].str.lower().to_numpy()
        != people["family_name"].astype(str).str.lower().to_numpy()
    )
    assert (changed[typo]).all()
    # Nicknames and day/month swaps are only possible for some people: check the rate among those.
    has_nickname = (
        people["given_name"]
        .astype(str)
        .str.lower()
        .isin(
            ["robert", "william", "thomas", "elizabeth", "margaret", "james", "oliver", "charles", "theodore"]
        )
        .to_numpy()
    )
    assert _within(truth["corrupt_nickname"].to_numpy()[has_nickname], 0.5)
    dob = pd.DatetimeIndex(people["dob"])
    swappable = np.asarray((dob.day <= 12) & (dob.day != dob.month))
    assert _within(truth["corrupt_dob_swap_day_month"].to_numpy()[swappable], 0.3)
    assert not truth["corrupt_dob_swap_day_month"].to_numpy()[~swappable].any()
    swapped = truth["corrupt_dob_swap_day_month"].to_numpy()
    recorded = pd.to_datetime(records["dob"])
    assert (recorded.dt.day.to_numpy()[swapped] == dob.month[swapped]).all()
    # An old postcode is flagged only where it differs from the current one (rarely the same postcode).
    assert 0.17 < truth["corrupt_old_postcode"].mean() <= 0.2 + 4 * np.sqrt(0.2 * 0.8 / 3_000)


def test_business_datasets_carry_name_variants_and_missing_company_numbers(world) -> None:
    records, truth = make_dataset(world, "product_safety_incidents", 2_000, seed=3)
    firms = world.businesses.set_index("business_id").loc[truth["business_id"]]
    variant = truth["corrupt_business_name_variant"].to_numpy()
    assert 0.4 < variant.mean() < 0.6
    # A later keystroke error can undo a variant ("Ltd." -> "Ltd"), so look at rows without one.
    clean_variant = variant & ~truth["corrupt_business_name_typo"].to_numpy()
    assert (
        records["business_name"].to_numpy()[clean_variant] != firms["name"].to_numpy()[clean_variant]
    ).all()
    assert 0.35 < records["company_number"].isna().mean() < 0.45


def test_unknown_dataset_name_says_what_to_use(world) -> None:
    with pytest.raises(KeyError, match="hospital_episodes"):
        make_dataset(world, "no_such_dataset", 10)
