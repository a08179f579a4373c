"""The matching service: deterministic keys first, then Splink on the remainder, then grow or report.

``match(delivery, index, spec)`` normalises the delivery, links every record that agrees exactly with one
index entry on a deterministic key, and hands only the rest to Splink. Splink's model is trained on (a
sample of, ``spec.training_records``) the delivery against the index: prior from the deterministic rules,
u by random sampling, m from the deterministic links used as labels, then refined by expectation
maximisation. It scores only the remainder against the index with ``linker.inference.predict_between``
(Splink 5's replacement for ``find_matches_to_new_records``). One best link per record is kept if it clears
the dataset's threshold; with ``spec.one_to_one`` each index entry is also linked at most once.

Training is most of Splink's time, so a trained model can be saved beside the index and reused by the
next delivery of the same dataset (``model_path=model_path_for(index, spec)``; ``train=False`` insists on
the saved model). :func:`link_attributes` is the same engine on any normalised attributes, and
:func:`find_duplicates` deduplicates one set of records.
"""

from __future__ import annotations

import json
import logging
import math
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from tre_lib.indexing.index import SURROGATE_ID, ReferenceIndex, normalise_records
from tre_lib.indexing.normalise import format_postcode
from tre_lib.indexing.report import (
    MatchQualityReport,
    blocking_recall_from_model,
    estimate_quality,
    evaluate_links,
    parameters_from_model,
)
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
        review: The clerical-review queue: ``record_id``, ``surrogate_id`` (the candidate entry),
            ``match_probability`` and the record's normalised attributes, for records whose best candidate
            scored between ``spec.review_match_probability`` and the threshold (linkage zone only).
    """

    links: pd.DataFrame
    report: MatchQualityReport
    model: dict[str, Any] | None = None
    review: pd.DataFrame | None = None

    def method_counts(self) -> dict[str, int]:
        """Number of records per method."""
        return self.report.counts


@dataclass
class _SplinkOutcome:
    best: pd.DataFrame  # row, surrogate_id, match_probability, match_weight (best pair per record)
    pairs: pd.DataFrame  # the same columns: candidate pairs at or above the threshold
    weights: np.ndarray  # match weights of every scored pair (for the distribution chart)
    model: dict[str, Any]
    prior: float
    training: list[str]
    n_with_candidates: int
    linker: Any
    trained: bool
    n_pairs: int = 0


def _deterministic_pass(
    attrs: pd.DataFrame,
    index_frame: pd.DataFrame,
    rules: tuple[tuple[str, ...], ...],
    available: frozenset[str],
    *,
    one_to_one: bool = False,
) -> tuple[np.ndarray, list[str]]:
    """Link records agreeing exactly with exactly one index entry on a rule; ambiguous keys are left.

    With ``one_to_one`` an index entry is also given to at most one record: a key shared by two delivery
    records is ambiguous too, and entries linked by an earlier rule are not offered again.
    """
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
        if one_to_one:
            right = right[~right[SURROGATE_ID].isin(sid[pd.notna(sid)])]
        pairs = left.merge(right, on=cols, how="inner")
        n_ids = pairs.groupby("_row")[SURROGATE_ID].transform("nunique")
        unique = pairs[n_ids == 1].drop_duplicates("_row")
        if one_to_one:
            unique = unique[~unique[SURROGATE_ID].duplicated(keep=False)]
        sid[unique["_row"].to_numpy()] = unique[SURROGATE_ID].to_numpy()
    return sid, used


def assign_links(
    pairs: pd.DataFrame, *, one_to_one: bool = False, taken: np.ndarray | None = None
) -> pd.DataFrame:
    """Choose at most one link per delivery record from scored candidate pairs.

    Without ``one_to_one`` each record keeps its highest-weight pair. With it, an index entry is also
    linked at most once (the index is deduplicated, so two records claiming one entry means one is wrong):
    pairs that are each other's best are accepted, their record and entry are removed, and the step
    repeats, so a record whose best entry went to a stronger claimant can still take its next best. The
    globally highest pair is always mutually best, so every round accepts at least one pair. Splink's
    ``cluster_using_single_best_links`` does the same on a full ``predict()`` over its own input tables;
    here the pairs come from ``predict_between`` on the remainder only, and entries already taken by the
    deterministic pass must be excluded, hence this small pandas version.

    Args:
        pairs: ``row``, ``surrogate_id``, ``match_probability``, ``match_weight``.
        one_to_one: Also link each index entry at most once.
        taken: Index entries already linked (excluded when ``one_to_one``).

    Returns:
        The chosen pairs, one per record at most.
    """
    ordered = pairs.sort_values(["match_weight", SURROGATE_ID, "row"], ascending=[False, True, True])
    if not one_to_one:
        return ordered.drop_duplicates("row").reset_index(drop=True)
    if taken is not None and len(taken):
        ordered = ordered[~ordered[SURROGATE_ID].isin(taken)]
    chosen = []
    while len(ordered):
        mutual = ordered[~ordered["row"].duplicated() & ~ordered[SURROGATE_ID].duplicated()]
        chosen.append(mutual)
        ordered = ordered[
            ~ordered["row"].isin(mutual["row"]) & ~ordered[SURROGATE_ID].isin(mutual[SURROGATE_ID])
        ]
    return pd.concat(chosen, ignore_index=True) if chosen else ordered.reset_index(drop=True)


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


def _comparison_columns(spec: MatchSpec, available: frozenset[str]) -> list[str]:
    assert spec.comparisons is not None
    return sorted(c.create_output_column_name() for c in spec.comparisons(available))


def _model_mismatch(model: dict[str, Any], spec: MatchSpec, available: frozenset[str]) -> str | None:
    """Why a saved model cannot score this delivery (None if it can)."""
    if model.get("sql_dialect") not in (None, spec.backend):
        return f"it was trained on {model.get('sql_dialect')} but this match runs on {spec.backend}"
    if model.get("link_type") != "link_only":
        return f"it is a {model.get('link_type')} model, not a link_only one"
    saved = sorted(c.get("output_column_name") for c in model.get("comparisons", []))
    wanted = _comparison_columns(spec, available)
    if saved != wanted:
        return f"it compares {saved} but this delivery supports {wanted}"
    # Same columns, different levels: a model saved before the spec changed (e.g. a new near-match level).
    assert spec.comparisons is not None
    dialect = model.get("sql_dialect") or spec.backend
    levels = {
        c.get("output_column_name"): [lv.get("sql_condition") for lv in c.get("comparison_levels", [])]
        for c in model.get("comparisons", [])
    }
    for creator in spec.comparisons(available):
        comparison = creator.get_comparison(dialect).as_dict()
        if [lv.get("sql_condition") for lv in comparison["comparison_levels"]] != levels.get(
            comparison["output_column_name"]
        ):
            return f"its levels for {comparison['output_column_name']} differ from the current spec's"
    return None


def load_model(path: str | Path) -> dict[str, Any]:
    """Read a Splink model saved by :func:`match` (``model_path``), as a settings dictionary.

    Raises:
        MatchError: If the file is missing or is not a Splink model.
    """
    try:
        model = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise MatchError(
            f"No saved model at {path}; run the match once with train=True (or train unset) to create it."
        ) from exc
    except json.JSONDecodeError as exc:
        raise MatchError(f"{path} is not a JSON Splink model ({exc.msg}); delete it and retrain.") from exc
    if not isinstance(model, dict) or "comparisons" not in model:
        raise MatchError(f"{path} is not a Splink model (no comparisons); delete it and retrain.")
    return model


def save_model(model: dict[str, Any], path: str | Path) -> None:
    """Write a Splink model atomically (temporary file, then rename) so a reader never sees half of it."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}")
    tmp.write_text(json.dumps(model, indent=2), encoding="utf-8")
    os.replace(tmp, target)


