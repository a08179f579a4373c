"""Schemas and the world object shared by the pipeline tests (imported by their conftest and tests)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from tre_platform.actor import Actor
from tre_platform.api.datasets.models import Dataset
from tre_platform.api.orgs.models import Organisation


def _col(name: str, type_: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, **extra}


#: Demographic identifiers with names, so Splink trains and scores the remainder.
FULL_SCHEMA = [
    _col("nhs_number", "string", identifier=True, index="demographic", required=False),
    _col("given_name", "string", identifier=True, index="demographic"),
    _col("family_name", "string", identifier=True, index="demographic"),
    _col("date_of_birth", "date", identifier=True, index="demographic"),
    _col("sex", "string", allowed=["F", "M", "U"]),
    _col("admission_date", "date", min="2000-01-01"),
    _col("length_of_stay", "integer", min=0, max=3650),
    _col("cost", "float", min=0, required=False),
    _col("emergency", "boolean", required=False),
]
#: NHS number and date of birth only: deterministic matching, fast (no Splink model to train).
FAST_SCHEMA = [
    _col("nhs_number", "string", identifier=True, index="demographic", required=False),
    _col("date_of_birth", "date", identifier=True, index="demographic"),
    *FULL_SCHEMA[4:],
]


@dataclass
class IngestWorld:
    """A data owner, their organisation, and datasets registered with FULL_SCHEMA and FAST_SCHEMA."""

    org: Organisation
    owner: Actor
    full: Dataset
    fast: Dataset
    index_truth: pd.DataFrame
    data_dir: Path
