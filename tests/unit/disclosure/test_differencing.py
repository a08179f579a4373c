"""Differencing: a new table combined with earlier releases must not recover a small cell."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tre_lib.disclosure import (
    CategoryFilter,
    DifferencingError,
    InMemoryReleaseLedger,
    ReleasedTable,
    ReleaseLedger,
    ReleaseScope,
    check_differencing,
    protect_table,
)
from tre_lib.disclosure.differencing import OTHER, PublishedCell

SCOPE = ReleaseScope(project="p-100", dataset="census-2021")
BANDS_64 = {"16-39": range(16, 40), "40-64": range(40, 65)}
BANDS_65 = {"16-39": range(16, 40), "40-65": range(40, 66)}


def people(counts: dict[tuple[str, int, str], int]) -> pd.DataFrame:
    """One record per person: ``{(region, age, sex): how many}``."""
    rows = [(r, a, s) for (r, a, s), n in counts.items() for _ in range(n)]
    return pd.DataFrame(rows, columns=["region", "age", "sex"])


def with_band(df: pd.DataFrame, bands: dict[str, range]) -> pd.DataFrame:
    """Keep the ages some band covers and label each record with its band."""
    label = {age: name for name, ages in bands.items() for age in ages}
    kept = df[df["age"].isin(label)]
    return kept.assign(band=kept["age"].map(label))


def ledger_with(*releases: ReleasedTable) -> InMemoryReleaseLedger:
    ledger = InMemoryReleaseLedger()
    for release in releases:
        ledger.record(release)
    return ledger


def evaluate(combination: tuple[tuple[str, tuple[object, ...], float], ...], *tables: ReleasedTable) -> float:
    """Value of a finding's weighted sum of published cells."""
    published = {(t.release_id, c.labels): c.value for t in tables for c in t.cells}
    total = 0.0
    for rid, labels, coef in combination:
        value = published[(rid, labels)]
        assert value is not None, "a suppressed cell cannot be part of the combination"
        total += coef * value
    return total


# 16-39 and 40-64 are large in both sexes; three women and no men are aged 65.
AGES = people(
    {("n", 30, "f"): 40, ("n", 30, "m"): 35, ("n", 50, "f"): 30, ("n", 50, "m"): 28, ("n", 65, "f"): 3}
)


def test_bands_16_64_then_16_65_reveal_the_65_year_olds() -> None:
    first = protect_table(with_band(AGES, BANDS_64), "band", "sex")
    second = protect_table(with_band(AGES, BANDS_65), "band", "sex")
    # Each table on its own passes: every cell has at least 10 people.
    assert first.status == "pass" and second.status == "pass"
    earlier = ReleasedTable.from_protected(first, SCOPE, release_id="r1", categories={"band": BANDS_64})
    findings = check_differencing(second, ledger_with(earlier), SCOPE, categories={"band": BANDS_65})
    assert [(f.kind, dict(f.cell), f.interval) for f in findings] == [
        ("recoverable", {"band": (65,), "sex": ("f",)}, (3.0, 3.0))
    ]
    finding = findings[0]
    assert finding.releases[0] in ("r1", "<new>") and set(finding.releases) == {"r1", "<new>"}
    new = ReleasedTable.from_protected(second, SCOPE, release_id="<new>", categories={"band": BANDS_65})
    # The certificate is a linear combination of published cells that gives the hidden count.
    assert evaluate(finding.combination, earlier, new) == pytest.approx(3.0)
    assert "below the threshold of 10" in finding.message


def test_suppressed_cell_recovered_from_the_margins_of_an_earlier_release() -> None:
    # The new table has a separate 65 row: protect_table suppresses its small cell (and complements), but
    # the earlier 16-64 table's margins give the women aged 65 as a difference of column totals.
    bands = {"16-39": range(16, 40), "40-64": range(40, 65), "65": range(65, 66)}
    first = protect_table(with_band(AGES, BANDS_64), "band", "sex")
    second = protect_table(with_band(AGES, bands), "band", "sex")
    assert second.cells[("65", "f")].primary
    earlier = ReleasedTable.from_protected(first, SCOPE, release_id="r1", categories={"band": BANDS_64})
    findings = check_differencing(second, ledger_with(earlier), SCOPE, categories={"band": bands})
    assert [(dict(f.cell), f.interval) for f in findings] == [({"band": (65,), "sex": ("f",)}, (3.0, 3.0))]