def _train(
    linker: Any,
    spec: MatchSpec,
    available: frozenset[str],
    n_labels: int,
    note: Callable[[str], None],
    *,
    estimate_u: bool = True,
) -> None:
    from splink import block_on

    det_rules = [r for r in spec.deterministic_rules if set(r) <= available]
    if det_rules and n_labels:
        linker.training.estimate_probability_two_random_records_match(
            [block_on(*rule) for rule in det_rules], recall=spec.deterministic_recall
        )
        note(f"prior from deterministic rules (assumed recall {spec.deterministic_recall})")
    else:
        note("prior 1/len(index): every record assumed to have one match")
    if estimate_u:
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


def _register_index_tf(
    linker: Any, db_api: Any, index_df: pd.DataFrame, spec: MatchSpec, available: frozenset[str], token: str
) -> None:
    """Term frequencies from the index's entries, not from the delivery and index together.

    Splink's ``compute_tf_table`` counts values over both inputs; event data (a dozen incidents per
    business) then makes every name it repeats look common and takes back the weight of an exact match.
    A value's frequency among distinct entities is what the adjustment means, and the index holds exactly
    one row per entity.
    """
    for column in spec.term_frequency_columns:
        if column not in available:
            continue
        freq = index_df[column].dropna().value_counts(normalize=True)
        table = pd.DataFrame({column: freq.index.astype(str), f"tf_{column}": freq.to_numpy(dtype=float)})
        if table.empty:
            continue
        tf_sdf = db_api.register(
            pa.Table.from_pandas(table, preserve_index=False), table_name=f"tf_{column}_{token}"
        )
        linker.table_management.register_term_frequency_lookup(tf_sdf, column)


