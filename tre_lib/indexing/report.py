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
