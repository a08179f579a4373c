"""Linkage benchmark: plain Splink on everything (peer) vs deterministic first, Splink on the rest (ours).

Both sides use the same normalised data, the same Splink comparisons and blocking rules, the same u
sampling and the same EM sessions; the peer has no deterministic pass and no labels, and scores every
delivery record with ``linker.inference.predict()``. Both keep one best link per record above the same
match probability threshold. Run:

    .venv/bin/python bench/bench_linkage.py [--rows 20000] [--index 50000]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table
from splink import Linker, SettingsCreator
from splink.backends.duckdb import DuckDBAPI

from tre_lib.indexing import ReferenceIndex, match, spec_for
from tre_lib.indexing.demo import build_index_from_world, expected_surrogates
from tre_lib.indexing.index import normalise_records
from tre_lib.indexing.matching import _as_arrow, _splink_frames
from tre_lib.indexing.report import evaluate_links
from tre_lib.synth import generate_world, make_dataset


def peer_plain_splink(records: pd.DataFrame, index: ReferenceIndex, dataset: str) -> pd.DataFrame:
    """Plain Splink link_only: u by sampling, m by EM, predict() on every record, best link per record."""
    spec = spec_for(dataset)
    assert (
        spec.comparisons is not None
        and spec.blocking_rules is not None
        and spec.em_blocking_rules is not None
    )
    attrs = normalise_records(spec.kind, records).reset_index(drop=True)
    available = frozenset(c for c in attrs.columns if attrs[c].notna().any())
    columns = [c for c in attrs.columns if c in available]
    delivery_df, index_df = _splink_frames(
        attrs, np.full(len(attrs), None, dtype=object), index.matching_frame(), columns
    )
    db_api = DuckDBAPI()
    left = db_api.register(_as_arrow(delivery_df.drop(columns=["det_label"])), table_name="delivery")
    right = db_api.register(_as_arrow(index_df.drop(columns=["det_label"])), table_name="index_entries")
    settings = SettingsCreator(
        link_type="link_only",
        comparisons=spec.comparisons(available),
        blocking_rules_to_generate_predictions=spec.blocking_rules(available),
        probability_two_random_records_match=1.0 / len(index_df),
        retain_matching_columns=False,
    )
    linker = Linker([left, right], settings, log_level=logging.WARNING)
    linker.training.estimate_u_using_random_sampling(max_pairs=spec.u_max_pairs, seed=spec.seed)
    for rule in spec.em_blocking_rules(available):
        linker.training.estimate_parameters_using_expectation_maximisation(rule)
    predictions = linker.inference.predict(warning_mode="never")
    # In a two-table link_only job Splink puts the first input ("delivery") on the left.
    # The table name is Splink's own generated name, never user input.
    best = linker.misc.query_sql(
        f"""select unique_id_l, unique_id_r, match_probability, match_weight from (
              select *,
                     row_number() over (partition by unique_id_l order by match_weight desc, unique_id_r) rn
              from {predictions.physical_name} where source_dataset_l = 'delivery') t where rn = 1""",  # noqa: S608
        output_type="pandas",
    )
    best = best[best["match_probability"] >= spec.threshold_match_probability]
    rows = best["unique_id_l"].str.slice(1).astype(int).to_numpy()
    sid = np.full(len(records), None, dtype=object)
    sid[rows] = best["unique_id_r"].to_numpy()
    method = np.where(pd.notna(sid), "probabilistic", "unmatched")
    return pd.DataFrame(
        {"record_id": records[spec.record_id].to_numpy(), "surrogate_id": sid, "method": method}
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000, help="delivery records (hospital episodes)")
    parser.add_argument("--index", type=int, default=50_000, help="people in the demographic index")
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    console = Console()

    world = generate_world(args.index, seed=args.seed)
    records, truth = make_dataset(world, "hospital_episodes", args.rows, seed=args.seed + 1)
    with tempfile.TemporaryDirectory() as tmp:
        index, index_truth = build_index_from_world(world, "demographic", Path(tmp) / "demographic")
        expected = expected_surrogates(truth, index_truth, "episode_id")

        t0 = time.perf_counter()
        peer_links = peer_plain_splink(records, index, "hospital_episodes")
        peer_s = time.perf_counter() - t0
        peer = evaluate_links(peer_links, expected)

        t0 = time.perf_counter()
        result = match(records, index, spec_for("hospital_episodes"))
        ours_s = time.perf_counter() - t0
        ours = evaluate_links(result.links, expected)

    table = Table(title=f"Linkage: {args.rows:,} hospital episodes vs {args.index:,}-person index (DuckDB)")
    for col in ("", "wall s", "precision", "recall", "F1", "links", "scored by Splink"):
        table.add_column(col, justify="right")
    table.add_row(
        "peer: plain Splink",
        f"{peer_s:.1f}",
        f"{peer['precision']:.4f}",
        f"{peer['recall']:.4f}",
        f"{peer['f1']:.4f}",
        f"{peer['n_links']:,}",
        f"{args.rows:,}",
    )
    table.add_row(
        "ours: deterministic + Splink",
        f"{ours_s:.1f}",
        f"{ours['precision']:.4f}",
        f"{ours['recall']:.4f}",
        f"{ours['f1']:.4f}",
        f"{ours['n_links']:,}",
        f"{result.report.counts['probabilistic'] + result.report.counts['unmatched']:,}",
    )
    table.add_row(
        "ratio ours/peer",
        f"{ours_s / peer_s:.2f}",
        f"{ours['precision'] / peer['precision']:.4f}",
        f"{ours['recall'] / peer['recall']:.4f}",
        f"{ours['f1'] / peer['f1']:.4f}",
        "",
        "",
    )
    console.print(table)
    console.print(f"ours by method: {result.report.counts}; phases (s): {result.report.seconds}")


if __name__ == "__main__":
    main()