def _with_index_u(
    tables: list[Any], settings: Any, spec: MatchSpec, available: frozenset[str], n_index: int
) -> dict[str, Any]:
    """The link settings with u estimated on pairs of index entries, which are all non-matches.

    Splink samples u from random delivery-index pairs assuming they are non-matches; against a small index
    (a few hundred businesses) about 1/len(index) of them are true matches, which inflates u for every
    agreeing level until a unique key such as a company number weighs no more than log2(len(index)) and
    one attribute can never outweigh the prior. The index is deduplicated, so any two of its entries are
    different entities: a dedupe model on the index alone gives uncontaminated u. A level no sampled pair
    reached gets u = 1 / pairs sampled (an upper bound of the right size) rather than Splink's fixed 1e-6.
    """
    from splink import Linker, SettingsCreator

    assert spec.comparisons is not None
    link_model = Linker(tables, settings, log_level=_SPLINK_LOG_LEVEL).misc.save_model_to_json()
    dedupe = SettingsCreator(
        link_type="dedupe_only",
        comparisons=spec.comparisons(available),
        retain_matching_columns=False,
        retain_intermediate_calculation_columns=False,
    )
    index_linker = Linker(tables[1], dedupe, log_level=_SPLINK_LOG_LEVEL)
    index_linker.training.estimate_u_using_random_sampling(
        max_pairs=spec.u_max_pairs, seed=spec.seed, num_chunks=spec.u_num_chunks
    )
    index_model = index_linker.misc.save_model_to_json()
    floor = 1.0 / max(min(spec.u_max_pairs, n_index * (n_index - 1) / 2), 1.0)
    for target, source in zip(link_model["comparisons"], index_model["comparisons"], strict=True):
        for level, trained in zip(target["comparison_levels"], source["comparison_levels"], strict=True):
            if level.get("is_null_level"):
                continue
            u = trained.get("u_probability")
            level["u_probability"] = u if isinstance(u, float) and u > 0 else floor
    return link_model