def test_table_before_and_after_excluding_a_group() -> None:
    # Care-home residents: 2 in north/f, 4 in south/m, 12 in south/f (large enough), none in north/m.
    base = {("north", "f"): 30, ("north", "m"): 25, ("south", "f"): 40, ("south", "m"): 33}
    care = {("north", "f"): 2, ("south", "m"): 4, ("south", "f"): 12}
    rows = [(r, s, "no") for (r, s), n in base.items() for _ in range(n)]
    rows += [(r, s, "yes") for (r, s), n in care.items() for _ in range(n)]
    df = pd.DataFrame(rows, columns=["region", "sex", "care_home"])
    everyone = protect_table(df, "region", "sex")
    excluded = protect_table(df[df["care_home"] != "yes"], "region", "sex")
    assert everyone.status == "pass" and excluded.status == "pass"
    ledger = ledger_with(ReleasedTable.from_protected(everyone, SCOPE, release_id="all-residents"))
    findings = check_differencing(
        excluded, ledger, SCOPE, filters=[CategoryFilter("care_home", ("yes",), exclude=True)]
    )
    found = {(f.cell["region"], f.cell["sex"]): f.interval for f in findings}
    assert found == {(("north",), ("f",)): (2.0, 2.0), (("south",), ("m",)): (4.0, 4.0)}
    assert all(f.cell["care_home"] == ("yes",) for f in findings)


def test_subpopulation_filters_16_64_and_16_65() -> None:
    # The same region x sex table, once for ages 16-64 and once for 16-65, declared as filters.
    df = people(
        {("n", 30, "f"): 20, ("n", 30, "m"): 22, ("s", 30, "f"): 25, ("s", 30, "m"): 24, ("s", 65, "m"): 1}
    )
    first = protect_table(df[df.age <= 64], "region", "sex")
    second = protect_table(df[df.age <= 65], "region", "sex")
    earlier = ReleasedTable.from_protected(
        first, SCOPE, release_id="r1", filters=[CategoryFilter("age", tuple(range(16, 65)))]
    )
    findings = check_differencing(
        second, ledger_with(earlier), SCOPE, filters=[CategoryFilter("age", tuple(range(16, 66)))]
    )
    assert [(dict(f.cell), f.interval) for f in findings] == [
        ({"age": (65,), "region": ("s",), "sex": ("m",)}, (1.0, 1.0))
    ]


def test_safe_pair_of_nested_bands_has_no_finding() -> None:
    # Twelve women and fifteen men aged 65: the difference is not below the threshold.
    df = people({("n", 30, "f"): 40, ("n", 30, "m"): 35, ("n", 50, "f"): 30, ("n", 50, "m"): 28})
    df = pd.concat([df, people({("n", 65, "f"): 12, ("n", 65, "m"): 15})], ignore_index=True)
    first = protect_table(with_band(df, BANDS_64), "band", "sex")
    second = protect_table(with_band(df, BANDS_65), "band", "sex")
    earlier = ReleasedTable.from_protected(first, SCOPE, release_id="r1", categories={"band": BANDS_64})
    assert check_differencing(second, ledger_with(earlier), SCOPE, categories={"band": BANDS_65}) == []


def test_safe_pair_of_tables_sharing_only_margins() -> None:
    # region x sex, then region x band: they share the region totals, which recover nothing small.
    df = with_band(AGES, BANDS_64)
    first = protect_table(df, "region", "sex")
    second = protect_table(df, "region", "band")
    earlier = ReleasedTable.from_protected(first, SCOPE, release_id="r1")
    assert check_differencing(second, ledger_with(earlier), SCOPE, categories={"band": BANDS_64}) == []


def test_other_datasets_are_not_combined() -> None:
    first = protect_table(with_band(AGES, BANDS_64), "band", "sex")
    second = protect_table(with_band(AGES, BANDS_65), "band", "sex")
    other = ReleaseScope(project=SCOPE.project, dataset="survey-2022")
    earlier = ReleasedTable.from_protected(first, other, release_id="r1", categories={"band": BANDS_64})
    # Same project, another population: no equation links the two tables.
    assert check_differencing(second, ledger_with(earlier), SCOPE, categories={"band": BANDS_65}) == []


