from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from disclosure_factories import table_from_counts

from tre_lib.disclosure import protect_table

HAND_TABLE = [[20, 30, 3], [25, 40, 35], [30, 12, 50]]


def test_record_is_json_and_round_trips() -> None:
    result = protect_table(table_from_counts(HAND_TABLE, "abc", "xyz"), "r", "c")
    for confidential in (False, True):
        record = result.record(confidential=confidential)
        assert json.loads(json.dumps(record, allow_nan=False)) == record
    record = result.record()
    assert record["status"] == "review"
    assert record["suppression"]["primary"] == [["a", "z"]]
    assert ["b", "z"] in record["suppression"]["secondary"]
    assert {"tre", "pandas", "scipy", "numpy"} <= set(record["versions"])
    assert record["rules"]["threshold"] == 10
    assert {"row": "a", "column": "z", "lo": 0.0, "hi": 23.0} in record["intervals"]
    assert len(record["findings"]) == 16  # 3x3 plus margins


def test_release_record_does_not_disclose_suppressed_values() -> None:
    result = protect_table(table_from_counts(HAND_TABLE, "abc", "xyz"), "r", "c")
    released = result.record()
    cell = next(f for f in released["findings"] if f["row"] == "a" and f["column"] == "z")
    assert cell["published"] is None and "stats" not in cell
    assert cell["verdicts"]["threshold"] == {"outcome": "suppress"}
    assert "input_hash_salt" not in released
    inside = result.record(confidential=True)
    cell = next(f for f in inside["findings"] if f["row"] == "a" and f["column"] == "z")
    assert cell["stats"]["n"] == 3
    salted = hashlib.sha256((inside["input_hash_salt"] + inside["aggregate_digest"]).encode()).hexdigest()
    assert salted == released["input_hash"]


def test_same_input_same_aggregate_digest_different_input_different() -> None:
    df = table_from_counts(HAND_TABLE, "abc", "xyz")
    one = protect_table(df, "r", "c").record(confidential=True)["aggregate_digest"]
    two = protect_table(df.sample(frac=1, random_state=1), "r", "c").record(confidential=True)[
        "aggregate_digest"
    ]
    changed = np.array(HAND_TABLE)
    changed[0, 2] = 4
    three = protect_table(table_from_counts(changed.tolist(), "abc", "xyz"), "r", "c").record(
        confidential=True
    )
    assert one == two != three["aggregate_digest"]


def test_rows_with_missing_keys_are_reported() -> None:
    df = table_from_counts(HAND_TABLE, "abc", "xyz")
    df.loc[0, "r"] = None
    result = protect_table(df, "r", "c")
    assert any("1 record(s)" in note for note in result.notes)


def test_objects_that_are_not_dataframes_are_refused_with_a_way_forward() -> None:
    from tre_lib.disclosure import TableSpecError

    with pytest.raises(TableSpecError):
        protect_table([{"r": "a", "c": "x"}], "r", "c")  # type: ignore[arg-type]