def _splink_pass(
    attrs: pd.DataFrame,
    det_sid: np.ndarray,
    remainder_rows: np.ndarray,
    index_frame: pd.DataFrame,
    spec: MatchSpec,
    available: frozenset[str],
    threshold_weight: float,
    saved_model: dict[str, Any] | None,
) -> _SplinkOutcome:
    from splink import Linker, SettingsCreator

    assert spec.comparisons is not None and spec.blocking_rules is not None
    columns = [c for c in attrs.columns if c in available]
    delivery_df, index_df = _splink_frames(attrs, det_sid, index_frame, columns)
    db_api = _db_api(spec)
    token = secrets.token_hex(4)
    index_sdf = db_api.register(_as_arrow(index_df), table_name=f"index_{token}")
    training: list[str] = []
    clock = time.perf_counter()

    def note(text: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        training.append(f"{text} [{now - clock:.1f}s]")
        clock = now

    # Only the training sample and the remainder ever reach Splink: a 1M delivery is not copied whole.
    sampled = spec.training_records is not None and len(delivery_df) > spec.training_records
    training_rows = np.arange(len(delivery_df))
    if sampled:
        rng = np.random.default_rng(spec.seed)
        training_rows = np.sort(rng.choice(len(delivery_df), size=spec.training_records, replace=False))
    training_sdf = db_api.register(_as_arrow(delivery_df.iloc[training_rows]), table_name=f"delivery_{token}")
    if saved_model is not None:
        linker = Linker([training_sdf, index_sdf], saved_model, log_level=_SPLINK_LOG_LEVEL)
        note("saved model reused: no training")
        _register_index_tf(linker, db_api, index_df, spec, available, token)
        note("term-frequency tables from the index's entries")
    else:
        settings = SettingsCreator(
            link_type="link_only",
            comparisons=spec.comparisons(available),
            blocking_rules_to_generate_predictions=spec.blocking_rules(available),
            probability_two_random_records_match=1.0 / max(len(index_df), 1),
            retain_matching_columns=False,
            retain_intermediate_calculation_columns=False,
        )
        u_from_index = (
            spec.u_from_index and len(index_df) * (len(index_df) - 1) // 2 >= spec.u_min_index_pairs
        )
        # Each note follows the step it times (a note measures the time since the previous one).
        if sampled:
            note(f"training on a random {spec.training_records} of {len(delivery_df)} delivery records")
        linker = Linker(
            [training_sdf, index_sdf],
            _with_index_u([training_sdf, index_sdf], settings, spec, available, len(index_df))
            if u_from_index
            else settings,
            log_level=_SPLINK_LOG_LEVEL,
        )
        if u_from_index:
            note(f"u by random sampling of pairs of index entries (max_pairs={spec.u_max_pairs:.0f})")
        _register_index_tf(linker, db_api, index_df, spec, available, token)
        note("term-frequency tables from the index's entries")
        n_labels = int(pd.notna(det_sid[training_rows]).sum())
        _train(linker, spec, available, n_labels, note, estimate_u=not u_from_index)

    remainder_sdf = db_api.register(
        _as_arrow(delivery_df.iloc[remainder_rows]), table_name=f"remainder_{token}"
    )
    # link_and_dedupe: predict_between only ever pairs left with right, and with "link_only" Splink adds a
    # source-dataset filter whose join on concatenated ids DuckDB runs as a slow nested loop (20 s for
    # 2k x 30k records); the pairs are the same without it.
    predictions = linker.inference.predict_between(
        remainder_sdf, index_sdf, link_type="link_and_dedupe", warning_mode="never"
    )
    table = predictions.physical_name  # Splink's generated table name, never user input
    cols = "unique_id_l, unique_id_r, match_probability, match_weight"
    rank = "row_number() over (partition by unique_id_l order by match_weight desc, unique_id_r) as rn"
    best_sql = f"select {cols} from (select {cols}, {rank} from {table}) ranked where rn = 1"  # noqa: S608
    best = _pairs_frame(linker.misc.query_sql(best_sql, output_type="pandas"))
    if spec.one_to_one and math.isfinite(threshold_weight):
        # Every pair above the threshold: a record whose best entry is taken may still take its next best.
        above_sql = f"select {cols} from {table} where match_weight >= {float(threshold_weight)!r}"  # noqa: S608
        pairs = _pairs_frame(linker.misc.query_sql(above_sql, output_type="pandas"))
    else:
        pairs = best[best["match_weight"] >= threshold_weight]
    note(f"scored {len(remainder_rows)} remaining records against the index")
    n_pairs = int(linker.misc.query_sql(f"select count(*) as n from {table}", output_type="pandas")["n"][0])  # noqa: S608
    weights_sql = f"select match_weight from {table} limit 2000000"  # noqa: S608
    weights = linker.misc.query_sql(weights_sql, output_type="pandas")["match_weight"].to_numpy(dtype=float)
    model = linker.misc.save_model_to_json()
    return _SplinkOutcome(
        best=best,
        pairs=pairs,
        weights=weights,
        model=model,
        prior=float(model["probability_two_random_records_match"]),
        training=training,
        n_with_candidates=len(best),
        linker=linker,
        trained=saved_model is None,
        n_pairs=n_pairs,
    )


def _pairs_frame(raw: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "row": raw["unique_id_l"].str.slice(1).astype(int).to_numpy(),
            SURROGATE_ID: raw["unique_id_r"].to_numpy(dtype=object),
            "match_probability": raw["match_probability"].to_numpy(dtype=float),
            "match_weight": raw["match_weight"].to_numpy(dtype=float),
        }
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
    if len(weights) or np.isfinite(best).any():  # a log scale of nothing warns (no pair had a candidate)
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


@dataclass
class AttributeLinks:
    """What :func:`link_attributes` found for each delivery row (arrays aligned with the delivery).

    Attributes:
        surrogate_id: The linked index entry, or None.
        method: ``deterministic`` | ``probabilistic`` | ``unmatched``.
        match_probability: 1 for deterministic links, Splink's probability for probabilistic ones.
        match_weight: Splink's match weight (null for deterministic links).
        n_remainder: Records left to Splink after the deterministic pass.
        n_below_threshold: Records whose best candidate scored below the threshold.
        outcome: Splink's side (None if it did not run).
        seconds: Wall time per phase.
    """

    surrogate_id: np.ndarray
    method: np.ndarray
    match_probability: np.ndarray
    match_weight: np.ndarray
    n_remainder: int
    n_below_threshold: int
    outcome: _SplinkOutcome | None
    seconds: dict[str, float]


def _saved_model(
    spec: MatchSpec, available: frozenset[str], model_path: str | Path | None, train: bool | None
) -> dict[str, Any] | None:
    """The saved model to reuse, or None to train (and then save to ``model_path``)."""
    if train is True or model_path is None:
        if train is False:
            raise MatchError("train=False needs model_path=<a model saved by an earlier match>.")
        return None
    if not Path(model_path).exists() and train is None:
        return None
    model = load_model(model_path)
    why = _model_mismatch(model, spec, available)
    if why is None:
        return model
    if train is False:
        raise MatchError(
            f"The saved model {model_path} cannot score this delivery: {why}. Retrain with train=True."
        )
    logger.info("Retraining: the saved model %s does not fit (%s).", model_path, why)
    return None


def link_attributes(
    attrs: pd.DataFrame,
    index_frame: pd.DataFrame,
    spec: MatchSpec,
    *,
    model_path: str | Path | None = None,
    train: bool | None = None,
) -> AttributeLinks:
    """Link normalised records to index entries: deterministic keys first, then Splink on the remainder.

    This is the engine of :func:`match`, usable on any attributes a :class:`MatchSpec` describes (the
    linkage benchmark runs it on the FEBRL data sets, whose columns are not an index kind's).

    Args:
        attrs: Normalised delivery attributes, one row per record (positional index 0..n-1).
        index_frame: ``surrogate_id`` and the same attributes, one row per index entry.
        spec: Keys, Splink comparisons, blocking, threshold and ``one_to_one``.
        model_path: A Splink model JSON: reused if it exists and fits, written after training otherwise.
        train: ``True`` always trains (and overwrites ``model_path``); ``False`` never trains (the model
            must exist and fit); ``None`` reuses a fitting saved model, else trains.

    Returns:
        The links per record, aligned with ``attrs``.

    Raises:
        MatchError: ``train=False`` without a usable saved model.
    """
    attrs = attrs.reset_index(drop=True)
    available = frozenset(c for c in attrs.columns if attrs[c].notna().any())
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    sid, _ = _deterministic_pass(
        attrs, index_frame, spec.deterministic_rules, available, one_to_one=spec.one_to_one
    )
    n = len(attrs)
    method = np.where(pd.notna(sid), "deterministic", "unmatched").astype(object)
    probability = np.where(pd.notna(sid), 1.0, np.nan)
    weight = np.full(n, np.nan)
    seconds["deterministic"] = time.perf_counter() - t0

    outcome: _SplinkOutcome | None = None
    remainder = np.flatnonzero(pd.isna(sid))
    threshold_weight = _threshold_weight(spec)
    n_below = 0
    if spec.comparisons is not None and len(remainder) and len(index_frame):
        t0 = time.perf_counter()
        saved = _saved_model(spec, available, model_path, train)
        outcome = _splink_pass(
            attrs, sid.copy(), remainder, index_frame, spec, available, threshold_weight, saved
        )
        if outcome.trained and model_path is not None:
            save_model(outcome.model, model_path)
        accepted = assign_links(outcome.pairs, one_to_one=spec.one_to_one, taken=sid[pd.notna(sid)])
        n_below = len(outcome.best) - int((outcome.best["match_weight"] >= threshold_weight).sum())
        rows = accepted["row"].to_numpy()
        sid[rows] = accepted[SURROGATE_ID].to_numpy()
        method[rows] = "probabilistic"
        probability[rows] = accepted["match_probability"].to_numpy()
        weight[rows] = accepted["match_weight"].to_numpy()
        seconds["splink"] = time.perf_counter() - t0
    return AttributeLinks(sid, method, probability, weight, len(remainder), n_below, outcome, seconds)


def match(
    delivery: pd.DataFrame,
    index: ReferenceIndex,
    spec: MatchSpec,
    *,
    charts_dir: str | Path | None = None,
    expected: pd.Series | None = None,
    model_path: str | Path | None = None,
    train: bool | None = None,
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
        model_path: Where this dataset's trained Splink model lives (see :func:`model_path_for`): a
            re-ingest reuses it instead of retraining, which is most of Splink's time.
        train: ``True`` retrains (and overwrites ``model_path``), ``False`` requires the saved model,
            ``None`` (default) reuses it when it fits the delivery's attributes, else trains and saves.

    Returns:
        A :class:`MatchResult` with one row per delivery record.

    Raises:
        MatchError: If the spec is for another index kind, the record id column is missing, or
            ``train=False`` and no fitting model is saved at ``model_path``.

    Example:
        >>> spec = spec_for("hospital_episodes")
        >>> result = match(records, index, spec, model_path=model_path_for(index, spec))
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
    index_frame = index.matching_frame()
    version_before = index.version
    timings["normalise"] = time.perf_counter() - t0

    linked = link_attributes(attrs, index_frame, spec, model_path=model_path, train=train)
    timings.update(linked.seconds)
    sid, method, outcome = linked.surrogate_id, linked.method, linked.outcome
    n = len(attrs)

    unmatched = np.flatnonzero(pd.isna(sid))
    growth: dict[str, Any] = {}
    if spec.on_unmatched == "add" and len(unmatched):
        t0 = time.perf_counter()
        new_attrs = attrs.iloc[unmatched].reset_index(drop=True)
        # The records that match nothing are deduplicated among themselves (Splink dedupe_only, clustered
        # at the threshold) before they become entries: a first delivery into an empty index, or the new
        # people of any delivery, must not give one person several entries.
        cluster, growth = deduplicate_new_records(new_attrs, spec)
        heads = np.flatnonzero(cluster == np.arange(len(cluster)))
        ids = index.add(new_attrs.iloc[heads], source=spec.source, normalised=True)
        id_of_head = pd.Series(ids.to_numpy(), index=heads)
        sid[unmatched] = id_of_head.reindex(cluster).to_numpy()
        method[unmatched] = "new"
        timings["grow"] = time.perf_counter() - t0

    links = pd.DataFrame(
        {
            "record_id": record_ids,
            SURROGATE_ID: sid,
            "method": method,
            "match_probability": linked.match_probability,
            "match_weight": linked.match_weight,
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
        n_unlinkable=linked.n_remainder - (outcome.n_with_candidates if outcome else 0),
        n_below_threshold=linked.n_below_threshold,
        threshold=(
            {"match_weight": spec.threshold_match_weight}
            if spec.threshold_match_weight is not None
            else {"match_probability": spec.threshold_match_probability}
        ),
        probability_two_random_records_match=outcome.prior if outcome else None,
        training=outcome.training if outcome else ["deterministic rules only"],
        parameters=parameters_from_model(outcome.model) if outcome else [],
        index_versions={"before": version_before, "after": index.version},
        growth=growth,
        seconds={k: round(v, 3) for k, v in timings.items()},
    )
    report.estimated, report.blocking = _estimates(linked, spec, attrs, growth)
    review = _review_queue(linked, spec, attrs, record_ids)
    report.review = {
        "lower_match_probability": spec.review_match_probability,
        "upper_match_probability": spec.threshold_match_probability,
        "queued": 0 if review is None else len(review),
    }
    if expected is not None:
        report.accuracy = evaluate_links(links, expected)
    if charts_dir is not None and outcome is not None:
        report.charts = _save_charts(outcome, _threshold_weight(spec), Path(charts_dir))
    return MatchResult(links=links, report=report, model=outcome.model if outcome else None, review=review)


def _review_queue(
    linked: AttributeLinks, spec: MatchSpec, attrs: pd.DataFrame, record_ids: np.ndarray
) -> pd.DataFrame | None:
    """Records whose best candidate scored between the review and the match thresholds."""
    outcome = linked.outcome
    if outcome is None or spec.review_match_probability is None:
        return None
    best = outcome.best
    lower = best["match_probability"] >= spec.review_match_probability
    queued = best[lower & (best["match_weight"] < _threshold_weight(spec))].sort_values("row")
    rows = queued["row"].to_numpy()
    frame = attrs.iloc[rows].reset_index(drop=True)
    frame.insert(0, "record_id", record_ids[rows])
    frame.insert(1, SURROGATE_ID, queued[SURROGATE_ID].to_numpy())
    frame.insert(2, "match_probability", queued["match_probability"].to_numpy())
    return frame


def _estimates(
    linked: AttributeLinks, spec: MatchSpec, attrs: pd.DataFrame, growth: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Estimated precision/recall of the links (and of the growth's deduplication) and blocking recall."""
    available = frozenset(c for c in attrs.columns if attrs[c].notna().any())
    fields = spec.blocking_fields(available) if spec.blocking_fields else []
    blocking: dict[str, Any] = {"rules": ["+".join(f) for f in fields]}
    outcome = linked.outcome
    n_det = int((linked.method == "deterministic").sum())
    estimated: dict[str, Any] = {}
    if outcome is not None:
        recall = blocking_recall_from_model(outcome.model, fields) if fields else None
        blocking.update(estimated_recall=recall, pairs_scored=outcome.n_pairs)
        accepted = linked.match_probability[linked.method == "probabilistic"]
        below = outcome.best[outcome.best["match_weight"] < _threshold_weight(spec)]
        estimated["link"] = estimate_quality(n_det, accepted, below["match_probability"], recall)
    if growth.get("estimated"):
        estimated["growth"] = growth["estimated"]
    main = estimated.get("link") or estimated.get("growth")
    if main:
        estimated.update(precision=main["precision"], recall=main["recall"])
        estimated["method"] = (
            "expected true links from match probabilities (deterministic links certain), recall scaled by "
            "the blocking rules' estimated recall"
        )
    return estimated, blocking


def model_path_for(index: ReferenceIndex, spec: MatchSpec) -> Path:
    """Where a dataset's trained model is kept: ``<index directory>/models/<spec.source>.json``.

    Beside the index (in the linkage zone, never in a workspace) and outside its versions, so growing
    the index keeps the model. The source label names the dataset, so each dataset has its own model.
    """
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in spec.source)
    return index.directory / "models" / f"{safe}.json"


@dataclass
class Duplicates:
    """What :func:`find_duplicates` found within one set of records.

    Attributes:
        cluster: Per record (aligned with the input), the row number of its cluster's first record.
        edges: ``row_l``, ``row_r``, ``method`` (deterministic | probabilistic), ``match_probability``.
        linker: Splink's linker (for charts), or None if Splink did not run.
        seconds: Wall time per phase.
    """

    cluster: np.ndarray
    edges: pd.DataFrame
    linker: Any
    seconds: dict[str, float]
    training: list[str] = field(default_factory=list)
    estimated: dict[str, Any] = field(default_factory=dict)


def _key_edges(
    attrs: pd.DataFrame, rules: tuple[tuple[str, ...], ...], available: frozenset[str]
) -> pd.DataFrame:
    """Edges joining each record to the first record sharing its full deterministic key (a star per key)."""
    parts = []
    for rule in rules:
        cols = list(rule)
        if not set(cols) <= available:
            continue
        keyed = attrs[cols].dropna()
        first = keyed.groupby(cols, sort=False).ngroup()
        head = pd.Series(keyed.index.to_numpy(), index=keyed.index).groupby(first.to_numpy()).transform("min")
        star = head.to_numpy() != keyed.index.to_numpy()
        parts.append(pd.DataFrame({"row_l": head.to_numpy()[star], "row_r": keyed.index.to_numpy()[star]}))
    edges = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame({"row_l": [], "row_r": []})
    return edges.astype(int).drop_duplicates()


def find_duplicates(attrs: pd.DataFrame, spec: MatchSpec) -> Duplicates:
    """Find records of one entity within a set of records (deduplication, e.g. before seeding an index).

    Records sharing a deterministic key are joined first; Splink (``dedupe_only``, trained as
    :func:`match` trains: prior from the keys, u by sampling, m from the keyed pairs as labels, then EM)
    scores the blocked pairs, and pairs at or above the threshold are joined too. Clusters are the
    connected components of all joined pairs (``scipy.sparse.csgraph``).

    Args:
        attrs: Normalised attributes, one row per record.
        spec: Keys, comparisons, blocking and threshold (``one_to_one`` does not apply).

    Returns:
        Cluster per record and the pairs that formed them.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from splink import Linker, SettingsCreator

    attrs = attrs.reset_index(drop=True)
    n = len(attrs)
    available = frozenset(c for c in attrs.columns if attrs[c].notna().any())
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    det = _key_edges(attrs, spec.deterministic_rules, available).assign(
        method="deterministic", match_probability=1.0
    )
    # The keyed components are the labels for m: records in one component are one entity.
    _, label = connected_components(
        coo_matrix((np.ones(len(det)), (det["row_l"], det["row_r"])), shape=(n, n)), directed=False
    )
    seconds["deterministic"] = time.perf_counter() - t0

    edges = det
    linker = None
    training: list[str] = []
    estimated: dict[str, Any] = {}
    if spec.comparisons is not None and spec.blocking_rules is not None and n > 1:
        t0 = time.perf_counter()
        columns = [c for c in attrs.columns if c in available]
        frame = attrs[columns].copy()
        frame.insert(0, _UID, [f"r{i}" for i in range(n)])
        frame[_LABEL] = [f"c{c}" for c in label]
        if "postcode" in frame and spec.kind in ("demographic", "business", "address"):
            frame["postcode"] = format_postcode(frame["postcode"])
        db_api = _db_api(spec)
        sdf = db_api.register(_as_arrow(frame), table_name=f"records_{secrets.token_hex(4)}")
        settings = SettingsCreator(
            link_type="dedupe_only",
            comparisons=spec.comparisons(available),
            blocking_rules_to_generate_predictions=spec.blocking_rules(available),
            retain_matching_columns=False,
            retain_intermediate_calculation_columns=False,
        )
        linker = Linker(sdf, settings, log_level=_SPLINK_LOG_LEVEL)
        _train(linker, spec, available, len(det), training.append)
        for column in spec.term_frequency_columns:
            if column in available:
                linker.table_management.compute_tf_table(column)
        threshold = _threshold_weight(spec)
        # Pairs down to a low floor are kept: those below the threshold are the rejected candidates
        # whose probabilities estimate recall.
        predictions = linker.inference.predict(threshold_match_probability=0.01, warning_mode="never")
        scored = linker.misc.query_sql(
            f"select unique_id_l, unique_id_r, match_probability, match_weight "  # noqa: S608
            f"from {predictions.physical_name}",
            output_type="pandas",
        )
        keep = scored["match_weight"].to_numpy(dtype=float) >= threshold
        found, rejected = scored[keep], scored[~keep]
        fields = spec.blocking_fields(available) if spec.blocking_fields else []
        recall = blocking_recall_from_model(linker.misc.save_model_to_json(), fields) if fields else None
        estimated = estimate_quality(0, found["match_probability"], rejected["match_probability"], recall)
        estimated["blocking_recall"] = recall
        probabilistic = pd.DataFrame(
            {
                "row_l": found["unique_id_l"].str.slice(1).astype(int).to_numpy(),
                "row_r": found["unique_id_r"].str.slice(1).astype(int).to_numpy(),
                "method": "probabilistic",
                "match_probability": found["match_probability"].to_numpy(dtype=float),
            }
        )
        edges = pd.concat([det, probabilistic], ignore_index=True)
        seconds["splink"] = time.perf_counter() - t0
    _, components = connected_components(
        coo_matrix((np.ones(len(edges)), (edges["row_l"], edges["row_r"])), shape=(n, n)), directed=False
    )
    # Name each cluster by its first record so the ids are stable for the same input.
    first_row = pd.Series(np.arange(n)).groupby(components).transform("min").to_numpy()
    return Duplicates(
        cluster=first_row, edges=edges, linker=linker, seconds=seconds, training=training, estimated=estimated
    )


def _exact_clusters(attrs: pd.DataFrame) -> np.ndarray:
    """Per row, the first row agreeing with it on every attribute (missing counts as a value)."""
    key = (
        attrs.astype(str).agg("\x1f".join, axis=1) if len(attrs.columns) else pd.Series("", index=attrs.index)
    )
    first = pd.Series(np.arange(len(attrs))).groupby(key.to_numpy()).transform("min")
    return first.to_numpy()


def deduplicate_new_records(attrs: pd.DataFrame, spec: MatchSpec) -> tuple[np.ndarray, dict[str, Any]]:
    """Cluster records that are to become new index entries, so one person gets one entry.

    Splink (``dedupe_only``, see :func:`find_duplicates`) scores the blocked pairs among the records and
    pairs at or above the spec's threshold are clustered (connected components); records agreeing on
    every attribute are always one cluster. When too few records or pairs exist to train a model (a
    handful of new people), only the exact duplicates merge, and the summary says so.

    Args:
        attrs: Normalised attributes of the records, positional index.
        spec: The dataset's spec (comparisons, blocking, keys, threshold).

    Returns:
        Per record the position of its cluster's first record, and a summary for the report.
    """
    from splink.internals.exceptions import SplinkException

    attrs = attrs.reset_index(drop=True)
    exact = _exact_clusters(attrs)
    summary: dict[str, Any] = {"records": len(attrs), "method": "exact duplicates only"}
    if spec.comparisons is None or spec.blocking_rules is None or len(attrs) < 3:
        summary["entries"] = len(np.unique(exact))
        return exact, summary
    try:
        found = find_duplicates(attrs, spec)
    except (SplinkException, ValueError, ZeroDivisionError) as exc:
        summary["note"] = f"probabilistic deduplication skipped: {exc}"[:300]
        summary["entries"] = len(np.unique(exact))
        return exact, summary
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(attrs)
    rows = np.concatenate([found.cluster, exact])
    cols = np.concatenate([np.arange(n), np.arange(n)])
    _, comp = connected_components(coo_matrix((np.ones(2 * n), (rows, cols)), shape=(n, n)), directed=False)
    cluster = pd.Series(np.arange(n)).groupby(comp).transform("min").to_numpy()
    summary.update(
        method="splink dedupe_only, clustered at the threshold",
        pairs_joined=int((found.edges["method"] == "probabilistic").sum()),
        keyed_pairs=int((found.edges["method"] == "deterministic").sum()),
        entries=len(np.unique(cluster)),
        training=found.training,
        estimated=found.estimated,
        seconds={k: round(v, 3) for k, v in found.seconds.items()},
    )
    return cluster, summary
