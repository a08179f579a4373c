"""Demo datasets drawn from a :class:`~tre_lib.synth.world.World`, with the truth kept aside.

``make_dataset(world, name, n_rows, seed)`` returns ``(records, truth)``. ``records`` is what a data owner
would deliver (identifiers corrupted the way real registers are); ``truth`` maps each record id to the
person or business it was drawn from, plus one boolean column per corruption applied. The truth never
travels with the records: tests and benchmarks use it to measure linkage quality.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace

import numpy as np
import pandas as pd

from tre_lib.synth import _reference_data as ref
from tre_lib.synth import corruption as cx
from tre_lib.synth.world import REFERENCE_DATE, World


@dataclass(frozen=True)
class CorruptionRates:
    """Probability that each kind of error is applied to a record (independently).

    Attributes:
        given_name_typo: One keystroke error in the given name.
        nickname: Given name written as a nickname ("Bob" for "Robert"), where one exists.
        family_name_typo: One keystroke error in the family name.
        family_name_change: Family name changed (marriage), women aged 20-60 only.
        dob_swap_day_month: Day and month transposed (only possible when the day is 12 or less).
        dob_shift: Date of birth off by a day or a year.
        nhs_missing: NHS number not recorded.
        nhs_typo: One digit of the NHS number wrong.
        ni_present: NI number recorded at all (surveys collect it only sometimes).
        ni_typo: One digit of the NI number wrong.
        old_postcode: Postcode of a previous address (the person has moved since).
        postcode_typo: One character of the postcode wrong.
        sex_missing: Sex not recorded.
        upper_case: Names written in capitals (format noise the normaliser must absorb).
        company_number_missing: Company number not recorded.
        company_number_typo: One digit of the company number wrong.
        business_name_variant: Business name written differently ("Ltd" vs "Limited", no suffix, "&"/"and").
        business_name_typo: One keystroke error in the business name.
    """

    given_name_typo: float = 0.0
    nickname: float = 0.0
    family_name_typo: float = 0.0
    family_name_change: float = 0.0
    dob_swap_day_month: float = 0.0
    dob_shift: float = 0.0
    nhs_missing: float = 0.0
    nhs_typo: float = 0.0
    ni_present: float = 1.0
    ni_typo: float = 0.0
    old_postcode: float = 0.0
    postcode_typo: float = 0.0
    sex_missing: float = 0.0
    upper_case: float = 0.0
    company_number_missing: float = 0.0
    company_number_typo: float = 0.0
    business_name_variant: float = 0.0
    business_name_typo: float = 0.0

    def with_overrides(self, **overrides: float) -> CorruptionRates:
        """Return a copy with some rates changed (unknown names raise ``TypeError``)."""
        return replace(self, **overrides)


HOSPITAL_RATES = CorruptionRates(
    given_name_typo=0.06,
    nickname=0.08,
    family_name_typo=0.06,
    family_name_change=0.03,
    dob_swap_day_month=0.03,
    dob_shift=0.02,
    nhs_missing=0.10,
    nhs_typo=0.02,
    old_postcode=0.12,
    postcode_typo=0.03,
    sex_missing=0.01,
    upper_case=0.30,
)
GP_RATES = CorruptionRates(
    given_name_typo=0.02,
    nickname=0.03,
    family_name_typo=0.02,
    family_name_change=0.02,
    dob_swap_day_month=0.01,
    nhs_missing=0.02,
    nhs_typo=0.005,
    old_postcode=0.05,
    postcode_typo=0.01,
)
LFS_RATES = CorruptionRates(
    given_name_typo=0.04,
    nickname=0.15,
    family_name_typo=0.04,
    family_name_change=0.03,
    dob_swap_day_month=0.02,
    dob_shift=0.02,
    ni_present=0.4,
    ni_typo=0.02,
    old_postcode=0.08,
    postcode_typo=0.02,
    upper_case=0.10,
)
BUSINESS_REGISTER_RATES = CorruptionRates(
    company_number_missing=0.02, business_name_variant=0.3, business_name_typo=0.02, postcode_typo=0.01
)
INCIDENT_RATES = CorruptionRates(
    company_number_missing=0.4,
    company_number_typo=0.03,
    business_name_variant=0.5,
    business_name_typo=0.08,
    old_postcode=0.05,
    postcode_typo=0.03,
)
TEST_FAILURE_RATES = CorruptionRates(
    company_number_missing=0.3, company_number_typo=0.02, business_name_variant=0.5, business_name_typo=0.05
)


@dataclass(frozen=True)
class DatasetSpec:
    """How a demo dataset is drawn: its record id column, its unit (person or business) and error rates."""

    name: str
    id_column: str
    unit: str  # "person" | "business"
    rates: CorruptionRates
    build: Callable[[World, pd.DataFrame, np.random.Generator], pd.DataFrame]
    description: str


def _iso(dates: np.ndarray) -> np.ndarray:
    return np.datetime_as_string(dates.astype("datetime64[D]"), unit="D").astype(object)


def _uk(dates: np.ndarray) -> np.ndarray:
    iso = pd.Series(_iso(dates), dtype="string")
    return (iso.str[8:10] + "/" + iso.str[5:7] + "/" + iso.str[0:4]).to_numpy(dtype=object)


def _events_after(dob: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    start = np.maximum(dob, np.datetime64("2015-01-01", "D"))
    span = (REFERENCE_DATE - start).astype(np.int64)
    return start + (rng.random(len(dob)) * span).astype("timedelta64[D]")


def _previous_postcodes(world: World, person_ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Postcode of a random earlier address of each person, or a random postcode if they never moved."""
    hist = world.address_history
    old = hist[hist["move_out"].notna()]
    postcode_of = pd.Series(world.addresses["postcode"].to_numpy(), index=world.addresses["uprn"].to_numpy())
    old_pc = pd.Series(
        postcode_of.reindex(old["uprn"].to_numpy()).to_numpy(), index=old["person_id"].to_numpy()
    )
    # One earlier address per person (the latest one): cheap and the most likely to be quoted by mistake.
    latest_old = old_pc[~old_pc.index.duplicated(keep="last")]
    out = latest_old.reindex(person_ids).to_numpy(dtype=object)
    missing = pd.isna(out)
    random_pc = world.geography["postcode"].to_numpy()
    out[missing] = random_pc[rng.integers(0, len(random_pc), int(missing.sum()))]
    return out


