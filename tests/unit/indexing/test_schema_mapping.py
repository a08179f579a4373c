"""Dataset schemas map identifier columns to declared identifiers; bad mappings and formats are refused."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
from pydantic import ValidationError

from tre_platform.api.datasets.schemas import DatasetCreate
from tre_platform.pipelines.linkage import identifier_groups
from tre_platform.pipelines.validation import ColumnRule, Problem, parse_column


def _dataset(*columns: dict[str, Any]) -> DatasetCreate:
    return DatasetCreate.model_validate(
        {
            "name": "people",
            "title": "People",
            "owner_org_id": "0" * 32,
            "tier": 2,
            "schema": [*columns, {"name": "age", "type": "integer"}],
        }
    )


def _ident(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": "string", "identifier": True, "index": "demographic", **extra}


def test_a_column_mapping_to_no_identifier_is_refused_at_registration() -> None:
    with pytest.raises(ValidationError, match="maps to no demographic identifier"):
        _dataset(_ident("favourite_colour"))


def test_maps_to_an_undeclared_identifier_is_refused() -> None:
    with pytest.raises(ValidationError, match="is not a demographic identifier"):
        _dataset(_ident("x", maps_to="shoe_size"))


def test_two_columns_mapping_to_one_identifier_are_refused() -> None:
    with pytest.raises(ValidationError, match="both map to family_name"):
        _dataset(_ident("surname"), _ident("last_name"))


def test_an_unreadable_date_format_is_refused() -> None:
    with pytest.raises(ValidationError, match="no strptime code"):
        _dataset({"name": "born", "type": "date", "format": "dd/mm/yyyy"})


def test_maps_to_and_aliases_reach_the_matcher() -> None:
    data = _dataset(_ident("col_a", maps_to="national_id"), _ident("suburb"), _ident("zip"))
    rules = [ColumnRule.from_spec(c.model_dump(mode="json", exclude_none=True)) for c in data.schema_]
    (group,) = identifier_groups(rules)
    assert group.columns == {"col_a": "national_id", "suburb": "locality", "zip": "postcode"}


def test_a_declared_date_format_parses_and_its_error_shows_format_and_value() -> None:
    rule = ColumnRule.from_spec({"name": "visit", "type": "date", "format": "%d/%m/%Y"})
    typed, ok = parse_column(pd.Series(["23/11/1987", "1987-11-23"]), rule)
    assert str(typed.iloc[0]) == "1987-11-23"
    assert ok.tolist() == [True, False]
    message = Problem("type", "visit", 1, [2], ["1987-11-23"]).message({"visit": rule})
    assert "%d/%m/%Y" in message and "'1987-11-23'" in message
