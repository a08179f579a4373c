"""Primary disclosure rules, each judged on its own for every cell.

Each rule returns its own :class:`Verdict` from the cell's statistics alone, so a missing or negative value
in one cell never hides another rule's finding for that cell or any finding for another cell.

Which rules apply depends on the statistic published:

==============  =========  =========  ====  ====  ========  =======  =======
aggfunc         threshold  dominance  p%    zero  negative  missing  min/max
==============  =========  =========  ====  ====  ========  =======  =======
count           yes        -          -     yes   -         -        -
sum, mean       yes        yes        yes   yes   yes       yes      -
median, quant.  yes        -          -     yes   yes       yes      q*
std, var        yes        -          -     yes   -         yes      -
min, max        yes        -          -     yes   -         yes      yes
==============  =========  =========  ====  ====  ========  =======  =======

q*: a quantile within ``1/n`` of 0 or 1 (n the cell's records with a value) is the cell's minimum or
maximum, or interpolated between it and its neighbour, so it is judged as min/max:
``quantile(q=1.0)`` fails as ``max``.

Contributors are distinct units when the table declares a unit column (``CellStats.n_units``), else records.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from tre_lib.disclosure.rules import Rules
from tre_lib.disclosure.stats import CellStats
from tre_lib.disclosure.structure import CellKey

Outcome = Literal["pass", "suppress", "review", "fail", "not_applicable"]

_APPLIES: dict[str, tuple[str, ...]] = {
    "count": ("threshold", "zero"),
    "sum": ("threshold", "dominance", "p_percent", "zero", "negative", "missing"),
    "mean": ("threshold", "dominance", "p_percent", "zero", "negative", "missing"),
    "median": ("threshold", "zero", "negative", "missing"),
    "quantile": ("threshold", "zero", "negative", "missing", "min_max"),
    "std": ("threshold", "zero", "missing"),
    "var": ("threshold", "zero", "missing"),
    "min": ("threshold", "zero", "missing", "min_max"),
    "max": ("threshold", "zero", "missing", "min_max"),
}
RULE_NAMES = ("threshold", "dominance", "p_percent", "zero", "negative", "missing", "min_max")


@dataclass(frozen=True)
class Verdict:
    """One rule's finding on one cell."""

    rule: str
    outcome: Outcome
    reason: str
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {"rule": self.rule, "outcome": self.outcome, "reason": self.reason, "detail": self.detail}


def evaluate_cell(
    cell: CellKey, stats: CellStats, aggfunc: str, rules: Rules, structural: bool, q: float = 0.5
) -> Mapping[str, Verdict]:
    """Every rule's verdict on one cell.

    Args:
        cell: the cell's (row key, column key), for messages.
        stats: the cell's statistics.
        aggfunc: the published statistic.
        rules: rule parameters.
        structural: the caller declared this cell a structural zero.
        q: the quantile, for ``aggfunc="quantile"``.

    Returns:
        Verdict per rule name (rules that do not apply to this statistic are ``not_applicable``).
    """
    # The verdicts depend on the cell's statistics only (never on its position), and Verdicts are frozen,
    # so equal cells share one evaluation: a large count table has many cells with the same count.
    return _evaluate(stats, aggfunc, rules, structural, q if aggfunc == "quantile" else 0.5)


@functools.lru_cache(maxsize=65_536)
def _evaluate(
    stats: CellStats, aggfunc: str, rules: Rules, structural: bool, q: float
) -> Mapping[str, Verdict]:
    applies = _APPLIES[aggfunc]
    judges = {
        "threshold": _threshold,
        "dominance": _dominance,
        "p_percent": _p_percent,
        "negative": _negative,
        "missing": _missing,
        "min_max": _min_max,
    }
    out: dict[str, Verdict] = {}
    for name in RULE_NAMES:
        if name not in applies:
            out[name] = Verdict(name, "not_applicable", f"not checked for aggfunc={aggfunc!r}")
        elif name == "zero":
            out[name] = _zero(stats, rules, structural)
        elif name == "min_max" and aggfunc == "quantile":
            out[name] = _extreme_quantile(stats, rules, q)
        else:
            out[name] = judges[name](stats, rules)
    return MappingProxyType(out)


def _threshold(s: CellStats, rules: Rules) -> Verdict:
    n = s.contributors
    what = "record" if s.n_units is None else "unit"
    detail = {"contributors": n, "counted": f"{what}s", "threshold": rules.threshold}
    if s.n == 0:
        return Verdict("threshold", "not_applicable", "empty cell: judged by the zero rule", detail)
    if n < rules.threshold:
        return Verdict(
            "threshold",
            "suppress",
            f"{n} contributing {what}(s), fewer than the threshold of {rules.threshold}",
            detail,
        )
    return Verdict("threshold", "pass", f"{n} contributing {what}s, at least {rules.threshold}", detail)