def _business_name_variant(names: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = pd.Series(names.copy(), dtype=object)  # copy: never write through to the World
    rows = np.flatnonzero(mask)
    kind = rng.integers(0, 5, len(rows))
    s = out.iloc[rows].astype(str)
    variants = [
        s.str.replace(r"\s+(Ltd|Limited|PLC)$", "", regex=True),
        s.str.replace(r"\bLtd$", "Limited", regex=True).str.replace(
            r"\bPLC$", "Public Limited Company", regex=True
        ),
        s.str.upper(),
        s.str.replace(" & ", " and ", regex=False).str.replace(r"\s+(Ltd|Limited)$", " (UK) Ltd", regex=True),
        s.str.replace(r"\bLimited$", "Ltd.", regex=True).str.replace(r"\bLtd$", "Ltd.", regex=True),
    ]
    chosen = np.select([kind == k for k in range(5)], [v.to_numpy(dtype=object) for v in variants])
    out.iloc[rows] = chosen
    return out.to_numpy(dtype=object)


def _person_identifiers(
    world: World, people: pd.DataFrame, rates: CorruptionRates, rng: np.random.Generator, dob_format: str
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Corrupt the direct identifiers of sampled people; return (columns, corruption flags)."""
    n = len(people)

    def draw(rate: float) -> np.ndarray:
        return rng.random(n) < rate

    flags: dict[str, np.ndarray] = {}
    given = people["given_name"].to_numpy(dtype=object)
    given, flags["nickname"] = cx.nickname(given, draw(rates.nickname), rng)
    given, flags["given_name_typo"] = cx.typo(given, draw(rates.given_name_typo), rng)

    family = people["family_name"].to_numpy(dtype=object)
    dob = people["dob"].to_numpy().astype("datetime64[D]")
    age_years = (REFERENCE_DATE - dob).astype(np.int64) / 365.25
    can_marry = (people["sex"].to_numpy(dtype=object) == "F") & (age_years >= 20) & (age_years <= 60)
    changed = draw(rates.family_name_change) & can_marry
    family = family.copy()
    family[changed] = np.asarray(ref.FAMILY_NAMES, dtype=object)[
        rng.integers(0, len(ref.FAMILY_NAMES), changed.sum())
    ]
    flags["family_name_change"] = changed & (family != people["family_name"].to_numpy(dtype=object))
    family, flags["family_name_typo"] = cx.typo(family, draw(rates.family_name_typo), rng)

    upper = draw(rates.upper_case)
    flags["upper_case"] = upper
    given = np.where(upper, pd.Series(given, dtype=object).str.upper().to_numpy(dtype=object), given)
    family = np.where(upper, pd.Series(family, dtype=object).str.upper().to_numpy(dtype=object), family)

    dob, flags["dob_swap_day_month"] = cx.swap_day_month(dob, draw(rates.dob_swap_day_month))
    dob, flags["dob_shift"] = cx.shift_dates(dob, draw(rates.dob_shift) & ~flags["dob_swap_day_month"], rng)

    nhs = people["nhs_number"].to_numpy(dtype=object)
    nhs, flags["nhs_typo"] = cx.digit_typo(nhs, draw(rates.nhs_typo), rng)
    nhs, flags["nhs_missing"] = cx.blank(nhs, draw(rates.nhs_missing))

    ni = people["ni_number"].to_numpy(dtype=object)
    ni, flags["ni_missing"] = cx.blank(ni, ~draw(rates.ni_present))
    ni, flags["ni_typo"] = cx.digit_typo(ni, draw(rates.ni_typo), rng)

    postcode = people["postcode"].to_numpy(dtype=object)
    moved = draw(rates.old_postcode)
    postcode = np.where(moved, _previous_postcodes(world, people["person_id"].to_numpy(), rng), postcode)
    flags["old_postcode"] = moved & (postcode != people["postcode"].to_numpy(dtype=object))
    postcode, flags["postcode_typo"] = cx.typo(postcode, draw(rates.postcode_typo), rng)
    postcode = pd.Series(postcode, dtype=object).str.upper().to_numpy(dtype=object)

    sex = people["sex"].to_numpy(dtype=object)
    sex, flags["sex_missing"] = cx.blank(sex, draw(rates.sex_missing))

    columns = {
        "given_name": given,
        "family_name": family,
        "dob": _uk(dob) if dob_format == "uk" else _iso(dob),
        "sex": sex,
        "nhs_number": nhs,
        "ni_number": ni,
        "postcode": postcode,
    }
    return columns, flags


def _sample_people(
    world: World, n_rows: int, rng: np.random.Generator, min_age: float = 0.0, max_age: float = 200.0
) -> pd.DataFrame:
    persons = world.persons
    age = (REFERENCE_DATE - persons["dob"].to_numpy().astype("datetime64[D]")).astype(np.int64) / 365.25
    eligible = np.flatnonzero((age >= min_age) & (age <= max_age))
    if len(eligible) == 0:
        raise ValueError(f"No person in the world is aged {min_age}-{max_age}; generate a larger world.")
    rows = eligible[rng.integers(0, len(eligible), n_rows)]
    return persons.iloc[rows].reset_index(drop=True)


def _hospital(world: World, people: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    n = len(people)
    dob = people["dob"].to_numpy().astype("datetime64[D]")
    return pd.DataFrame(
        {
            "admission_date": _iso(_events_after(dob, rng)),
            "diagnosis_code": np.asarray(ref.DIAGNOSIS_CODES, dtype=object)[
                rng.integers(0, len(ref.DIAGNOSIS_CODES), n)
            ],
            "length_of_stay": rng.geometric(0.25, n) - 1,
        }
    )


def _gp(world: World, people: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    n = len(people)
    dob = people["dob"].to_numpy().astype("datetime64[D]")
    practice = np.char.add("P", np.char.zfill(rng.integers(0, 9000, n).astype(str), 5)).astype(object)
    return pd.DataFrame({"practice_code": practice, "registration_date": _iso(_events_after(dob, rng))})


def _lfs(world: World, people: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    n = len(people)
    status = rng.choice(["employed", "self-employed", "unemployed", "inactive"], n, p=[0.65, 0.1, 0.04, 0.21])
    working = np.isin(status, ["employed", "self-employed"])
    sic = np.asarray([c for c, _ in ref.SIC_CODES], dtype=object)[rng.integers(0, len(ref.SIC_CODES), n)]
    hours = np.clip(rng.normal(36, 9, n), 4, 70).round(1)
    pay = np.round(rng.lognormal(6.4, 0.5, n) * hours / 37.5, 2)
    return pd.DataFrame(
        {
            "employment_status": status.astype(object),
            "sic_code": pd.Series(sic).where(working, None).to_numpy(dtype=object),
            "hours_worked": np.where(working, hours, np.nan),
            "gross_weekly_pay": np.where(status == "employed", pay, np.nan),
        }
    )


def _business_columns(
    world: World, firms: pd.DataFrame, rates: CorruptionRates, rng: np.random.Generator
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    n = len(firms)

    def draw(rate: float) -> np.ndarray:
        return rng.random(n) < rate

    flags: dict[str, np.ndarray] = {}
    name = firms["name"].to_numpy(dtype=object)
    variant = draw(rates.business_name_variant)
    name = _business_name_variant(name, variant, rng)
    flags["business_name_variant"] = variant & (name != firms["name"].to_numpy(dtype=object))
    name, flags["business_name_typo"] = cx.typo(name, draw(rates.business_name_typo), rng)
    number = firms["company_number"].to_numpy(dtype=object)
    number, flags["company_number_typo"] = cx.digit_typo(number, draw(rates.company_number_typo), rng)
    number, flags["company_number_missing"] = cx.blank(number, draw(rates.company_number_missing))
    postcode = firms["postcode"].to_numpy(dtype=object)
    moved = draw(rates.old_postcode)
    random_pc = world.geography["postcode"].to_numpy(dtype=object)
    postcode = np.where(moved, random_pc[rng.integers(0, len(random_pc), n)], postcode)
    flags["old_postcode"] = moved & (postcode != firms["postcode"].to_numpy(dtype=object))
    postcode, flags["postcode_typo"] = cx.typo(postcode, draw(rates.postcode_typo), rng)
    columns = {"business_name": name, "company_number": number, "postcode": postcode}
    return columns, flags


def _products(world: World, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    leaves = world.products[world.products["level"] == world.products["level"].max()]
    rows = rng.integers(0, len(leaves), n)
    return leaves["code"].to_numpy(dtype=object)[rows], leaves["description"].to_numpy(dtype=object)[rows]


def _business_register(world: World, firms: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    n = len(firms)
    return pd.DataFrame(
        {
            "sic_code": firms["sic_code"].to_numpy(dtype=object),
            "employees": firms["employees"].to_numpy(),
            "turnover_k": np.round(firms["employees"].to_numpy() * rng.lognormal(4.3, 0.6, n), 0),
        }
    )


def _incidents(world: World, firms: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    n = len(firms)
    code, description = _products(world, n, rng)
    when = np.datetime64("2019-01-01", "D") + rng.integers(0, 6 * 365, n).astype("timedelta64[D]")
    return pd.DataFrame(
        {
            "product_code": code,
            "product_description": description,
            "incident_date": _iso(when),
            "severity": rng.choice(["low", "medium", "high", "serious"], n, p=[0.4, 0.3, 0.2, 0.1]).astype(
                object
            ),
            "injuries": rng.poisson(0.4, n),
        }
    )


def _test_failures(world: World, firms: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    n = len(firms)
    code, _ = _products(world, n, rng)
    when = np.datetime64("2019-01-01", "D") + rng.integers(0, 6 * 365, n).astype("timedelta64[D]")
    return pd.DataFrame(
        {
            "product_code": code,
            "standard": np.asarray(ref.PRODUCT_STANDARDS, dtype=object)[
                rng.integers(0, len(ref.PRODUCT_STANDARDS), n)
            ],
            "failure_reason": np.asarray(ref.FAILURE_REASONS, dtype=object)[
                rng.integers(0, len(ref.FAILURE_REASONS), n)
            ],
            "test_date": _iso(when),
        }
    )


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            "hospital_episodes",
            "episode_id",
            "person",
            HOSPITAL_RATES,
            _hospital,
            "Admitted patient care episodes: NHS number, names, DOB, sex, postcode, diagnosis.",
        ),
        DatasetSpec(
            "gp_registrations",
            "registration_id",
            "person",
            GP_RATES,
            _gp,
            "GP practice registrations: clean NHS numbers, UK-format dates of birth.",
        ),
        DatasetSpec(
            "labour_force_survey",
            "respondent_id",
            "person",
            LFS_RATES,
            _lfs,
            "Survey respondents aged 16-74: no NHS number, NI number sometimes; employment and pay.",
        ),
        DatasetSpec(
            "business_register",
            "reference",
            "business",
            BUSINESS_REGISTER_RATES,
            _business_register,
            "Business register: names, company numbers, postcodes, SIC codes, employment, turnover.",
        ),
        DatasetSpec(
            "product_safety_incidents",
            "incident_id",
            "business",
            INCIDENT_RATES,
            _incidents,
            "Product safety incidents: business name variants, company number often missing.",
        ),
        DatasetSpec(
            "product_test_failures",
            "test_id",
            "business",
            TEST_FAILURE_RATES,
            _test_failures,
            "Product test failures against standards: business name variants, product codes.",
        ),
    )
}


def make_dataset(
    world: World,
    name: str,
    n_rows: int,
    seed: int = 0,
    *,
    rates: CorruptionRates | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Draw a demo dataset from the world, with realistic identifier errors, and its truth.

    Args:
        world: The world to draw from.
        name: One of :data:`DATASETS` (``hospital_episodes``, ``gp_registrations``, ``labour_force_survey``,
            ``business_register``, ``product_safety_incidents``, ``product_test_failures``).
        n_rows: Number of records. People and businesses are drawn with replacement, so a person can
            have several hospital episodes.
        seed: Seed for the draw (the same world, name, size and seed give the same frames).
        rates: Corruption rates; defaults to the dataset's own (``DATASETS[name].rates``).

    Returns:
        ``(records, truth)``: the delivery as a data owner would send it, and a frame with the record id,
        ``person_id`` or ``business_id``, and one boolean column per corruption applied.

    Raises:
        KeyError: If ``name`` is not a known dataset.

    Example:
        >>> records, truth = make_dataset(generate_world(1_000, seed=1), "hospital_episodes", 500, seed=2)
    """
    if name not in DATASETS:
        raise KeyError(f"Unknown dataset {name!r}; choose one of {sorted(DATASETS)}.")
    spec = DATASETS[name]
    rates = spec.rates if rates is None else rates
    rng = np.random.default_rng([seed, world.seed, sorted(DATASETS).index(name)])
    ids = np.char.add(f"{spec.id_column[:3].upper()}-", np.char.zfill(np.arange(n_rows).astype(str), 8))

    if spec.unit == "person":
        min_age, max_age = (16.0, 74.99) if name == "labour_force_survey" else (0.0, 200.0)
        people = _sample_people(world, n_rows, rng, min_age, max_age)
        columns, flags = _person_identifiers(
            world, people, rates, rng, "uk" if name == "gp_registrations" else "iso"
        )
        if name == "labour_force_survey":
            columns.pop("nhs_number")
        else:
            columns.pop("ni_number")
            flags.pop("ni_missing")
            flags.pop("ni_typo")
        truth = pd.DataFrame({spec.id_column: ids, "person_id": people["person_id"].to_numpy()})
        payload = spec.build(world, people, rng)
    else:
        firms = world.businesses.iloc[rng.integers(0, len(world.businesses), n_rows)].reset_index(drop=True)
        columns, flags = _business_columns(world, firms, rates, rng)
        if name == "product_test_failures":
            columns.pop("postcode")
            flags.pop("postcode_typo")
            flags.pop("old_postcode")
        truth = pd.DataFrame({spec.id_column: ids, "business_id": firms["business_id"].to_numpy()})
        payload = spec.build(world, firms, rng)

    records = pd.concat([pd.DataFrame({spec.id_column: ids.astype(object), **columns}), payload], axis=1)
    for flag, values in flags.items():
        truth[f"corrupt_{flag}"] = np.asarray(values, dtype=bool)
    return records, truth


def rate_fields() -> list[str]:
    """Names of the corruption rates, for documentation and validation."""
    return [f.name for f in fields(CorruptionRates)]
