"""Build the five reference indexes from a synthetic :class:`~tre_lib.synth.World` (demo and tests).

In production the demographic index would be seeded from an authoritative register (e.g. a personal
demographics service) and the business index from Companies House; here the synthetic world plays both.
The truth mapping (surrogate id -> person/business id) is returned to the caller and never stored in the
index, exactly as a real index never stores where its ids came from.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from tre_lib.indexing.index import SURROGATE_ID, IndexKind, ReferenceIndex

if TYPE_CHECKING:  # synth imports indexing (nicknames, check digits): avoid an import cycle at runtime
    from tre_lib.synth import World


def index_records(world: World, kind: IndexKind) -> tuple[pd.DataFrame, pd.Series]:
    """Raw records for an index of ``kind`` drawn from the world, and the truth id of each row.

    Args:
        world: The synthetic world.
        kind: Index kind.

    Returns:
        ``(records, truth_ids)``: records with the kind's input columns, and a Series of
        ``person_id`` / ``business_id`` / ``uprn`` / ``postcode`` / ``code`` aligned with them.
    """
    if kind == "demographic":
        p = world.persons
        records = pd.DataFrame(
            {
                "nhs_number": p["nhs_number"].astype(object),
                "ni_number": p["ni_number"].astype(object),
                "given_name": p["given_name"].astype(object),
                "family_name": p["family_name"].astype(object),
                "dob": p["dob"],
                "sex": p["sex"].astype(object),
                "postcode": p["postcode"].astype(object),
            }
        )
        return records, p["person_id"].rename("person_id")
    if kind == "business":
        b = world.businesses
        records = b.rename(columns={"name": "business_name"})[
            ["business_name", "company_number", "postcode", "sic_code"]
        ]
        return records, b["business_id"].rename("business_id")
    if kind == "address":
        a = world.addresses
        records = a[["uprn", "house_number", "street", "town", "postcode"]].astype(object)
        return records, a["uprn"].rename("uprn")
    if kind == "geography":
        g = world.geography
        return g[["postcode", "lsoa_code", "la_code", "region_code"]], g["postcode"].rename("postcode")
    if kind == "classification":
        c = world.products
        return c[["code", "description", "level", "parent_code"]], c["code"].rename("code")
    raise ValueError(f"Unknown index kind {kind!r}.")


def build_index_from_world(
    world: World,
    kind: IndexKind,
    directory: str | os.PathLike[str],
    *,
    fraction: float = 1.0,
    seed: int = 0,
) -> tuple[ReferenceIndex, pd.DataFrame]:
    """Create a reference index of ``kind`` from the world.

    Args:
        world: The synthetic world.
        kind: Index kind.
        directory: Where to store the index (must not hold one yet).
        fraction: Share of the world's entities to include (below 1 leaves some people or businesses out,
            so deliveries contain records with no index entry, as in real life).
        seed: Seed for choosing the included entities.

    Returns:
        The index and a truth frame with ``surrogate_id`` and the entity's truth id column.
    """
    records, truth = index_records(world, kind)
    if fraction < 1.0:
        rng = np.random.default_rng([seed, 99])
        keep = np.sort(rng.choice(len(records), size=max(1, round(len(records) * fraction)), replace=False))
        records, truth = records.iloc[keep], truth.iloc[keep]
    index, ids = ReferenceIndex.create(kind, Path(directory), records, source=f"synthetic-world:{world.seed}")
    return index, pd.DataFrame({SURROGATE_ID: ids.to_numpy(), truth.name: truth.to_numpy()})


def expected_surrogates(delivery_truth: pd.DataFrame, index_truth: pd.DataFrame, record_id: str) -> pd.Series:
    """Truth for :func:`~tre_lib.indexing.matching.match`: record id -> the surrogate id it should link to.

    Args:
        delivery_truth: The truth frame from ``make_dataset`` (record id and ``person_id``/``business_id``).
        index_truth: The truth frame from :func:`build_index_from_world` (or grown copies of it).
        record_id: The delivery's record id column.

    Returns:
        Series indexed by record id; null where the entity has no index entry.
    """
    unit = next(c for c in index_truth.columns if c != SURROGATE_ID)
    lookup = index_truth.drop_duplicates(unit).set_index(unit)[SURROGATE_ID]
    return pd.Series(
        lookup.reindex(delivery_truth[unit].to_numpy()).to_numpy(), index=delivery_truth[record_id].to_numpy()
    )
