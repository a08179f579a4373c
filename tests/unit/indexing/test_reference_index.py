"""Reference indexes: random but stable surrogate ids, atomic versioned storage, growth."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tre_lib.indexing import IndexConflictError, IndexNotFoundError, ReferenceIndex, new_surrogate_ids
from tre_lib.indexing.demo import build_index_from_world, index_records


@pytest.mark.parametrize("kind", ["demographic", "business", "address", "geography", "classification"])
def test_every_kind_builds_from_the_world_with_unique_hex_ids(world, tmp_path: Path, kind: str) -> None:
    index, truth = build_index_from_world(world, kind, tmp_path / kind)
    records, _ = index_records(world, kind)
    assert len(index) == len(records) == len(truth)
    ids = index.entries["surrogate_id"]
    assert ids.is_unique
    assert ids.str.fullmatch(r"[0-9a-f]{16}").all()
    assert set(index.attributes) <= set(index.entries.columns)


def test_ids_are_random_not_derived_from_identifiers(world, tmp_path: Path) -> None:
    records, _ = index_records(world, "demographic")
    first, ids_1 = ReferenceIndex.create("demographic", tmp_path / "a", records)
    second, ids_2 = ReferenceIndex.create("demographic", tmp_path / "b", records)
    # Same identifiers, independent builds: no id in common (a hash or counter would repeat).
    assert not set(ids_1) & set(ids_2)
    pd.testing.assert_frame_equal(
        first.entries.drop(columns=["surrogate_id", "added_at"]),
        second.entries.drop(columns=["surrogate_id", "added_at"]),
    )


def test_ids_are_stable_across_reloads_and_versions(world, index_dir: Path) -> None:
    index, ids = build_index_from_world(world, "demographic", index_dir)
    reloaded = ReferenceIndex.load(index_dir)
    pd.testing.assert_frame_equal(reloaded.entries, index.entries)
    reloaded.add(index_records(world, "demographic")[0].head(5), source="test")
    again = ReferenceIndex.load(index_dir)
    assert again.version == 2
    assert again.entries["surrogate_id"].head(len(ids)).tolist() == ids["surrogate_id"].tolist()
    assert len(again) == len(index) + 5


def test_saves_are_atomic_versions_behind_a_current_pointer(world, index_dir: Path) -> None:
    index, _ = build_index_from_world(world, "geography", index_dir)
    for _ in range(4):
        index.add(
            pd.DataFrame(
                {
                    "postcode": ["ZZ9 9ZZ"],
                    "lsoa_code": ["E01999999"],
                    "la_code": ["E0"],
                    "region_code": ["E1"],
                }
            ),
            "t",
        )
    names = sorted(p.name for p in index_dir.iterdir())
    assert names == ["CURRENT", "v000003", "v000004", "v000005"]  # three kept, no temporary leftovers
    assert (index_dir / "CURRENT").read_text() == "v000005"


def test_a_stale_copy_cannot_overwrite_a_newer_version(world, index_dir: Path) -> None:
    build_index_from_world(world, "classification", index_dir)
    one, two = ReferenceIndex.load(index_dir), ReferenceIndex.load(index_dir)
    one.add(pd.DataFrame({"code": ["99"], "description": ["x"], "level": ["1"], "parent_code": [None]}), "a")
    with pytest.raises(IndexConflictError, match="reload"):
        two.add(
            pd.DataFrame({"code": ["98"], "description": ["y"], "level": ["1"], "parent_code": [None]}), "b"
        )


def test_loading_an_empty_directory_says_how_to_build(tmp_path: Path) -> None:
    with pytest.raises(IndexNotFoundError, match="create"):
        ReferenceIndex.load(tmp_path)


def test_creating_over_an_existing_index_is_refused(world, index_dir: Path) -> None:
    build_index_from_world(world, "classification", index_dir)
    with pytest.raises(FileExistsError, match="load"):
        build_index_from_world(world, "classification", index_dir)


def test_new_surrogate_ids_avoid_taken_ids() -> None:
    taken = set(new_surrogate_ids(1_000))
    fresh = new_surrogate_ids(1_000, frozenset(taken))
    assert len(set(fresh)) == 1_000 and not set(fresh) & taken
