"""The matching service: deterministic keys first, then Splink on the remainder, then grow or report.

``match(delivery, index, spec)`` normalises the delivery, links every record that agrees exactly with one
index entry on a deterministic key, and hands only the rest to Splink. Splink's model is trained on the
whole delivery against the index (u by random sampling; m from the deterministic links used as labels, then
refined by expectation maximisation) and scores only the remainder against the index with
``linker.inference.predict_between`` (Splink 5's replacement for ``find_matches_to_new_records``). One best
link per record is kept if it clears the dataset's threshold.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from tre_lib.indexing.index import SURROGATE_ID, ReferenceIndex, normalise_records
from tre_lib.indexing.normalise import format_postcode
from tre_lib.indexing.report import MatchQualityReport, evaluate_links, parameters_from_model
from tre_lib.indexing.spec import MatchSpec

logger = logging.getLogger(__name__)

_LABEL = "det_label"
_UID = "unique_id"
_SPLINK_LOG_LEVEL = logging.WARNING


class MatchError(Exception):
    """Matching could not run; the message says what to change."""


@dataclass
class MatchResult:
    """Per delivery record: the index surrogate id (or None), how it was found, and the score.

    Attributes:
        links: ``record_id``, ``surrogate_id``, ``method`` (deterministic | probabilistic | new |
            unmatched), ``match_probability``, ``match_weight`` (deterministic links: probability 1,
            weight null).
        report: The match-quality report.
        model: The trained Splink model (settings JSON as a dict), or ``None`` if Splink did not run.
    """

    links: pd.DataFrame
    report: MatchQualityReport
    model: dict[str, Any] | None = None

    def method_counts(self) -> dict[str, int]:
        """Number of records per method."""
        return self.report.counts


@dataclass
class _SplinkOutcome:
    best: pd.DataFrame  # row, surrogate_id, match_probability, match_weight (best pair per record)
    weights: np.ndarray  # match weights of every scored pair (for the distribution chart)
    model: dict[str, Any]
    prior: float
    training: list[str]
    n_with_candidates: int
    linker: Any


def _deterministic_pass(
    attrs: pd.DataFrame,
    index_frame: pd.DataFrame,
    rules: tuple[tuple[str, ...], ...],
    available: frozenset[str],
) -> tuple[np.ndarray, list[str]]:
    """Link records agreeing exactly with exactly one index entry on a rule; ambiguous keys are left."""
    sid = np.full(len(attrs), None, dtype=object)
    used: list[str] = []
    for rule in rules:
        cols = list(rule)
        if not set(cols) <= available:
            continue
        used.append("+".join(cols))
        todo = pd.isna(sid) & attrs[cols].notna().all(axis=1).to_numpy()
        if not todo.any():
            continue
        left = attrs.loc[todo, cols].assign(_row=np.flatnonzero(todo))
        right = index_frame[[SURROGATE_ID, *cols]].dropna(subset=cols)
        pairs = left.merge(right, on=cols, how="inner")
        n_ids = pairs.groupby("_row")[SURROGATE_ID].transform("nunique")
        unique = pairs[n_ids == 1].drop_duplicates("_row")
        sid[unique["_row"].to_numpy()] = unique[SURROGATE_ID].to_numpy()
    return sid, used


def _db_api(spec: MatchSpec) -> Any:
    if spec.backend == "spark":
        from splink.backends.spark import SparkAPI

        # "persist" keeps intermediate tables in Spark's cache; the default ("parquet") needs a
        # checkpoint directory.
        return SparkAPI(spark_session=spec.spark_session, break_lineage_method="persist")
    from splink.backends.duckdb import DuckDBAPI

    return DuckDBAPI()


def _as_arrow(df: pd.DataFrame) -> pa.Table:
    # Every matching attribute is a string; an explicit schema keeps all-null columns typed (Spark cannot
    # infer a type from None) and makes DuckDB and Spark see identical tables.
    schema = pa.schema([(c, pa.string()) for c in df.columns])
    return pa.Table.from_pandas(
        df.astype(object).where(df.notna(), None), schema=schema, preserve_index=False
    )


def _splink_frames(
    attrs: pd.DataFrame, det_sid: np.ndarray, index_frame: pd.DataFrame, columns: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    delivery = attrs[columns].copy()
    delivery.insert(0, _UID, [f"r{i}" for i in range(len(attrs))])
    delivery[_LABEL] = det_sid
    index_df = index_frame[[SURROGATE_ID, *columns]].rename(columns={SURROGATE_ID: _UID})
    index_df[_LABEL] = index_df[_UID]
    for frame in (delivery, index_df):
        if "postcode" in frame:
            # Splink's postcode comparison finds sector/district with regexes that expect "AA9 9AA".
            frame["postcode"] = format_postcode(frame["postcode"])
    return delivery, index_df


def _splink_pass(
    attrs: pd.DataFrame,
    det_sid: np.ndarray,
    remainder_rows: np.ndarray,
    index_frame: pd.DataFrame,
    spec: MatchSpec,
    available: frozenset[str],
) -> _SplinkOutcome:
    from splink import Linker, SettingsCreator, block_on

    assert spec.comparisons is not None and spec.blocking_rules is not None
    columns = [c for c in attrs.columns if c in available]
    delivery_df, index_df = _splink_frames(attrs, det_sid, index_frame, columns)
    db_api = _db_api(spec)
    token = secrets.token_hex(4)
    delivery_sdf = db_api.register(_as_arrow(delivery_df), table_name=f"delivery_{token}")
    index_sdf = db_api.register(_as_arrow(index_df), table_name=f"index_{token}")
    n_index = len(index_df)
    settings = SettingsCreator(
        link_type="link_only",
        comparisons=spec.comparisons(available),
        blocking_rules_to_generate_predictions=spec.blocking_rules(available),
        probability_two_random_records_match=1.0 / max(n_index, 1),
        retain_matching_columns=False,
        retain_intermediate_calculation_columns=False,
    )
    linker = Linker([delivery_sdf, index_sdf], settings, log_level=_SPLINK_LOG_LEVEL)
    training: list[str] = []

    det_rules = [r for r in spec.deterministic_rules if set(r) <= available]
    n_labels = int(pd.notna(det_sid).sum())
    clock = time.perf_counter()

    def note(text: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        training.append(f"{text} [{now - clock:.1f}s]")
        clock = now

    if det_rules and n_labels:
        linker.training.estimate_probability_two_random_records_match(
            [block_on(*rule) for rule in det_rules], recall=spec.deterministic_recall
        )
        note(f"prior from deterministic rules (assumed recall {spec.deterministic_recall})")
    else:
        note("prior 1/len(index): every record assumed to have one match")
    linker.training.estimate_u_using_random_sampling(
        max_pairs=spec.u_max_pairs, seed=spec.seed, num_chunks=spec.u_num_chunks
    )
    note(f"u by random sampling (max_pairs={spec.u_max_pairs:.0f}, seed={spec.seed})")
    if spec.m_from_deterministic and n_labels >= spec.min_labels:
        linker.training.estimate_m_from_label_column(_LABEL)
        note(f"m from {n_labels} deterministic links as labels")
    for rule in spec.em_blocking_rules(available) if spec.em_blocking_rules else []:
        linker.training.estimate_parameters_using_expectation_maximisation(rule)
        note(f"m by EM blocked on {rule.create_blocking_rule_dict('duckdb')['blocking_rule']}")

    for column in spec.term_frequency_columns:
        if column in available:
            linker.table_management.compute_tf_table(column)
    remainder_sdf = db_api.register(
        _as_arrow(delivery_df.iloc[remainder_rows]), table_name=f"remainder_{token}"
    )
    note("term-frequency tables")
    predictions = linker.inference.predict_between(remainder_sdf, index_sdf, warning_mode="never")
    table = predictions.physical_name  # Splink's generated table name, never user input
    cols = "unique_id_l, unique_id_r, match_probability, match_weight"
    rank = "row_number() over (partition by unique_id_l order by match_weight desc, unique_id_r) as rn"
    best_sql = f"select {cols} from (select {cols}, {rank} from {table}) ranked where rn = 1"  # noqa: S608
    best = linker.misc.query_sql(best_sql, output_type="pandas")
    note(f"scored {len(remainder_rows)} remaining records against the index, best link each")
    weights_sql = f"select match_weight from {table} limit 2000000"  # noqa: S608
    weights = linker.misc.query_sql(weights_sql, output_type="pandas")["match_weight"].to_numpy(dtype=float)
    best = pd.DataFrame(
        {
            "row": best["unique_id_l"].str.slice(1).astype(int).to_numpy(),
            SURROGATE_ID: best["unique_id_r"].to_numpy(dtype=object),
            "match_probability": best["match_probability"].to_numpy(dtype=float),
            "match_weight": best["match_weight"].to_numpy(dtype=float),
        }
    )
    model = linker.misc.save_model_to_json()
    return _SplinkOutcome(
        best=best,
        weights=weights,
        model=model,
        prior=float(model["probability_two_random_records_match"]),
        training=training,
        n_with_candidates=len(best),
        linker=linker,
    )


def _save_charts(outcome: _SplinkOutcome, threshold_weight: float | None, directory: Path) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")  # headless: charts are files, never windows
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    charts: dict[str, str] = {}
    for name, chart in (
        ("match_weights", outcome.linker.visualisations.match_weights_chart()),
        ("m_u_parameters", outcome.linker.visualisations.m_u_parameters_chart()),
    ):
        path = directory / f"{name}.html"
        chart.save_offline_chart(str(path), overwrite=True, print_msg=False)
        charts[name] = str(path)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    weights = outcome.weights[np.isfinite(outcome.weights)]
    ax.hist(weights, bins=60, color="#4c72b0", label="scored pairs")
    best = outcome.best["match_weight"].to_numpy()
    ax.hist(best[np.isfinite(best)], bins=60, color="#dd8452", alpha=0.7, label="best pair per record")
    if threshold_weight is not None and math.isfinite(threshold_weight):
        ax.axvline(threshold_weight, color="black", linestyle="--", label="threshold")
    ax.set_xlabel("match weight (log2 Bayes factor)")
    ax.set_ylabel("pairs")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    path = directory / "match_weight_distribution.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    charts["match_weight_distribution"] = str(path)
    return charts


def _threshold_weight(spec: MatchSpec) -> float:
    if spec.threshold_match_weight is not None:
        return spec.threshold_match_weight
    p = spec.threshold_match_probability
    return math.inf if p >= 1.0 else math.log2(p / (1.0 - p))


def match(
    delivery: pd.DataFrame,
    index: ReferenceIndex,
    spec: MatchSpec,
    *,
    charts_dir: str | Path | None = None,
    expected: pd.Series | None = None,
) -> MatchResult:
    """Match a delivery's identifiers to a reference index.

    Args:
        delivery: The delivery (raw identifiers; columns named as the index kind's inputs, or mapped by
            ``spec.columns``).
        index: The reference index; grown in place (and saved) when ``spec.on_unmatched == "add"``.
        spec: How to match (see :class:`~tre_lib.indexing.spec.MatchSpec` and ``spec_for``).
        charts_dir: If given, Splink's match-weights and m/u charts (offline HTML) and a PNG of the match
            weight distribution are written there.
        expected: Optional truth, record id -> expected surrogate id (null if not in the index); adds
            precision/recall/F1 to the report.

    Returns:
        A :class:`MatchResult` with one row per delivery record.

    Raises:
        MatchError: If the spec is for another index kind or the record id column is missing.

    Example:
        >>> result = match(records, index, spec_for("hospital_episodes"))
        >>> result.links["method"].value_counts()
    """
    spec.validate()
    if spec.kind != index.kind:
        raise MatchError(
            f"The spec is for a {spec.kind} index but the index is {index.kind}; use spec_for()."
        )
    if spec.record_id is not None and spec.record_id not in delivery.columns:
        raise MatchError(f"Record id column {spec.record_id!r} is not in the delivery; set spec.record_id.")
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    record_ids = delivery[spec.record_id].to_numpy() if spec.record_id else delivery.index.to_numpy()
    attrs = normalise_records(spec.kind, delivery.rename(columns=dict(spec.columns))).reset_index(drop=True)
    available = frozenset(c for c in attrs.columns if attrs[c].notna().any())
    index_frame = index.matching_frame()
    version_before = index.version
    timings["normalise"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    sid, _ = _deterministic_pass(attrs, index_frame, spec.deterministic_rules, available)
    n = len(attrs)
    method = np.where(pd.notna(sid), "deterministic", "unmatched").astype(object)
    probability = np.where(pd.notna(sid), 1.0, np.nan)
    weight = np.full(n, np.nan)
    timings["deterministic"] = time.perf_counter() - t0

    outcome: _SplinkOutcome | None = None
    remainder = np.flatnonzero(pd.isna(sid))
    threshold_weight = _threshold_weight(spec)
    n_below = 0
    if spec.comparisons is not None and len(remainder) and len(index_frame):
        t0 = time.perf_counter()
        outcome = _splink_pass(attrs, sid.copy(), remainder, index_frame, spec, available)
        accepted = outcome.best[outcome.best["match_weight"] >= threshold_weight]
        n_below = len(outcome.best) - len(accepted)
        rows = accepted["row"].to_numpy()
        sid[rows] = accepted[SURROGATE_ID].to_numpy()
        method[rows] = "probabilistic"
        probability[rows] = accepted["match_probability"].to_numpy()
        weight[rows] = accepted["match_weight"].to_numpy()
        timings["splink"] = time.perf_counter() - t0

    unmatched = np.flatnonzero(pd.isna(sid))
    if spec.on_unmatched == "add" and len(unmatched):
        t0 = time.perf_counter()
        new_attrs = attrs.iloc[unmatched]
        # Records of one unknown entity that agree on every attribute get one entry, not one each.
        key = new_attrs.astype(str).agg("\x1f".join, axis=1)
        first = ~key.duplicated()
        ids = index.add(new_attrs[first.to_numpy()], source=spec.source, normalised=True)
        id_of_key = pd.Series(ids.to_numpy(), index=key[first.to_numpy()].to_numpy())
        sid[unmatched] = id_of_key.reindex(key.to_numpy()).to_numpy()
        method[unmatched] = "new"
        timings["grow"] = time.perf_counter() - t0

    links = pd.DataFrame(
        {
            "record_id": record_ids,
            SURROGATE_ID: sid,
            "method": method,
            "match_probability": probability,
            "match_weight": weight,
        }
    )
    counts = {m: int((method == m).sum()) for m in ("deterministic", "probabilistic", "new", "unmatched")}
    report = MatchQualityReport(
        kind=spec.kind,
        source=spec.source,
        backend=spec.backend if outcome is not None else "none",
        n_records=n,
        counts=counts,
        rates={m: (c / n if n else 0.0) for m, c in counts.items()},
        n_unlinkable=len(remainder) - (outcome.n_with_candidates if outcome else 0),
        n_below_threshold=n_below,
        threshold=(
            {"match_weight": spec.threshold_match_weight}
            if spec.threshold_match_weight is not None
            else {"match_probability": spec.threshold_match_probability}
        ),
        probability_two_random_records_match=outcome.prior if outcome else None,
        training=outcome.training if outcome else ["deterministic rules only"],
        parameters=parameters_from_model(outcome.model) if outcome else [],
        index_versions={"before": version_before, "after": index.version},
        seconds={k: round(v, 3) for k, v in timings.items()},
    )
    if expected is not None:
        report.accuracy = evaluate_links(links, expected)
    if charts_dir is not None and outcome is not None:
        report.charts = _save_charts(outcome, threshold_weight, Path(charts_dir))
    return MatchResult(links=links, report=report, model=outcome.model if outcome else None)
