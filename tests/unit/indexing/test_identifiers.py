"""Identifiers declared as data: aliases, normalisers, derived blocking, findings, estimates, growth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tre_lib.indexing import ReferenceIndex, match, spec_for
from tre_lib.indexing.identifiers import DeclarationError, load_declaration, parse_declaration
from tre_lib.indexing.normalise import format_postcode, normalise_postcode
from tre_lib.indexing.report import blocking_recall_from_model, estimate_quality
from tre_lib.synth import World, make_dataset


def test_columns_of_other_countries_resolve_to_declared_identifiers() -> None:
    people = load_declaration("demographic")
    resolved = {
        c: people.identifier_for(c) for c in ("surname", "soc_sec_id", "suburb", "zip", "state", "SSN")
    }
    assert resolved == {
        "surname": "family_name",
        "soc_sec_id": "national_id",
        "suburb": "locality",
        "zip": "postcode",
        "state": "region",
        "SSN": "national_id",
    }
    assert people.identifier_for("favourite_colour") is None


def test_four_digit_and_zip_postcodes_are_kept_and_only_uk_ones_are_spaced() -> None:
    clean = normalise_postcode(pd.Series(["2600", "02139-4307", "1012 ab", "sw1a 1aa", "X"]))
    assert clean.tolist() == ["2600", "021394307", "1012AB", "SW1A1AA", None]
    assert format_postcode(clean).tolist() == ["2600", "021394307", "1012AB", "SW1A 1AA", None]


def test_blanked_share_reports_a_column_its_normaliser_could_not_read() -> None:
    people = load_declaration("demographic")
    raw = pd.DataFrame({"dob": ["23.11.1987", "01.02.1990", "1980-03-07", None]})
    shares = people.blanked(raw, people.normalise(raw))
    assert shares == {"dob": pytest.approx(2 / 3, abs=1e-3)}


@pytest.mark.parametrize(
    "carried",
    [
        {"given_name_canonical", "family_name", "postcode"},
        {"family_name", "dob", "locality", "national_id"},
        {"given_name_canonical", "family_name", "dob", "sex", "nhs_number"},
    ],
)
def test_blocking_and_training_derive_from_any_subset_of_identifiers(carried: set[str]) -> None:
    people = load_declaration("demographic")
    available = frozenset(carried)
    rules = people.blocking_fields(available)
    assert rules and all(set(rule) <= available for rule in rules)
    assert len(people.blocking_rules(available)) == len(rules)
    em = [r.create_blocking_rule_dict("duckdb")["blocking_rule"] for r in people.em_rules(available)]
    assert len(em) >= 2
    compared = {c.create_output_column_name() for c in people.comparisons(available)}
    assert compared == available


def test_a_declaration_naming_an_unknown_normaliser_is_refused() -> None:
    text = '[identifiers.x]\nnormaliser = "soundex"\ncomparison = "exact"\n'
    with pytest.raises(DeclarationError, match="normaliser 'soundex'"):
        parse_declaration(text, "bad.toml")


def test_a_declaration_whose_alias_names_two_identifiers_is_refused() -> None:
    text = (
        '[identifiers.a]\nnormaliser = "code"\ncomparison = "exact"\naliases = ["id"]\n'
        '[identifiers.b]\nnormaliser = "code"\ncomparison = "exact"\naliases = ["id"]\n'
    )
    with pytest.raises(DeclarationError, match="names both"):
        parse_declaration(text)


def test_estimates_follow_the_match_probabilities() -> None:
    est = estimate_quality(10, [0.9, 0.9], [0.5, 0.1], blocking_recall=0.9)
    assert est["precision"] == pytest.approx((10 + 1.8) / 12, abs=1e-4)
    assert est["recall"] == pytest.approx(0.9 * 11.8 / 12.4, abs=1e-4)


def test_blocking_recall_is_the_chance_some_rule_agrees() -> None:
    def comparison(name: str, m: float) -> dict[str, object]:
        return {
            "output_column_name": name,
            "comparison_levels": [{"is_null_level": True}, {"m_probability": m}, {"m_probability": 1 - m}],
        }

    model = {"comparisons": [comparison("a", 0.9), comparison("b", 0.8)]}
    assert blocking_recall_from_model(model, [("a",), ("b",)]) == pytest.approx(1 - 0.1 * 0.2)
    assert blocking_recall_from_model(model, [("a", "b")]) == pytest.approx(0.72)


def _grow_empty_index(world: World, tmp_path: Path, *, national_id: bool) -> tuple[pd.DataFrame, int, object]:
    """A first delivery (several episodes per person, with keying errors) into an empty index."""
    records, truth = make_dataset(world, "hospital_episodes", 1_200, seed=5)
    if not national_id:
        records = records.drop(columns=["nhs_number"])
    empty = pd.DataFrame({c: pd.Series([], dtype=object) for c in load_declaration("demographic").inputs})
    index, _ = ReferenceIndex.create("demographic", tmp_path / "people", empty)
    result = match(records, index, spec_for("hospital_episodes", on_unmatched="add"))
    joined = pd.DataFrame({"person": truth["person_id"].to_numpy(), "entry": result.links["surrogate_id"]})
    return joined, len(index), result


def test_index_growth_never_merges_two_people_and_leaves_under_one_percent_duplicates(
    world: World, tmp_path: Path
) -> None:
    joined, n_entries, result = _grow_empty_index(world, tmp_path, national_id=True)
    people_per_entry = joined.groupby("entry")["person"].nunique()
    assert (people_per_entry == 1).all(), "an entry holds two people"
    n_people = joined["person"].nunique()
    assert n_people <= n_entries < n_people * 1.01
    assert result.report.growth["method"].startswith("splink")  # type: ignore[attr-defined]


def test_index_growth_without_a_national_id_keeps_duplicates_under_one_percent(
    world: World, tmp_path: Path
) -> None:
    joined, n_entries, _ = _grow_empty_index(world, tmp_path, national_id=False)
    people_per_entry = joined.groupby("entry")["person"].nunique()
    n_people = joined["person"].nunique()
    # Names, dates of birth and postcodes alone: near-twins (same name, birth dates a day apart) can
    # chain into one cluster; at most one entry in 500 may hold two people.
    assert (people_per_entry > 1).sum() <= n_people / 500
    assert n_entries - n_people < n_people * 0.01


def test_growth_is_repeatable(world: World, tmp_path: Path) -> None:
    records, _ = make_dataset(world, "hospital_episodes", 400, seed=8)
    empty = pd.DataFrame({c: pd.Series([], dtype=object) for c in load_declaration("demographic").inputs})
    sizes = []
    for run in range(2):
        index, _ = ReferenceIndex.create("demographic", tmp_path / f"run{run}", empty)
        match(records, index, spec_for("hospital_episodes", on_unmatched="add"))
        sizes.append(np.sort(index.entries["family_name"].fillna("").to_numpy()).tolist())
    assert sizes[0] == sizes[1]


@pytest.mark.parametrize(
    ("dataset", "drop"),
    [("hospital_episodes", ()), ("labour_force_survey", ()), ("hospital_episodes", ("nhs_number",))],
)
def test_estimated_precision_and_recall_are_within_two_points_of_the_truth_on_the_demo_world(
    world: World, tmp_path: Path, dataset: str, drop: tuple[str, ...]
) -> None:
    from tre_lib.indexing.demo import build_index_from_world, expected_surrogates

    records, truth = make_dataset(world, dataset, 800, seed=7)
    index, index_truth = build_index_from_world(world, "demographic", tmp_path / "people", fraction=0.9)
    expected = expected_surrogates(truth, index_truth, spec_for(dataset).record_id)
    result = match(records.drop(columns=list(drop)), index, spec_for(dataset), expected=expected)
    estimated, accuracy = result.report.estimated, result.report.accuracy
    assert accuracy is not None and estimated
    assert abs(estimated["precision"] - accuracy["precision"]) <= 0.02
    assert abs(estimated["recall"] - accuracy["recall"]) <= 0.02
    assert 0.0 < result.report.blocking["estimated_recall"] <= 1.0


def test_the_same_delivery_into_the_same_index_gives_the_same_links(world: World, tmp_path: Path) -> None:
    from tre_lib.indexing.demo import build_index_from_world

    records, _ = make_dataset(world, "labour_force_survey", 600, seed=9)
    runs = []
    for run in range(2):
        index, _ = build_index_from_world(world, "demographic", tmp_path / f"run{run}", fraction=0.9, seed=1)
        # The index's surrogate ids are random per build: compare links by the entry's row in the index.
        row_of = {sid: i for i, sid in enumerate(index.entries["surrogate_id"])}
        result = match(records, index, spec_for("labour_force_survey"))
        runs.append((result.links["method"].tolist(), [row_of.get(s) for s in result.links["surrogate_id"]]))
    assert runs[0] == runs[1]


def test_candidates_between_the_review_and_match_thresholds_are_queued_not_linked(
    world: World, tmp_path: Path
) -> None:
    from tre_lib.indexing.demo import build_index_from_world

    records, _ = make_dataset(world, "labour_force_survey", 600, seed=9)
    index, _ = build_index_from_world(world, "demographic", tmp_path / "people", fraction=0.9, seed=1)
    spec = spec_for("labour_force_survey", threshold_match_probability=0.999, review_match_probability=0.3)
    result = match(records, index, spec)
    review = result.review
    assert review is not None and len(review) == result.report.review["queued"] > 0
    assert review["match_probability"].between(0.3, 0.999, inclusive="left").all()
    queued = result.links.set_index("record_id").loc[review["record_id"]]
    assert queued["method"].eq("unmatched").all()
    assert {"given_name", "family_name", "dob"} <= set(review.columns)  # side by side needs the record