def _dominance(s: CellStats, rules: Rules) -> Verdict:
    n, k = rules.dominance_n, rules.dominance_k
    if s.n == 0:
        return Verdict("dominance", "not_applicable", "empty cell")
    if s.n_negative:
        return Verdict(
            "dominance",
            "review",
            f"{s.n_negative} negative value(s): ({n},{k})-dominance is not meaningful",
            {"negative": s.n_negative},
        )
    top_n = float(sum(s.top[:n]))
    detail = {"n": n, "k": k, "top_n_sum": top_n, "total": s.total}
    if s.total <= 0:
        return Verdict("dominance", "pass", "every contribution is zero, none dominates", detail)
    share = top_n / s.total
    detail["share"] = share
    if top_n > k * s.total:
        return Verdict(
            "dominance",
            "suppress",
            f"top {n} contributor(s) make {share:.1%} of the total, more than {k:.0%}",
            detail,
        )
    return Verdict("dominance", "pass", f"top {n} contributor(s) make {share:.1%} of the total", detail)


def _p_percent(s: CellStats, rules: Rules) -> Verdict:
    p = rules.p_percent
    if s.n == 0:
        return Verdict("p_percent", "not_applicable", "empty cell")
    if s.n_negative:
        return Verdict(
            "p_percent",
            "review",
            f"{s.n_negative} negative value(s): the p% rule is not meaningful",
            {"negative": s.n_negative},
        )
    x1 = s.top[0] if s.top else 0.0
    x2 = s.top[1] if len(s.top) > 1 else 0.0
    remainder = s.total - x1 - x2
    detail = {"p": p, "largest": x1, "second": x2, "remainder": remainder}
    if x1 <= 0:
        return Verdict("p_percent", "pass", "every contribution is zero", detail)
    if remainder < p * x1:
        return Verdict(
            "p_percent",
            "suppress",
            f"the second-largest contributor could estimate the largest within {remainder / x1:.1%} "
            f"(less than p={p:.0%})",
            detail,
        )
    return Verdict(
        "p_percent", "pass", f"others than the top two add {remainder / x1:.1%} of the largest", detail
    )


def _zero(s: CellStats, rules: Rules, structural: bool) -> Verdict:
    if structural:
        if s.n_rows > 0:
            return Verdict(
                "zero",
                "review",
                f"declared a structural zero but has {s.n_rows} record(s): check the data",
                {"records": s.n_rows},
            )
        return Verdict("zero", "pass", "declared structural zero")
    if s.n_rows > 0:
        return Verdict("zero", "pass", "not empty")
    if rules.zeros == "ignore":
        return Verdict("zero", "pass", "empty cell (zeros ignored by these rules)")
    if rules.zeros == "suppress":
        return Verdict("zero", "suppress", "empty cell: a zero can disclose that nobody has this attribute")
    return Verdict(
        "zero", "review", "empty cell: a checker should confirm the zero does not disclose (group disclosure)"
    )


def _negative(s: CellStats, rules: Rules) -> Verdict:
    if not s.n_negative:
        return Verdict("negative", "pass", "no negative values")
    outcome: Outcome = "suppress" if rules.negative == "suppress" else "review"
    return Verdict(
        "negative",
        outcome,
        f"{s.n_negative} negative value(s): dominance and p% cannot protect this cell",
        {"negative": s.n_negative},
    )


def _missing(s: CellStats, rules: Rules) -> Verdict:
    detail = {"missing": s.n_missing}
    if not s.n_missing:
        return Verdict("missing", "pass", "no missing values", detail)
    outcome: Outcome = "review" if rules.missing == "review" else "pass"
    return Verdict("missing", outcome, f"{s.n_missing} missing value(s) left out of the statistic", detail)


def _extreme_quantile(s: CellStats, rules: Rules, q: float) -> Verdict:
    n = s.n  # the quantile interpolates between records' values
    if s.n == 0:
        return Verdict("min_max", "not_applicable", "empty cell")
    edge = 1.0 / max(n, 1)
    if s.contributors < rules.threshold:
        # Hidden by the threshold rule, and a quantile has no linear relation to the margins.
        return Verdict("min_max", "not_applicable", "below the threshold: suppressed by that rule", {"q": q})
    if q <= edge or q >= 1.0 - edge:
        verdict = _min_max(s, rules)
        return Verdict(
            "min_max",
            verdict.outcome,
            f"quantile q={q:g} is within 1/{n} of {'0' if q <= edge else '1'}, so it is the cell's "
            f"{'minimum' if q <= edge else 'maximum'} (or next to it): " + verdict.reason,
            {"q": q, "contributors": n},
        )
    return Verdict("min_max", "pass", f"quantile q={q:g} is more than 1/{n} from 0 and 1", {"q": q})


def _min_max(s: CellStats, rules: Rules) -> Verdict:
    if s.n == 0:
        return Verdict("min_max", "not_applicable", "empty cell")
    if rules.allow_min_max:
        return Verdict(
            "min_max", "review", "a minimum or maximum is one contributor's value (allowed by the rules)"
        )
    return Verdict(
        "min_max",
        "fail",
        "a minimum or maximum is one contributor's own value; publish a quantile or a range instead",
    )
