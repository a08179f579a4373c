"""The match-quality report stored with each dataset version, and accuracy against a known truth."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

METHODS = ("deterministic", "probabilistic", "new", "unmatched")


@dataclass
class MatchQualityReport:
    """What happened when a delivery was matched to an index (JSON-serialisable).

    Attributes:
        kind: Index kind.
        source: Delivery label.
        backend: Splink backend used (``duckdb`` / ``spark``), or ``none`` for deterministic only.
        n_records: Records in the delivery.
        counts: Records per method (deterministic, probabilistic, new, unmatched).
        rates: ``counts`` as shares of ``n_records``.
        n_unlinkable: Records with no candidate pair at all after blocking (nothing to score).
        n_below_threshold: Records whose best candidate scored below the threshold.
        threshold: ``{"match_probability": p}`` or ``{"match_weight": w}``.
        probability_two_random_records_match: The model's prior.
        training: What the model was trained on, in order (u sampling, labels, EM sessions).
        parameters: One row per comparison level: comparison, level, m, u, match weight.
        index_versions: Index version before and after (differs when unmatched records were added).
        seconds: Wall time per phase.
        accuracy: Precision/recall/F1 overall and per method, when the truth was supplied.
        charts: Chart name -> file path.
        growth: How the unmatched records were deduplicated into new entries (records, entries, method).
        findings: Problems a data owner must see (an identifier its normaliser mostly blanked...).
        estimated: Precision and recall estimated from the match probabilities (no truth needed).
        blocking: The blocking rules, their comparison counts and estimated recall.
        review: The clerical-review thresholds and how many records were queued.
    """

    kind: str
    source: str
    backend: str
    n_records: int
    counts: dict[str, int]
    rates: dict[str, float]
    n_unlinkable: int = 0
    n_below_threshold: int = 0
    threshold: dict[str, float] = field(default_factory=dict)
    probability_two_random_records_match: float | None = None
    training: list[str] = field(default_factory=list)
    parameters: list[dict[str, Any]] = field(default_factory=list)
    index_versions: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    accuracy: dict[str, Any] | None = None
    charts: dict[str, str] = field(default_factory=dict)
    growth: dict[str, Any] = field(default_factory=dict)
    findings: list[str] = field(default_factory=list)
    estimated: dict[str, Any] = field(default_factory=dict)
    blocking: dict[str, Any] = field(default_factory=dict)
    review: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON types."""
        return asdict(self)

    def to_json(self) -> str:
        """The report as a JSON string (infinite weights are written as null)."""
        return json.dumps(_finite(self.to_dict()), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> MatchQualityReport:
        """Read a report written by :meth:`to_json`."""
        return cls(**json.loads(text))


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def parameters_from_model(model: dict[str, Any]) -> list[dict[str, Any]]:
    """Flatten a Splink model (``linker.misc.save_model_to_json()``) to one row per comparison level."""
    rows: list[dict[str, Any]] = []
    for comparison in model.get("comparisons", []):
        for level in comparison.get("comparison_levels", []):
            if level.get("is_null_level"):
                continue
            m, u = level.get("m_probability"), level.get("u_probability")
            weight = math.log2(m / u) if m and u else None
            rows.append(
                {
                    "comparison": comparison.get("output_column_name"),
                    "level": level.get("label_for_charts") or level.get("sql_condition"),
                    "m_probability": m,
                    "u_probability": u,
                    "match_weight": weight,
                }
            )
    return rows


def evaluate_links(links: pd.DataFrame, expected: pd.Series) -> dict[str, Any]:
    """Precision, recall and F1 of the links against the truth.

    A link is correct when its surrogate id is the expected one. Recall counts records whose true entity
    is in the index (expected id not null); records linked to a newly added entry count as not linked.

    Args:
        links: ``MatchResult.links`` (``record_id``, ``surrogate_id``, ``method``).
        expected: record id -> expected surrogate id (null when the entity is not in the index).

    Returns:
        ``precision``, ``recall``, ``f1``, counts, and ``by_method`` precision.
    """
    df = links.set_index("record_id")
    exp = expected.reindex(df.index)
    linked = df["method"].isin(["deterministic", "probabilistic"]).to_numpy()
    correct = linked & (df["surrogate_id"].to_numpy() == exp.to_numpy())
    n_links, n_correct, n_true = int(linked.sum()), int(correct.sum()), int(exp.notna().sum())
    precision = n_correct / n_links if n_links else 1.0
    recall = n_correct / n_true if n_true else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    by_method: dict[str, dict[str, float | int]] = {}
    for method in ("deterministic", "probabilistic"):
        mask = (df["method"] == method).to_numpy()
        if mask.any():
            by_method[method] = {
                "links": int(mask.sum()),
                "precision": float(correct[mask].sum() / mask.sum()),
            }
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "n_links": n_links,
        "n_correct": n_correct,
        "n_true_matches": n_true,
        "by_method": by_method,
    }


