"""A seeded synthetic population: people, addresses, geography, businesses and classifications.

Everything is drawn with numpy's vectorised generators. People are generated in fixed-size chunks, each with
its own random stream seeded from ``(seed, stream, chunk)``, so a 10M-person world never holds more than one
chunk of temporary arrays on top of its result, and the same seed gives the same world whatever the machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from tre_lib.synth import _reference_data as ref
from tre_lib.synth.identifiers import (
    as_string_series,
    company_numbers,
    nhs_numbers,
    ni_numbers,
    postcodes,
    uprns,
)

# Fixed "today" of the synthetic world, so a seed reproduces the same ages on any date.
REFERENCE_DATE = np.datetime64("2025-01-01", "D")
PERSON_CHUNK_SIZE = 500_000

_STREAM_GEOGRAPHY = 1
_STREAM_ADDRESSES = 2
_STREAM_PERSONS = 3
_STREAM_BUSINESSES = 4


def _rng(seed: int, stream: int, chunk: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed, stream, chunk])


def zipf_weights(n: int, exponent: float = 0.9) -> np.ndarray:
    """Zipf-like probabilities for ``n`` items ranked most common first."""
    weights = 1.0 / np.arange(1, n + 1) ** exponent
    return weights / weights.sum()


@dataclass(frozen=True)
class World:
    """The synthetic truth every demo dataset is drawn from.

    Attributes:
        seed: The seed the world was generated from.
        geography: One row per postcode: ``postcode``, ``lsoa_code``, ``la_code``, ``la_name``,
            ``region_code``, ``region_name``, ``town``.
        addresses: ``uprn``, ``house_number``, ``street``, ``town``, ``postcode``.
        persons: ``person_id``, ``given_name``, ``family_name``, ``dob``, ``sex``, ``nhs_number``,
            ``ni_number``, ``uprn`` and ``postcode`` of the current address.
        address_history: ``person_id``, ``uprn``, ``move_in``, ``move_out`` (NaT for the current address).
        businesses: ``business_id``, ``name``, ``company_number``, ``uprn``, ``postcode``, ``sic_code``,
            ``employees``.
        industries: SIC-like codes: ``sic_code``, ``description``.
        products: Hierarchical product classification: ``code``, ``description``, ``level``,
            ``parent_code``.
    """

    seed: int
    geography: pd.DataFrame
    addresses: pd.DataFrame
    persons: pd.DataFrame
    address_history: pd.DataFrame
    businesses: pd.DataFrame
    industries: pd.DataFrame
    products: pd.DataFrame


def _make_geography(seed: int, n_postcodes: int) -> pd.DataFrame:
    rng = _rng(seed, _STREAM_GEOGRAPHY)
    towns = pd.DataFrame(
        list(ref.TOWNS), columns=["town", "area", "la_name", "la_code", "region_name", "region_code", "w"]
    )
    weights = towns["w"].to_numpy() / towns["w"].sum()
    drawn: list[np.ndarray] = []
    seen: set[str] = set()
    town_rows: list[np.ndarray] = []
    while len(seen) < n_postcodes:
        need = int((n_postcodes - len(seen)) * 1.1) + 8
        rows = rng.choice(len(towns), size=need, p=weights)
        codes = postcodes(rng, towns["area"].to_numpy()[rows])
        _, first = np.unique(codes, return_index=True)
        keep = np.sort(first)
        fresh = ~np.isin(codes[keep], list(seen)) if seen else np.ones(len(keep), dtype=bool)
        keep = keep[fresh]
        drawn.append(codes[keep])
        town_rows.append(rows[keep])
        seen.update(codes[keep].tolist())
    codes = np.concatenate(drawn)[:n_postcodes]
    rows = np.concatenate(town_rows)[:n_postcodes]
    geo = towns.iloc[rows].drop(columns=["w", "area"]).reset_index(drop=True)
    geo.insert(0, "postcode", codes)
    # Small areas: consecutive postcodes (in sorted order) within a local authority share an LSOA, so an
    # LSOA is geographically compact like the real ones (~10 postcodes each here).
    geo = geo.sort_values(["la_code", "postcode"], kind="stable").reset_index(drop=True)
    within_la = geo.groupby("la_code").cumcount().to_numpy() // 10
    la_rank = geo["la_code"].rank(method="dense").astype(int).to_numpy()
    country = geo["la_code"].str[0].map({"E": "E01", "W": "W01", "S": "S01", "N": "N00"})
    # la_rank * 10_000 leaves room for 10k LSOAs per local authority (~100k postcodes each).
    lsoa_number = pd.Series(la_rank * 10_000 + within_la).astype(str).str.zfill(6)
    geo.insert(1, "lsoa_code", country + lsoa_number)
    return geo[["postcode", "lsoa_code", "la_code", "la_name", "region_code", "region_name", "town"]]


def _make_addresses(seed: int, n_addresses: int, geography: pd.DataFrame) -> pd.DataFrame:
    rng = _rng(seed, _STREAM_ADDRESSES)
    n_pc = len(geography)
    # Each postcode unit covers part of one street, as real ones usually do.
    street_of_pc = np.char.add(
        np.char.add(np.array(ref.STREET_STEMS)[rng.integers(0, len(ref.STREET_STEMS), n_pc)], " "),
        np.array(ref.STREET_SUFFIXES)[rng.integers(0, len(ref.STREET_SUFFIXES), n_pc)],
    )
    pc_row = rng.integers(0, n_pc, n_addresses)
    house = rng.integers(1, 250, n_addresses)
    return pd.DataFrame(
        {
            "uprn": uprns(rng, n_addresses),
            "house_number": house.astype(np.int32),
            "street": pd.Categorical(street_of_pc[pc_row]),
            "town": pd.Categorical(geography["town"].to_numpy()[pc_row]),
            "postcode": pd.Categorical(geography["postcode"].to_numpy()[pc_row]),
        }
    )


def _person_chunk(
    seed: int, chunk: int, start: int, size: int, n_total: int, n_addresses: int
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    rng = _rng(seed, _STREAM_PERSONS, chunk)
    index = np.arange(start, start + size)
    female = rng.random(size) < 0.51
    male_names = np.asarray(ref.MALE_GIVEN_NAMES)
    female_names = np.asarray(ref.FEMALE_GIVEN_NAMES)
    given = np.where(
        female,
        female_names[rng.choice(len(female_names), size, p=zipf_weights(len(female_names), 0.7))],
        male_names[rng.choice(len(male_names), size, p=zipf_weights(len(male_names), 0.7))],
    )
    family = np.asarray(ref.FAMILY_NAMES)[
        rng.choice(len(ref.FAMILY_NAMES), size, p=zipf_weights(len(ref.FAMILY_NAMES), 0.9))
    ]
    age_days = rng.integers(0, 95 * 365, size)
    dob = REFERENCE_DATE - age_days.astype("timedelta64[D]")
    persons = {
        "person_id": index.astype(np.int64),
        "given_name": given,
        "family_name": family,
        "dob": dob,
        "sex": np.where(female, "F", "M"),
        "nhs_number": nhs_numbers(rng, index, n_total),
        "ni_number": ni_numbers(rng, index, n_total),
    }
    # Address history: adults have moved 0-3 times since the later of their 18th birthday and 1995.
    adult = age_days >= 18 * 365
    n_addr = 1 + np.where(adult, rng.binomial(3, 0.3, size), 0)
    owner = np.repeat(np.arange(size), n_addr)
    first = np.r_[True, owner[1:] != owner[:-1]]
    u = np.where(first, 0.0, rng.random(len(owner)))
    order = np.lexsort((u, owner))
    owner, u, first = owner[order], u[order], first[order]
    window_start = np.maximum(dob + np.timedelta64(18 * 365, "D"), np.datetime64("1995-01-01", "D")).astype(
        "datetime64[D]"
    )
    span = (REFERENCE_DATE - window_start[owner]).astype(np.int64)
    move_in = np.where(first, dob[owner], window_start[owner] + (u * span).astype("timedelta64[D]"))
    last = np.r_[owner[1:] != owner[:-1], True]
    move_out = np.where(last, np.datetime64("NaT"), np.r_[move_in[1:], np.datetime64("NaT", "D")])
    address_row = rng.integers(0, n_addresses, len(owner))
    history = {
        "person_id": index[owner].astype(np.int64),
        "address_row": address_row,
        "move_in": move_in.astype("datetime64[D]"),
        "move_out": move_out.astype("datetime64[D]"),
    }
    persons["address_row"] = address_row[last]
    return persons, history


def _make_businesses(seed: int, n: int, addresses: pd.DataFrame, geography: pd.DataFrame) -> pd.DataFrame:
    rng = _rng(seed, _STREAM_BUSINESSES)
    words = np.asarray(ref.BUSINESS_WORDS)[rng.integers(0, len(ref.BUSINESS_WORDS), n)]
    surnames = np.asarray(ref.FAMILY_NAMES)[rng.integers(0, len(ref.FAMILY_NAMES), n)]
    stems = np.asarray(ref.STREET_STEMS)[rng.integers(0, len(ref.STREET_STEMS), n)]
    nouns = np.asarray(ref.BUSINESS_NOUNS)[rng.integers(0, len(ref.BUSINESS_NOUNS), n)]
    style = rng.integers(0, 4, n)
    lead = np.where(style == 0, surnames, words)
    middle = np.where(style == 2, np.char.add(" ", stems), "")
    base = np.char.add(np.char.add(lead, middle), np.char.add(" ", nouns))
    base = np.where(style == 3, np.char.add(surnames, " & Sons"), base)
    suffix = np.where(rng.random(n) < 0.8, " Ltd", np.where(rng.random(n) < 0.5, " Limited", " PLC"))
    address_row = rng.integers(0, len(addresses), n)
    postcode = addresses["postcode"].to_numpy()[address_row]
    region = geography.set_index("postcode")["region_code"].reindex(postcode).to_numpy()
    sic = np.asarray([code for code, _ in ref.SIC_CODES])[rng.integers(0, len(ref.SIC_CODES), n)]
    return pd.DataFrame(
        {
            "business_id": np.arange(n, dtype=np.int64),
            "name": np.char.add(base, suffix),
            "company_number": company_numbers(rng, region),
            "uprn": addresses["uprn"].to_numpy()[address_row],
            "postcode": np.asarray(postcode, dtype=object),
            "sic_code": sic,
            "employees": np.maximum(1, rng.lognormal(2.0, 1.3, n).astype(np.int64)),
        }
    )


def generate_world(
    n_persons: int,
    n_businesses: int | None = None,
    seed: int = 0,
    *,
    chunk_size: int = PERSON_CHUNK_SIZE,
) -> World:
    """Generate a synthetic world of people, addresses, geography, businesses and classifications.

    The result depends only on ``n_persons``, ``n_businesses``, ``seed`` and ``chunk_size``.

    Args:
        n_persons: Number of people (1 to 10M+).
        n_businesses: Number of businesses; defaults to one per 20 people (at least 20).
        seed: Seed for every random draw.
        chunk_size: People generated per chunk; bounds temporary memory for very large worlds.

    Returns:
        The :class:`World`.

    Raises:
        ValueError: If ``n_persons`` is not positive.

    Example:
        >>> world = generate_world(1_000, seed=42)
        >>> len(world.persons)
        1000
    """
    if n_persons <= 0:
        raise ValueError(f"n_persons must be positive, got {n_persons}; ask for at least one person.")
    n_businesses = max(20, n_persons // 20) if n_businesses is None else n_businesses
    n_addresses = max(50, int(n_persons * 0.55) + n_businesses)
    geography = _make_geography(seed, max(30, n_addresses // 12))
    addresses = _make_addresses(seed, n_addresses, geography)

    person_parts: list[pd.DataFrame] = []
    history_parts: list[pd.DataFrame] = []
    for chunk, start in enumerate(range(0, n_persons, chunk_size)):
        size = min(chunk_size, n_persons - start)
        persons, history = _person_chunk(seed, chunk, start, size, n_persons, n_addresses)
        person_parts.append(
            pd.DataFrame(
                {
                    "person_id": persons["person_id"],
                    "given_name": pd.Categorical(persons["given_name"]),
                    "family_name": pd.Categorical(persons["family_name"]),
                    "dob": persons["dob"],
                    "sex": pd.Categorical(persons["sex"]),
                    "nhs_number": as_string_series(persons["nhs_number"]),
                    "ni_number": as_string_series(persons["ni_number"]),
                    "address_row": persons["address_row"],
                }
            )
        )
        history_parts.append(pd.DataFrame(history))
    persons_df = pd.concat(person_parts, ignore_index=True)
    for col in ("given_name", "family_name", "sex"):
        persons_df[col] = persons_df[col].astype("category")
    rows = persons_df.pop("address_row").to_numpy()
    persons_df["uprn"] = addresses["uprn"].to_numpy()[rows]
    persons_df["postcode"] = pd.Categorical(addresses["postcode"].to_numpy()[rows])
    history_df = pd.concat(history_parts, ignore_index=True)
    history_df.insert(1, "uprn", addresses["uprn"].to_numpy()[history_df.pop("address_row").to_numpy()])

    businesses = _make_businesses(seed, n_businesses, addresses, geography)
    industries = pd.DataFrame(list(ref.SIC_CODES), columns=["sic_code", "description"])
    products = pd.DataFrame(list(ref.PRODUCT_CLASSIFICATION), columns=["code", "description", "parent_code"])
    products.insert(2, "level", products["code"].str.replace(".", "", regex=False).str.len() - 1)
    return World(
        seed=seed,
        geography=geography,
        addresses=addresses,
        persons=persons_df,
        address_history=history_df,
        businesses=businesses,
        industries=industries,
        products=products,
    )
