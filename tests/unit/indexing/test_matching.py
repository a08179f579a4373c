"""The matching service: deterministic pass, Splink on the remainder, growth, report and charts."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from splink import block_on

from tre_lib.indexing import MatchError, MatchQualityReport, ReferenceIndex, match, spec_for
from tre_lib.indexing.demo import build_index_from_world, expected_surrogates, index_records
from tre_lib.indexing.report import evaluate_links


@pytest.fixture(scope="module")
def hospital(world, tmp_path_factory):
    """Hospital episodes matched against the full demographic index (computed once for the module)."""
    from tre_lib.synth import make_dataset

    root = tmp_path_factory.mktemp("hospital")
    index, index_truth = build_index_from_world(world, "demographic", root / "index")
    records, truth = make_dataset(world, "hospital_episodes", 1_500, seed=8)
    expected = expected_surrogates(truth, index_truth, "episode_id")
    result = match(
        records, index, spec_for("hospital_episodes"), charts_dir=root / "charts", expected=expected
    )
    return records, truth, expected, result


def test_deterministic_pass_links_exact_records_to_their_own_entries(world, index_dir: Path) -> None:
    index, truth = build_index_from_world(world, "demographic", index_dir)
    records, _ = index_records(world, "demographic")
    delivery = records.head(300).assign(record_id=range(300))
    result = match(delivery, index, spec_for("demographic", record_id="record_id"))
    assert (result.links["method"] == "deterministic").all()
    assert result.links["surrogate_id"].tolist() == truth["surrogate_id"].head(300).tolist()
    assert result.report.backend == "none"  # nothing left for Splink


def test_one_link_per_delivery_record(hospital) -> None:
    records, _, _, result = hospital
    links = result.links
    assert links["record_id"].tolist() == records["episode_id"].tolist()
    assert links["record_id"].is_unique
    linked = links["method"].isin(["deterministic", "probabilistic"])
    assert links.loc[linked, "surrogate_id"].notna().all()
    assert links.loc[~linked, "surrogate_id"].isna().all()


def test_splink_links_corrupted_records_with_high_precision_and_recall(hospital) -> None:
    _, truth, expected, result = hospital
    report = result.report
    # Measured at 1.000 precision / 0.99 recall overall and on Splink's share: bounds sit a little below.
    assert report.accuracy is not None
    assert report.accuracy["precision"] >= 0.98 and report.accuracy["recall"] >= 0.95
    remainder = result.links["method"].isin(["probabilistic", "unmatched"]).to_numpy()
    assert report.counts["probabilistic"] >= 50  # the corrupted records really went to Splink
    splink_part = evaluate_links(result.links[remainder], expected)
    assert splink_part["precision"] >= 0.95
    assert splink_part["recall"] >= 0.85
    # Splink really linked the hard cases: missing NHS number and day/month swapped.
    hard = truth["corrupt_nhs_missing"].to_numpy() & truth["corrupt_dob_swap_day_month"].to_numpy()
    hard_links = result.links[hard]
    assert (hard_links["method"] != "deterministic").all()
    assert (
        hard_links["surrogate_id"].to_numpy() == expected.reindex(hard_links["record_id"]).to_numpy()
    ).mean() >= 0.8


def test_report_round_trips_through_json_and_holds_model_parameters(hospital) -> None:
    report = hospital[3].report
    text = report.to_json()
    again = MatchQualityReport.from_json(text)
    assert again.to_json() == text
    data = json.loads(text)
    assert (
        data["counts"]["deterministic"] + data["counts"]["probabilistic"] + data["counts"]["unmatched"]
        == 1_500
    )
    levels = {(p["comparison"], p["level"]) for p in data["parameters"]}
    assert ("dob", "Day and month transposed") in levels
    assert all(0 <= p["u_probability"] <= 1 for p in data["parameters"] if p["u_probability"] is not None)
    assert any("labels" in step for step in data["training"])


def test_charts_are_saved_offline(hospital) -> None:
    charts = hospital[3].report.charts
    assert set(charts) == {"match_weights", "m_u_parameters", "match_weight_distribution"}
    for name in ("match_weights", "m_u_parameters"):
        html = Path(charts[name]).read_text(encoding="utf-8")
        assert "vega" in html and 'src="http' not in html  # libraries inlined: opens without a network
    png = Path(charts["match_weight_distribution"]).read_bytes()
    assert png.startswith(b"\x89PNG")


@pytest.mark.parametrize("on_unmatched", ["add", "report"])
def test_unmatched_records_grow_the_index_only_when_asked(world, tmp_path: Path, on_unmatched: str) -> None:
    from tre_lib.synth import make_dataset

    index, index_truth = build_index_from_world(world, "demographic", tmp_path / "idx", fraction=0.8, seed=1)
    records, truth = make_dataset(world, "gp_registrations", 600, seed=2)
    before = len(index)
    result = match(records, index, spec_for("gp_registrations", on_unmatched=on_unmatched))
    outsiders = ~truth["person_id"].isin(index_truth["person_id"]).to_numpy()
    assert outsiders.sum() > 50
    reloaded = ReferenceIndex.load(tmp_path / "idx")
    if on_unmatched == "add":
        new = result.links["method"] == "new"
        assert new.sum() >= 0.9 * outsiders.sum()
        assert len(reloaded) == before + result.links.loc[new, "surrogate_id"].nunique()
        assert result.links.loc[new, "surrogate_id"].isin(reloaded.entries["surrogate_id"]).all()
        assert result.report.index_versions == {"before": 1, "after": 2}
    else:
        assert (result.links["method"] == "unmatched").sum() >= 0.9 * outsiders.sum()
        assert len(reloaded) == before and reloaded.version == 1
        assert result.links.loc[result.links["method"] == "unmatched", "surrogate_id"].isna().all()


def test_business_deliveries_link_name_variants(world, tmp_path: Path) -> None:
    from tre_lib.synth import make_dataset

    index, index_truth = build_index_from_world(world, "business", tmp_path / "biz")
    records, truth = make_dataset(world, "product_safety_incidents", 800, seed=5)
    expected = expected_surrogates(truth, index_truth, "incident_id")
    result = match(records, index, spec_for("product_safety_incidents"), expected=expected)
    assert result.report.accuracy is not None
    assert result.report.accuracy["precision"] >= 0.98 and result.report.accuracy["recall"] >= 0.9


def test_spec_for_the_wrong_index_kind_is_refused(world, index_dir: Path) -> None:
    index, _ = build_index_from_world(world, "business", index_dir)
    with pytest.raises(MatchError, match="spec_for"):
        match(pd.DataFrame({"given_name": ["x"]}), index, spec_for("demographic"))


@pytest.mark.slow
def test_spark_backend_links_like_duckdb(world, tmp_path: Path, spark) -> None:
    from tre_lib.synth import make_dataset

    index, index_truth = build_index_from_world(world, "demographic", tmp_path / "idx")
    records, truth = make_dataset(world, "hospital_episodes", 300, seed=12)
    expected = expected_surrogates(truth, index_truth, "episode_id")
    # Spark runs every Splink step as several jobs, slow on a shared local[1] machine: one u chunk (no probe
    # phase), a small u sample and one EM session keep the test short.
    spec = spec_for(
        "hospital_episodes",
        backend="spark",
        spark_session=spark,
        u_max_pairs=5e4,
        u_num_chunks=1,
        em_blocking_rules=lambda available: [block_on("given_name_canonical", "family_name")],
    )
    result = match(records, index, spec, expected=expected)
    assert result.report.backend == "spark"
    assert result.report.counts["probabilistic"] > 0
    assert result.report.accuracy is not None
    assert result.report.accuracy["precision"] >= 0.95 and result.report.accuracy["recall"] >= 0.9


def test_business_spec_links_one_typo_company_numbers_and_name_variants(world, tmp_path: Path) -> None:
    """Records whose company number has one wrong digit, or is missing beside a reworded name, still link.

    Those records match no deterministic key, so their links are Splink's: a one-digit typo must land in
    the near-match level (not count against the match) and a name alone must be enough.
    """
    import numpy as np

    from tre_lib.synth import corruption as cx

    index, index_truth = build_index_from_world(world, "business", tmp_path / "biz", fraction=0.9, seed=3)
    firms = world.businesses
    rng = np.random.default_rng(11)
    rows = rng.choice(len(firms), size=400, replace=True)  # repeats: several incidents per business
    # 0: number typo; 1: no number, reworded name; 2: no number, name typo; 3: correct number
    case = np.arange(len(rows)) % 4
    name = firms["name"].to_numpy(dtype=object)[rows]
    variant = (
        pd.Series(name).str.upper().str.replace(r"\bLTD$", "LIMITED", regex=True).str.replace(" & ", " AND ")
    )
    name = np.where(case == 1, variant.to_numpy(dtype=object), name)
    # Some records with a correct number carry a name typo too (as real ones do), so training sees typos.
    name, _ = cx.typo(name, (case == 2) | ((case == 3) & (np.arange(len(rows)) % 8 == 3)), rng)
    number, _ = cx.digit_typo(firms["company_number"].to_numpy(dtype=object)[rows], case == 0, rng)
    number = np.where((case == 1) | (case == 2), None, number)
    delivery = pd.DataFrame(
        {"incident_id": np.arange(len(rows)), "business_name": name, "company_number": number}
    )
    truth = pd.DataFrame(
        {"incident_id": delivery["incident_id"], "business_id": firms["business_id"].to_numpy()[rows]}
    )
    expected = expected_surrogates(truth, index_truth, "incident_id")

    result = match(delivery, index, spec_for("product_safety_incidents"), expected=expected)

    links = result.links.set_index("record_id")["surrogate_id"].reindex(expected.index)
    in_index = expected.notna().to_numpy()
    linked = links.notna().to_numpy()
    correct = (links.to_numpy() == expected.to_numpy()) & linked
    # Recall where no key links: a mistyped number beside the name, and a reworded name alone. (A name
    # typo with no number is weaker evidence than the prior of one business in a few hundred; not floored.)
    assert correct[(case == 0) & in_index].mean() >= 0.95
    assert correct[(case == 1) & in_index].mean() >= 0.95
    assert correct[linked].mean() >= 0.99  # precision
