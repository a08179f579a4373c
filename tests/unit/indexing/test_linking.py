"""The matching engine's newer parts: one-to-one assignment, saved models, sampled training, deduplication."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tre_lib.indexing import (
    MatchError,
    MatchSpec,
    assign_links,
    find_duplicates,
    link_attributes,
    load_model,
    match,
    model_path_for,
    normalise_records,
    spec_for,
)
from tre_lib.indexing.demo import build_index_from_world, expected_surrogates


def _pairs(rows: list[tuple[int, str, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "row": [r for r, _, _ in rows],
            "surrogate_id": [s for _, s, _ in rows],
            "match_probability": [0.9] * len(rows),
            "match_weight": [w for _, _, w in rows],
        }
    )


def test_best_link_per_record_may_share_an_entry_without_one_to_one() -> None:
    pairs = _pairs([(0, "A", 10.0), (1, "A", 8.0), (1, "B", 5.0)])
    chosen = assign_links(pairs)
    assert dict(zip(chosen["row"], chosen["surrogate_id"], strict=True)) == {0: "A", 1: "A"}


def test_one_to_one_gives_a_contested_entry_to_the_stronger_record_and_the_next_best_to_the_other() -> None:
    pairs = _pairs([(0, "A", 10.0), (1, "A", 8.0), (1, "B", 5.0), (2, "B", 4.0), (2, "C", 1.0)])
    chosen = assign_links(pairs, one_to_one=True)
    assert dict(zip(chosen["row"], chosen["surrogate_id"], strict=True)) == {0: "A", 1: "B", 2: "C"}


def test_one_to_one_never_reuses_entries_taken_by_the_deterministic_pass() -> None:
    pairs = _pairs([(0, "A", 10.0), (0, "B", 3.0), (1, "A", 2.0)])
    chosen = assign_links(pairs, one_to_one=True, taken=np.array(["A"], dtype=object))
    assert dict(zip(chosen["row"], chosen["surrogate_id"], strict=True)) == {0: "B"}


def test_one_to_one_deterministic_keys_shared_by_two_records_are_left_to_splink() -> None:
    attrs = pd.DataFrame({"code": ["x", "x", "y"]})
    index_frame = pd.DataFrame({"surrogate_id": ["s1", "s2"], "code": ["x", "y"]})
    spec = MatchSpec(kind="test", deterministic_rules=(("code",),))
    many = link_attributes(attrs, index_frame, spec)
    assert many.surrogate_id.tolist() == ["s1", "s1", "s2"]
    once = link_attributes(attrs, index_frame, spec.with_overrides(one_to_one=True))
    assert once.surrogate_id.tolist() == [None, None, "s2"]
    assert once.method.tolist() == ["unmatched", "unmatched", "deterministic"]


@pytest.fixture(scope="module")
def hospital_index(world, tmp_path_factory):
    from tre_lib.synth import make_dataset

    index, index_truth = build_index_from_world(world, "demographic", tmp_path_factory.mktemp("idx") / "i")
    records, truth = make_dataset(world, "hospital_episodes", 600, seed=21)
    return index, records, expected_surrogates(truth, index_truth, "episode_id")


def test_a_saved_model_is_reused_without_training_and_links_the_same(hospital_index) -> None:
    index, records, expected = hospital_index
    # Training on a sample of 300 of the 600 records: the model still scores all of them.
    spec = spec_for("hospital_episodes", training_records=300)
    path = model_path_for(index, spec)
    assert path.parent == index.directory / "models"
    first = match(records, index, spec, model_path=path, expected=expected)
    assert path.exists() and load_model(path) == first.model
    assert any("random 300 of 600" in step for step in first.report.training)
    again = match(records, index, spec, model_path=path, train=False, expected=expected)
    assert again.report.training[0].startswith("saved model reused")
    pd.testing.assert_frame_equal(again.links, first.links)
    assert again.report.accuracy is not None and again.report.accuracy["f1"] >= 0.97


def test_train_false_without_a_usable_model_says_what_to_do(hospital_index, tmp_path: Path) -> None:
    index, records, _ = hospital_index
    spec = spec_for("hospital_episodes")
    with pytest.raises(MatchError, match="train=True"):
        match(records, index, spec, model_path=tmp_path / "none.json", train=False)
    with pytest.raises(MatchError, match="model_path"):
        match(records, index, spec, train=False)
    # A model trained on deliveries with postcodes cannot score one without them.
    path = tmp_path / "model.json"
    match(records.head(150), index, spec, model_path=path)
    without_postcode = records.head(150).drop(columns=["postcode"])
    with pytest.raises(MatchError, match="cannot score this delivery"):
        match(without_postcode, index, spec, model_path=path, train=False)
    # Left to decide (train=None), it retrains and replaces the saved model.
    result = match(without_postcode, index, spec, model_path=path)
    assert not result.report.training[0].startswith("saved model reused")
    saved = json.loads(path.read_text(encoding="utf-8"))
    assert "postcode" not in {c["output_column_name"] for c in saved["comparisons"]}


def test_a_broken_model_file_is_reported_not_raised_as_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "model.json"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(MatchError, match="delete it and retrain"):
        load_model(path)


def test_find_duplicates_clusters_records_of_one_person(world) -> None:
    from tre_lib.synth import make_dataset

    # People are drawn with replacement, so registrations repeat people with different errors.
    records, truth = make_dataset(world, "gp_registrations", 800, seed=4)
    attrs = normalise_records("demographic", records)
    dups = find_duplicates(attrs, spec_for("demographic"))
    person = truth["person_id"].to_numpy()
    same_cluster = dups.cluster[:, None] == dups.cluster[None, :]
    same_person = person[:, None] == person[None, :]
    upper = np.triu(np.ones_like(same_person), k=1)
    found, real = same_cluster & upper, same_person & upper
    assert real.sum() > 50  # the sample really has duplicates
    precision = (found & real).sum() / found.sum()
    recall = (found & real).sum() / real.sum()
    assert precision >= 0.97 and recall >= 0.9
    assert set(dups.edges["method"]) == {"deterministic", "probabilistic"}
