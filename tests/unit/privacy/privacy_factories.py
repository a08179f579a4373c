"""Factories of the differential-privacy tests (a uniquely named module, importable from any test here)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def make_people(n: int = 2000, seed: int = 20240611, **overrides: object) -> pd.DataFrame:
    """A seeded synthetic population: integer ages, float incomes with some missing, two categories."""
    rng = np.random.default_rng(seed)
    income = rng.normal(30_000, 6_000, n)
    income[rng.choice(n, size=n // 50, replace=False)] = np.nan
    frame = pd.DataFrame(
        {
            "age": rng.integers(0, 100, n),
            "income": income,
            "sex": rng.choice(["F", "M"], n),
            "region": rng.choice(["North", "South", "East"], n, p=[0.5, 0.3, 0.2]),
        }
    )
    for column, values in overrides.items():
        frame[column] = values
    return frame