def estimate_quality(
    n_certain: int,
    accepted: Any,
    rejected: Any,
    blocking_recall: float | None = None,
) -> dict[str, Any]:
    """Precision and recall estimated from match probabilities, without a truth file.

    Each accepted candidate is a true match with its match probability, each rejected candidate (a
    record's best candidate below the threshold, or a scored pair below it) with its own; deterministic
    links count as certain. Expected true links found over expected true links available gives recall,
    scaled by the share of true matches the blocking rules let through (true matches blocking missed
    were never scored, so no probability speaks for them).

    Args:
        n_certain: Deterministic links.
        accepted: Match probabilities of the accepted probabilistic links.
        rejected: Match probabilities of the rejected candidates.
        blocking_recall: Estimated share of true matches the blocking rules generate (None: 1).

    Returns:
        ``precision``, ``recall``, ``expected_true_links``, ``expected_missed``.
    """
    acc = pd.Series(accepted, dtype=float).fillna(0.0)
    rej = pd.Series(rejected, dtype=float).fillna(0.0)
    found = n_certain + float(acc.sum())
    available = found + float(rej.sum())
    links = n_certain + len(acc)
    br = blocking_recall if blocking_recall else 1.0
    precision = found / links if links else 1.0
    recall = br * found / available if available else 1.0
    return {
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "expected_true_links": round(found, 1),
        "expected_missed": round(available / br - found, 1),
    }


def blocking_recall_from_model(model: dict[str, Any], rules: list[tuple[str, ...]]) -> float | None:
    """The share of true matches at least one blocking rule generates, from the model's m probabilities.

    A rule generates a true pair when the pair agrees exactly on each of its attributes; the chance of
    that is the m probability of the attribute's exact level. Assuming attributes err independently, the
    escape probability is summed over every agree/disagree pattern in which no rule is satisfied.

    Args:
        model: A Splink model (``save_model_to_json()``).
        rules: The attributes of each blocking rule.

    Returns:
        Estimated blocking recall, or None if an attribute has no exact level in the model.
    """
    agree: dict[str, float] = {}
    for comparison in model.get("comparisons", []):
        name = comparison.get("output_column_name")
        levels = [lv for lv in comparison.get("comparison_levels", []) if not lv.get("is_null_level")]
        if levels and isinstance(levels[0].get("m_probability"), float):
            agree[name] = float(levels[0]["m_probability"])  # the first non-null level is the exact one
    fields = sorted({f for rule in rules for f in rule})
    if not fields or any(f not in agree for f in fields) or len(fields) > 16:
        return None
    escape = 0.0
    for pattern in range(1 << len(fields)):
        ok = {f for i, f in enumerate(fields) if pattern >> i & 1}
        if any(set(rule) <= ok for rule in rules):
            continue
        p = 1.0
        for f in fields:
            p *= agree[f] if f in ok else 1.0 - agree[f]
        escape += p
    return round(1.0 - escape, 4)