def test_rounded_earlier_release_still_narrows_the_difference() -> None:
    first = protect_table(
        with_band(AGES, BANDS_64), "band", "sex", rules={"mitigation": "round", "rounding_method": "nearest"}
    )
    second = protect_table(with_band(AGES, BANDS_65), "band", "sex")
    earlier = ReleasedTable.from_protected(first, SCOPE, release_id="r1", categories={"band": BANDS_64})
    # Rounding to the nearest 5 hides at most 2 either way (base 5), so the 65-year-old women (3) lie in a
    # window of width at most 4 around the difference: still far narrower than the threshold.
    assert earlier.tolerance == (2.0, 2.0)
    findings = check_differencing(second, ledger_with(earlier), SCOPE, categories={"band": BANDS_65})
    cells = {tuple(sorted(f.cell.items())): f.interval for f in findings}
    lo, hi = cells[(("band", (65,)), ("sex", ("f",)))]
    assert lo <= 3 <= hi and hi - lo <= 4


def test_magnitude_table_is_reported_not_checked() -> None:
    df = with_band(AGES, BANDS_65).assign(income=100.0)
    table = protect_table(df, "band", "sex", values="income", aggfunc="sum")
    ledger = ledger_with(
        ReleasedTable.from_protected(
            protect_table(with_band(AGES, BANDS_64), "band", "sex"), SCOPE, release_id="r1"
        )
    )
    findings = check_differencing(table, ledger, SCOPE)
    assert [f.kind for f in findings] == ["not_checked"]
    assert "count tables" in findings[0].message


def test_release_record_json_round_trip() -> None:
    table = protect_table(with_band(AGES, BANDS_65), ["band", "region"], "sex")
    record = ReleasedTable.from_protected(
        table,
        SCOPE,
        release_id="r7",
        categories={"band": BANDS_65},
        filters=[
            CategoryFilter("age", tuple(range(16, 66))),
            CategoryFilter("care_home", ("yes",), exclude=True),
        ],
    )
    text = record.to_json()
    again = ReleasedTable.from_json(text)
    assert again == record
    assert json.loads(text)["categories"]["band"][0] == ["16-39", list(range(16, 40))]
    assert PublishedCell(("40-65", "n", "f"), 33.0) in again.cells
    assert PublishedCell(("All", "All", "All"), float(len(AGES))) in again.cells


def test_malformed_record_is_refused() -> None:
    with pytest.raises(DifferencingError, match="malformed release record"):
        ReleasedTable.from_json('{"release_id": "x"}')


def test_ledger_keeps_every_release_and_refuses_a_duplicate_id() -> None:
    ledger = InMemoryReleaseLedger()
    assert isinstance(ledger, ReleaseLedger)
    table = protect_table(with_band(AGES, BANDS_64), "band", "sex")
    first = ReleasedTable.from_protected(table, SCOPE, release_id="r1")
    other_project = ReleasedTable.from_protected(table, ReleaseScope("p-200", SCOPE.dataset), release_id="r2")
    unrelated = ReleasedTable.from_protected(table, ReleaseScope("p-300", "other"), release_id="r3")
    for release in (first, other_project, unrelated):
        ledger.record(release)
    with pytest.raises(DifferencingError, match="already in the ledger"):
        ledger.record(first)
    assert len(ledger) == 3
    # Same project or same dataset.
    assert [r.release_id for r in ledger.releases_for(SCOPE)] == ["r1", "r2"]


def test_overlapping_categories_in_one_table_are_refused() -> None:
    table = protect_table(with_band(AGES, BANDS_64), "band", "sex")
    overlapping = {"band": {"16-39": range(16, 45), "40-64": range(40, 65)}}
    earlier = ReleasedTable.from_protected(table, SCOPE, release_id="r1", categories=overlapping)
    with pytest.raises(DifferencingError, match="overlap"):
        check_differencing(table, ledger_with(earlier), SCOPE, categories=overlapping)


def test_finding_is_json_serialisable_and_names_other_categories() -> None:
    first = protect_table(with_band(AGES, BANDS_64), "band", "sex")
    second = protect_table(with_band(AGES, BANDS_65), "band", "sex")
    earlier = ReleasedTable.from_protected(first, SCOPE, release_id="r1", categories={"band": BANDS_64})
    (finding,) = check_differencing(second, ledger_with(earlier), SCOPE, categories={"band": BANDS_65})
    data = json.loads(json.dumps(finding.as_dict()))
    assert data["cell"] == {"band": [65], "sex": ["f"]} and data["interval"] == [3.0, 3.0]
    assert OTHER not in data["cell"]["sex"]


def test_first_release_of_a_dataset_has_nothing_to_difference_against() -> None:
    table = protect_table(with_band(AGES, BANDS_65), "band", "sex")
    assert check_differencing(table, InMemoryReleaseLedger(), SCOPE, categories={"band": BANDS_65}) == []
