"""The server's own output checks: what rules apply, and re-running them on the submitted data.

Nothing the workspace says about its outputs is trusted. On every submission the server

1. finds the data-sharing agreements that cover the project's datasets - asking the policy engine, so
   "covers" means exactly what it means for data access - and merges the disclosure-control profiles they
   name into one set of rules, parameter by parameter, the strictest value winning (:func:`strictest`);
2. re-computes every table from its declared computation with :func:`tre_lib.disclosure.protect_table`
   and compares the submitted table with the result cell by cell; refits every regression and runs
   :func:`tre_lib.disclosure.check_regression`. The rows come from the project view the computation
   names, as the server holds it (:class:`DataSource` ``view``); only a computation that names no view is
   re-run on the data submitted with it, and the record says the server could not recompute from the
   source;
3. checks every table for differencing against the tables already released from the same project or
   dataset (:mod:`tre_platform.api.releases.differencing`);
4. stores the findings and the disclosure-control record with the file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from tre_lib.disclosure import DisclosureError, Rules, check_regression, load_profile, protect_table
from tre_lib.disclosure.differencing import ReleaseScope, UnitTable
from tre_lib.outputs.specs import (
    RegressionSpec,
    SpecError,
    TableSpec,
    apply_filters,
    compare_tables,
    fit_regression,
    read_coefficients,
    read_table_csv,
    worst,
)
from tre_platform.api.agreements.models import DataSharingAgreement
from tre_platform.api.datasets.models import Dataset
from tre_platform.api.projects.models import Project
from tre_platform.api.releases.differencing import (
    Incidence,
    differencing_findings,
    release_record,
    unit_findings,
)
from tre_platform.api.releases.files import FilePolicy
from tre_platform.api.releases.models import FileKind, ReleaseFile
from tre_platform.clock import clock
from tre_platform.errors import Conflict
from tre_platform.policy.db import load_request
from tre_platform.policy.engine import get_engine
from tre_platform.policy.entities import build
from tre_platform.settings import Settings

# Agreements and rules -----------------------------------------------------------------------------


def covering_agreements(session: Session, project: Project) -> dict[str, list[DataSharingAgreement]]:
    """For each dataset the project's approval lists, the agreements that cover it for this project today.

    The policy engine decides coverage (the same Cedar evaluation as building the project's views), one
    candidate per agreement of the dataset's owner; every candidate it allows counts.
    """
    engine = get_engine()
    out: dict[str, list[DataSharingAgreement]] = {}
    for link in project.datasets:
        request = load_request(
            session, None, "build_view", project=project, dataset=link.dataset_id, today=clock.today()
        )
        cedar_input = build(request)
        results = engine.run(cedar_input)
        ids = [
            candidate.agreement.id
            for candidate, result in zip(cedar_input.candidates, results, strict=True)
            if candidate.agreement is not None and result.allowed and not result.diagnostics.errors
        ]
        out[link.dataset_id] = (
            list(
                session.scalars(
                    select(DataSharingAgreement)
                    .where(DataSharingAgreement.id.in_(ids))
                    .order_by(DataSharingAgreement.reference)
                ).unique()
            )
            if ids
            else []
        )
    return out


_RANKS: dict[str, tuple[str, ...]] = {
    # least strict first
    "zeros": ("ignore", "flag", "suppress"),
    "negative": ("review", "suppress"),
    "missing": ("report", "review"),
}


def strictest(rules: Sequence[Rules]) -> Rules:
    """One set of rules at least as strict as each of ``rules``, parameter by parameter.

    Thresholds, n, p, protection levels and minimum degrees of freedom take the largest value; the
    dominance share k the smallest (top-n shares only grow with n, so (max n, min k) flags every cell
    either rule flags); zeros/negative/missing the strictest handling; min/max tables only if all allow
    them. Suppression (checked by the attacker audit) wins over rounding when profiles disagree.
    """
    if not rules:
        raise ValueError("strictest() needs at least one set of rules")
    if len(rules) == 1:
        return rules[0]
    names = sorted({r.name for r in rules})
    choices = {key: max((getattr(r, key) for r in rules), key=order.index) for key, order in _RANKS.items()}
    mitigations = {r.mitigation for r in rules}
    any_count_protection = any(r.count_protection is not None for r in rules)
    structural = set(rules[0].structural_zeros)
    for r in rules[1:]:
        structural &= set(r.structural_zeros)
    return dataclasses.replace(
        rules[0],
        name="+".join(names),
        description="strictest of the profiles " + ", ".join(names),
        threshold=max(r.threshold for r in rules),
        dominance_n=max(r.dominance_n for r in rules),
        dominance_k=min(r.dominance_k for r in rules),
        p_percent=max(r.p_percent for r in rules),
        protection_level=max(r.protection_level for r in rules),
        count_protection=max(r.required_count_width for r in rules) if any_count_protection else None,
        insider_protection=any(r.insider_protection for r in rules),
        allow_min_max=all(r.allow_min_max for r in rules),
        mitigation="suppress" if "suppress" in mitigations else "round",
        rounding_base=max(r.rounding_base for r in rules),
        rounding_method="controlled" if any(r.rounding_method == "controlled" for r in rules) else "nearest",
        min_residual_df=max(r.min_residual_df for r in rules),
        unit=min((r.unit for r in rules if r.unit), default=None),
        max_cells=min(r.max_cells for r in rules),
        structural_zeros=tuple(sorted(structural, key=repr)),
        **choices,
    )


def effective_rules(session: Session, project: Project, settings: Settings) -> Rules:
    """The disclosure-control rules for the project's outputs: the strictest of the covering agreements'.

    Raises Conflict when a dataset of the project has no covering agreement: then nothing derived from it
    may leave, whatever the rules.
    """
    covering = covering_agreements(session, project)
    uncovered = [dataset_id for dataset_id, agreements in covering.items() if not agreements]
    if uncovered:
        names = session.scalars(select(Dataset.name).where(Dataset.id.in_(uncovered))).all()
        raise Conflict(
            f"no active data-sharing agreement covers dataset(s) {', '.join(sorted(names))} for project "
            f"{project.code}, so no output derived from them can be released; ask the data owner"
        )
    profiles_dir = settings.policies_dir / "disclosure" / "profiles"
    names = sorted({a.dc_profile for agreements in covering.values() for a in agreements} or {"default"})
    return strictest([load_profile(name, profiles_dir) for name in names])


# Re-running the checks ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DataSource:
    """Where the rows an output is re-checked on came from.

    Attributes:
        kind: ``view`` (the project's view on the server: recomputed from the source), ``submitted`` (the
            researcher's upload: the server could not recompute from the source) or ``none``.
        description: one sentence for the findings and the record.
        error: the declared source could not be read, so the output cannot be checked.
        view: the view's name, when read.
        view_version: the research version the view was built from.
    """

    kind: Literal["view", "submitted", "none"]
    description: str
    error: bool = False
    view: str | None = None
    view_version: int | None = None

    @property
    def recomputed(self) -> bool:
        """The server recomputed the output from the project's own data."""
        return self.kind == "view" and not self.error

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "recomputed_from_source": self.recomputed}


#: Why a table that the server could not recompute from a project view is never passed automatically.
NO_VIEW_REASON = (
    "not recomputed from a project view: the numbers come from data the researcher uploaded, which the "
    "server cannot verify, so this output can at most be 'review' - an output checker must decide"
)


def _result(status: str, findings: list[str], **extra: Any) -> dict[str, Any]:
    return {"status": status, "findings": findings, **extra}


def check_table(
    spec: TableSpec,
    content: bytes,
    data: pd.DataFrame,
    rules: Rules,
    policy: FilePolicy,
    past: tuple[Session, ReleaseScope] | None = None,
    source: DataSource | None = None,
    incidence: Incidence | None = None,
) -> dict[str, Any]:
    """Re-compute the table from ``data``, protect it with ``rules``, compare the submitted table, and
    (given ``past``: the session and the table's scope) check differencing against earlier releases.

    ``source`` says where ``data`` came from; its sentence leads the findings and goes into the record.
    ``incidence`` (a table recomputed from a view) adds differencing by units against every table in
    ``incidence.others``; the new table's incidence record is returned under ``_unit_table``.
    """
    try:
        submitted = read_table_csv(content, spec)
        frame = apply_filters(data, spec.filters)
        protected = protect_table(
            frame,
            list(spec.index),
            list(spec.columns) or None,
            spec.values,
            spec.aggfunc,
            rules=rules,
            margins=spec.margins,
            q=spec.q,
            unit=rules.unit if rules.unit in frame.columns else None,
            max_cells=min(rules.max_cells, policy.max_table_cells),
        )
    except (SpecError, DisclosureError, ValueError, KeyError, TypeError) as exc:
        lead = [source.description] if source is not None and source.description else []
        return _result("fail", [*lead, f"the server could not re-run the declared computation: {exc}"])
    comparison = compare_tables(submitted, protected.table)
    findings = [source.description] if source is not None and source.description else []
    findings.append(f"server re-check with rules {rules.name!r}: {protected.status}")
    findings += [f"{protected.notes[i]}" for i in range(len(protected.notes))]
    findings += comparison.problems()
    status = worst(protected.status, "pass" if comparison.ok else "fail")
    if comparison.more_suppressed:
        findings.append(f"{len(comparison.more_suppressed)} cell(s) suppressed beyond what the rules require")
    if submitted.size > policy.max_table_cells:
        status = "fail"
        findings.append(
            f"the table has {submitted.size} cells; at most {policy.max_table_cells} may be released"
        )
    if len(frame) and len(submitted) >= len(frame):
        status = "fail"
        findings.append("the table has as many rows as the data it summarises: it looks like row-level data")
    extra: dict[str, Any] = {}
    if past is not None:
        session, scope = past
        record = release_record(protected, spec, frame, scope, comparison.more_suppressed)
        d_status, d_findings, d_data = differencing_findings(session, record, scope, rules)
        status = worst(status, d_status)
        findings += d_findings
        extra["differencing"] = {"status": d_status, "findings": d_data, "record": record.as_dict()}
    if incidence is not None:
        unit_table = UnitTable.from_frame(
            incidence.table_id,
            protected,
            frame,
            incidence.row_keys[frame.index.to_numpy()],
            incidence.unit_keys[frame.index.to_numpy()],
            universe=incidence.universe,
            values=spec.values,
            hidden=[(*r, *c) for r, c in comparison.more_suppressed],
        )
        u_status, u_findings, u_data = unit_findings(unit_table, incidence.others, rules)
        status = worst(status, u_status)
        findings += u_findings
        extra.setdefault("differencing", {})["by_units"] = {
            "status": u_status,
            "findings": u_data,
            "compared_with": len(incidence.others),
            "method": "unit incidence (ADR 0014)",
        }
        extra["_unit_table"] = unit_table
    if source is not None and source.recomputed and not comparison.ok:
        findings.append(
            "the submitted table differs from the same computation on the project's view: what was "
            "submitted is not what the declared computation gives"
        )
    dc_record = protected.record()
    if source is not None:
        dc_record["source"] = source.as_dict()
    return _result(status, findings, record=dc_record, comparison=comparison.as_dict(), **extra)


def check_regression_output(
    spec: RegressionSpec, content: bytes, data: pd.DataFrame, rules: Rules
) -> dict[str, Any]:
    """Refit the model on ``data``, check its residual degrees of freedom, compare the coefficients."""
    try:
        result, fit_warnings = fit_regression(data, spec)
        labels = getattr(getattr(result.model, "data", None), "row_labels", None)
        units = (
            data[rules.unit].loc[labels].to_numpy()
            if rules.unit in data.columns and labels is not None
            else None
        )
        check = check_regression(result, rules, units=units)
    except (SpecError, DisclosureError, ValueError, KeyError, TypeError) as exc:
        return _result("fail", [f"the server could not refit the declared model: {exc}"])
    findings = [*check.reasons, *(f"warning while fitting: {w}" for w in fit_warnings)]
    status: str = check.status
    submitted = read_coefficients(content)
    if submitted is None:
        status = worst(status, "review")
        findings.append("the output is not a coefficients CSV (term, coef); a checker must compare it by eye")
    else:
        fitted = {str(k): float(v) for k, v in result.params.items()}
        wrong = sorted(
            term
            for term, value in submitted.items()
            if term not in fitted or abs(value - fitted[term]) > 1e-6 * max(1.0, abs(fitted[term]))
        )
        if wrong:
            status = "fail"
            findings.append(f"coefficient(s) {', '.join(wrong)} differ from the declared model on the data")
    return _result(status, findings, record=check.record())


def check_file(
    file: ReleaseFile,
    content: bytes,
    data: pd.DataFrame | None,
    rules: Rules,
    policy: FilePolicy,
    past: tuple[Session, ReleaseScope] | None = None,
    source: DataSource | None = None,
    incidence: Incidence | None = None,
) -> dict[str, Any]:
    """The server's findings on one output (``status`` pass | review | fail, ``findings``, ``record``)."""
    if file.kind in (FileKind.figure, FileKind.text):
        return _result(
            "review",
            [
                f"{file.kind.value} outputs have no automated check: an output checker must read it",
                "no DP credit: a figure in a text or figure output is never treated as differentially "
                "private (a notebook's tre_lib.privacy value is a local preview); only a DP result the "
                "server computed and stored, attached by reference, is",
            ],
        )
    if source is not None and source.error:
        return _result("fail", [source.description], source=source.as_dict())
    if data is None:
        return _result("fail", ["no data was submitted to re-run the declared computation on"])
    if file.kind is FileKind.table:
        out = check_table(
            TableSpec.from_dict(file.spec), content, data, rules, policy, past, source, incidence
        )
    else:
        out = check_regression_output(RegressionSpec.from_dict(file.spec), content, data, rules)
        if source is not None:
            out["findings"].insert(0, source.description)
            if isinstance(out.get("record"), dict):
                out["record"]["source"] = source.as_dict()
    if source is not None and not source.recomputed:
        # Uploaded numbers can be padded or made up: never an automatic pass.
        out["no_view"] = NO_VIEW_REASON
        out["findings"].insert(0, NO_VIEW_REASON)
        if out["status"] == "pass":
            out["status"] = "review"
    claimed = file.client_check.get("status") if file.client_check else None
    if claimed is not None and claimed != out["status"]:
        out["findings"].append(
            f"the workspace's own pre-check said {claimed!r}; the server's re-check says {out['status']!r} "
            "(the server's result is the one that counts)"
        )
    out["client_status"] = claimed
    return out
