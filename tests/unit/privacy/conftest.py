"""Fixtures of the differential-privacy tests: a small seeded population, as pandas and polars."""

from __future__ import annotations

import pandas as pd
import polars as pl
import pytest
from privacy_factories import make_people


@pytest.fixture(scope="session")
def people() -> pd.DataFrame:
    return make_people()


@pytest.fixture(scope="session")
def people_pl(people: pd.DataFrame) -> pl.DataFrame:
    return pl.from_pandas(people)
