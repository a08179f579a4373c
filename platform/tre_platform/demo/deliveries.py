"""Demo deliveries for the five demo datasets, and ingesting them (what ``tre up --demo`` runs).

The synthetic world (:mod:`tre_lib.synth`) is drawn once; the five reference indexes are built from it
into ``linkage/indexes/<kind>/`` (95% of people and businesses, so some records have no index entry, as in
real life); each demo dataset is drawn from the same world, shaped to its registered schema (column names,
ISO dates, allowed values), written to ``landing/<dataset>/<delivery id>/`` and ingested by the owning
organisation's data owner. The truth (which person or business each row is) is written beside the index
under ``linkage/demo-truth/`` and handed to the ingest, so each match report carries precision and recall.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from tre_lib.indexing import SURROGATE_ID, IndexNotFoundError, ReferenceIndex
from tre_lib.indexing.demo import build_index_from_world
from tre_lib.synth import World, generate_world, make_dataset
from tre_platform.actor import Actor
from tre_platform.api.datasets.models import Dataset, DatasetVersion
from tre_platform.api.users.models import Role, User, UserRole
from tre_platform.errors import NotFound
from tre_platform.settings import get_settings

DEMO_DATASETS = (
    "hospital_episodes",
    "gp_registrations",
    "labour_force_survey",
    "business_register",
    "product_safety_incidents",
)
INDEX_KINDS = ("demographic", "business", "address", "geography", "classification")
#: Share of the world's people and businesses the demo indexes hold.
INDEX_FRACTION = 0.95
#: Delivery rows per person in the world (hospital episodes and GP registrations are person-level).
ROWS_PER_PERSON = {
    "hospital_episodes": 0.5,
    "gp_registrations": 0.5,
    "labour_force_survey": 0.25,
    "business_register": 0.8,
    "product_safety_incidents": 0.6,
}

_ICD_CHAPTERS = {
    "A": "I",
    "B": "I",
    "C": "II",
    "D": "III",
    "E": "IV",
    "F": "V",
    "G": "VI",
    "H": "VII",
    "I": "IX",
    "J": "X",
    "K": "XI",
    "L": "XII",
    "M": "XIII",
    "N": "XIV",
    "O": "XV",
    "P": "XVI",
    "Q": "XVII",
    "R": "XVIII",
    "S": "XIX",
    "T": "XIX",
}


def _rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([seed, DEMO_DATASETS.index(name)])


def _null_to_none(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.astype(object).where(frame.notna(), None)


def _iso_dob(values: pd.Series) -> pd.Series:
    """Dates of birth as ISO strings (the GP extract writes them day-first)."""
    text = values.astype("string")
    uk = pd.to_datetime(text, format="%d/%m/%Y", errors="coerce")
    iso = pd.to_datetime(text, format="%Y-%m-%d", errors="coerce")
    return iso.fillna(uk).dt.strftime("%Y-%m-%d")


def _region_of(world: World, postcodes: pd.Series) -> np.ndarray:
    region = world.geography.set_index("postcode")["region_name"]
    found = region.reindex(postcodes.astype(str).to_numpy()).to_numpy(dtype=object)
    return np.where(pd.isna(found), "Unknown", found)


def _hospital(world: World, n: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    records, truth = make_dataset(world, "hospital_episodes", n, seed)
    rng = _rng(seed, "hospital_episodes")
    out = pd.DataFrame(
        {
            "nhs_number": records["nhs_number"],
            "given_name": records["given_name"],
            "family_name": records["family_name"],
            "date_of_birth": _iso_dob(records["dob"]),
            "postcode": records["postcode"],
            "sex": records["sex"].fillna("U"),
            "admission_date": records["admission_date"],
            "diagnosis_chapter": records["diagnosis_code"].str[0].map(_ICD_CHAPTERS).fillna("XXI"),
            "length_of_stay": records["length_of_stay"],
            "admission_method": rng.choice(["elective", "emergency"], n, p=[0.4, 0.6]),
        }
    )
    return out, truth


def _gp(world: World, n: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    records, truth = make_dataset(world, "gp_registrations", n, seed)
    rng = _rng(seed, "gp_registrations")
    start = pd.to_datetime(records["registration_date"])
    ended = rng.random(n) < 0.3
    end = start + pd.to_timedelta(rng.integers(30, 3000, n), unit="D")
    out = pd.DataFrame(
        {
            "nhs_number": records["nhs_number"],
            "given_name": records["given_name"],
            "family_name": records["family_name"],
            "date_of_birth": _iso_dob(records["dob"]),
            "postcode": records["postcode"],
            "practice_region": _region_of(world, records["postcode"]),
            "registered_from": start.dt.strftime("%Y-%m-%d"),
            "registered_to": end.dt.strftime("%Y-%m-%d").where(ended, None),
        }
    )
    return out, truth


def _lfs(world: World, n: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    records, truth = make_dataset(world, "labour_force_survey", n, seed)
    rng = _rng(seed, "labour_force_survey")
    status = records["employment_status"].replace({"self-employed": "employed"})
    quarter = rng.choice(["2024Q1", "2024Q2", "2024Q3", "2024Q4"], n)
    out = pd.DataFrame(
        {
            "ni_number": records["ni_number"],
            "given_name": records["given_name"],
            "family_name": records["family_name"],
            "date_of_birth": _iso_dob(records["dob"]),
            "postcode": records["postcode"],
            "employment_status": status,
            "industry_section": records["sic_code"].astype("string").str[:2],
            "weekly_hours": records["hours_worked"],
            "gross_weekly_pay": records["gross_weekly_pay"],
            "survey_quarter": quarter,
        }
    )
    return out, truth


def _band(employees: pd.Series) -> np.ndarray:
    bins = [-1, 9, 49, 249, np.inf]
    return pd.cut(employees, bins=bins, labels=["0-9", "10-49", "50-249", "250+"]).astype(str).to_numpy()


def _business_register(world: World, n: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    records, truth = make_dataset(world, "business_register", n, seed)
    turnover = pd.cut(
        records["turnover_k"],
        bins=[-1, 100, 1000, 10000, np.inf],
        labels=["<100k", "100k-1m", "1m-10m", "10m+"],
    ).astype(str)
    out = pd.DataFrame(
        {
            "company_number": records["company_number"],
            "business_name": records["business_name"],
            "postcode": records["postcode"],
            "sic_code": records["sic_code"],
            "employment_band": _band(records["employees"]),
            "turnover_band": turnover,
        }
    )
    return out, truth


def _incidents(world: World, n: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    records, truth = make_dataset(world, "product_safety_incidents", n, seed)
    rng = _rng(seed, "product_safety_incidents")
    out = pd.DataFrame(
        {
            "company_number": records["company_number"],
            "business_name": records["business_name"],
            "product_category": records["product_code"],
            "incident_date": records["incident_date"],
            "incident_type": rng.choice(["incident", "test_failure"], n, p=[0.7, 0.3]),
            "severity": records["severity"],
        }
    )
    return out, truth


BUILDERS: dict[str, Callable[[World, int, int], tuple[pd.DataFrame, pd.DataFrame]]] = {
    "hospital_episodes": _hospital,
    "gp_registrations": _gp,
    "labour_force_survey": _lfs,
    "business_register": _business_register,
    "product_safety_incidents": _incidents,
}


def _secure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def build_indexes(
    world: World, data_dir: Path, *, fraction: float = INDEX_FRACTION
) -> dict[str, pd.DataFrame]:
    """Build every reference index from the world (those not built yet); return the index truths.

    The truth of each index (surrogate id -> person/business id) is kept under ``linkage/demo-truth`` so
    later demo deliveries can be scored; a real index never has one.
    """
    indexes = _secure(data_dir / "linkage" / "indexes")
    truth_dir = _secure(data_dir / "linkage" / "demo-truth")
    truths: dict[str, pd.DataFrame] = {}
    for kind in INDEX_KINDS:
        truth_path = truth_dir / f"{kind}.parquet"
        try:
            ReferenceIndex.load(indexes / kind)
        except IndexNotFoundError:
            share = fraction if kind in ("demographic", "business") else 1.0
            _, truth = build_index_from_world(world, kind, indexes / kind, fraction=share, seed=world.seed)  # type: ignore[arg-type]
            truth.astype(str).to_parquet(truth_path, index=False)
            os.chmod(truth_path, 0o600)
            os.chmod(indexes / kind, 0o700)
        if truth_path.exists():
            truths[kind] = pd.read_parquet(truth_path)
    return truths


def _expected(truth: pd.DataFrame, index_truth: pd.DataFrame | None) -> pd.Series | None:
    if index_truth is None:
        return None
    unit = next(c for c in index_truth.columns if c != SURROGATE_ID)
    if unit not in truth.columns:
        return None
    lookup = index_truth.drop_duplicates(unit).set_index(unit)[SURROGATE_ID]
    return pd.Series(lookup.reindex(truth[unit].astype(str).to_numpy()).to_numpy())


def write_delivery(
    world: World,
    dataset: str,
    data_dir: Path,
    n_rows: int,
    *,
    seed: int = 1,
    index_truths: dict[str, pd.DataFrame] | None = None,
) -> tuple[Path, Path]:
    """Write one demo delivery (CSV, to the landing zone) and its truth file; return both paths.

    The truth file has ``row`` (1-based delivery row) and ``demographic_id`` / ``business_id``: the
    surrogate id each row should link to (null when the person or business is not in the index).
    """
    records, truth = BUILDERS[dataset](world, n_rows, seed)
    landing = _secure(data_dir / "landing" / dataset / f"demo-{secrets.token_hex(4)}")
    csv_path = landing / f"{dataset}.csv"
    _null_to_none(records).to_csv(csv_path, index=False)
    os.chmod(csv_path, 0o600)
    expected = pd.DataFrame({"row": np.arange(1, len(records) + 1)})
    for kind in ("demographic", "business"):
        ids = _expected(truth, (index_truths or {}).get(kind))
        if ids is not None:
            expected[f"{kind}_id"] = ids.to_numpy()
    truth_path = _secure(data_dir / "linkage" / "demo-truth" / dataset) / f"{csv_path.parent.name}.parquet"
    expected.to_parquet(truth_path, index=False)
    os.chmod(truth_path, 0o600)
    return csv_path, truth_path


def _owner(session: Session, dataset: Dataset) -> Actor:
    user = session.scalar(
        select(User)
        .join(UserRole, UserRole.user_id == User.id)
        .where(UserRole.role == Role.data_owner, UserRole.organisation_id == dataset.owner_org_id)
        .order_by(User.username)
        .limit(1)
    )
    if user is None:
        raise NotFound(
            f"no data owner of {dataset.owner.slug!r} to ingest {dataset.name}; seed the demo first"
        )
    return Actor.of(user)


def ingest_demo(
    session: Session,
    n_persons: int = 2_000,
    *,
    seed: int = 7,
    datasets: tuple[str, ...] = DEMO_DATASETS,
    engine: str = "pandas",
    progress: Any = None,
) -> list[DatasetVersion]:
    """Build the demo reference indexes and ingest a delivery of each demo dataset that has no version yet.

    Call after :func:`tre_platform.demo.seed.seed` (the datasets and their data owners must exist). Safe
    to call again: datasets that already have a version are skipped.

    Args:
        session: Database session (committed by each ingest).
        n_persons: Size of the synthetic population (deliveries scale with it).
        seed: World seed.
        datasets: Which demo datasets to ingest.
        engine: Ingest engine.
        progress: Passed to :func:`~tre_platform.pipelines.ingest` (e.g. ``rich_progress``).

    Returns:
        The versions published now.
    """
    from tre_platform.pipelines import ingest

    data_dir = get_settings().ensure_data_dir()
    world = generate_world(n_persons, seed=seed)
    truths = build_indexes(world, data_dir)
    published = []
    for name in datasets:
        dataset = session.scalar(select(Dataset).where(Dataset.name == name))
        if dataset is None:
            raise NotFound(f"the demo dataset {name!r} is not registered; run the demo seed first")
        if session.scalar(select(DatasetVersion.id).where(DatasetVersion.dataset_id == dataset.id).limit(1)):
            continue
        n_rows = max(50, int(n_persons * ROWS_PER_PERSON[name]))
        csv_path, truth_path = write_delivery(world, name, data_dir, n_rows, seed=seed, index_truths=truths)
        published.append(
            ingest(
                session,
                _owner(session, dataset),
                name,
                csv_path,
                engine=engine,
                truth=truth_path,
                progress=progress,
            )
        )
    return published
