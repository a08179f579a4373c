"""Linking a delivery's identifiers to the reference indexes (the linkage zone).

The dataset's identifier columns are grouped by the index they map to; each group is matched with
:func:`tre_lib.indexing.match` (deterministic keys first, then Splink) and becomes one ``<kind>_id``
column holding the index's surrogate id. A delivery column is fed to the matcher under the name of the
index input it carries (``date_of_birth`` is the demographic index's ``dob``); other delivery columns that
carry an input of the same index (a ``postcode`` mapped to the address index, a ``sex`` column) are used
as supporting evidence for that match too, since the index holds them.

This module adapts the matching service to what a delivery actually carries: a Splink model is trained
only when the attributes its comparisons need are present, and a group with none of the deterministic
keys is matched on all the attributes it has, exactly (a postcode alone is ambiguous for an address and is
then reported unmatched rather than guessed).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from splink.internals.exceptions import EMTrainingException

from tre_lib.indexing import (
    KIND_SCHEMAS,
    SURROGATE_ID,
    IndexNotFoundError,
    MatchSpec,
    ReferenceIndex,
    match,
    model_path_for,
    normalise_records,
    spec_for,
)
from tre_lib.indexing.identifiers import declared_kinds, load_declaration
from tre_platform.errors import InvalidInput
from tre_platform.pipelines.validation import ColumnRule

ROW = "_row"
#: The clerical-review queue of a group, beside its charts in the linkage zone's reports directory.
REVIEW_QUEUE = "review_queue.parquet"
#: Below this many rows, Splink's Spark backend samples u in one chunk.
SMALL_FOR_SPARK = 100_000

#: Common delivery column names for index inputs (a column named as the input itself always works).
ALIASES: dict[str, str] = {
    "date_of_birth": "dob",
    "birth_date": "dob",
    "forename": "given_name",
    "first_name": "given_name",
    "surname": "family_name",
    "last_name": "family_name",
    "nino": "ni_number",
    "national_insurance_number": "ni_number",
    "company_name": "business_name",
    "sic": "sic_code",
    "post_code": "postcode",
}

#: Normalised attributes Splink's comparisons for each kind need (tre_lib.indexing.spec); without them only
#: deterministic keys are used.
SPLINK_NEEDS: dict[str, frozenset[str]] = {
    "business": frozenset({"business_name"}),
    "address": frozenset({"house_number", "street", "postcode", "town"}),
}


def input_name(column: str, kind: str, maps_to: str | None = None) -> str | None:
    """The index input a delivery column carries for ``kind``, or None.

    An explicit ``maps_to`` wins; otherwise the column's name, or an alias the index's declaration
    (``policies/indexes/<kind>.toml``) or :data:`ALIASES` gives it.
    """
    inputs = KIND_SCHEMAS[kind].inputs
    if maps_to is not None:
        return maps_to if maps_to in inputs else None
    if kind in declared_kinds():
        return load_declaration(kind).identifier_for(column)
    name = ALIASES.get(column, column)
    return name if name in inputs else None


def id_column(kind: str) -> str:
    """The research-zone column replacing an identifier group: ``<kind>_id``."""
    return f"{kind}_id"


@dataclass(frozen=True)
class IdentifierGroup:
    """The identifier columns mapped to one index, and the other columns used as evidence."""

    kind: str
    columns: dict[str, str]
    supporting: dict[str, str] = field(default_factory=dict)
    unmapped: tuple[str, ...] = ()
    #: Date formats (strptime) of the columns whose schema declares one.
    formats: dict[str, str] = field(default_factory=dict)

    @property
    def id_column(self) -> str:
        return id_column(self.kind)

    @property
    def inputs(self) -> dict[str, str]:
        return {**self.supporting, **self.columns}


def identifier_groups(rules: Sequence[ColumnRule]) -> list[IdentifierGroup]:
    """Group a schema's identifier columns by the index each maps to (schema order)."""
    kinds: list[str] = []
    for rule in rules:
        if rule.identifier and rule.index and rule.index not in kinds:
            kinds.append(rule.index)
    groups = []
    for kind in kinds:
        members = [r for r in rules if r.identifier and r.index == kind]
        columns = {r.name: name for r in members if (name := input_name(r.name, kind, r.maps_to))}
        taken = set(columns.values())
        supporting: dict[str, str] = {}
        for rule in rules:
            name = input_name(rule.name, kind, rule.maps_to if rule.index in (None, kind) else None)
            if rule.index != kind and name is not None and name not in taken:
                supporting[rule.name] = name
                taken.add(name)
        unmapped = tuple(r.name for r in members if r.name not in columns)
        formats = {r.name: r.format for r in rules if r.format and r.name in {**columns, **supporting}}
        groups.append(IdentifierGroup(kind, columns, supporting, unmapped, formats))
    return groups


def index_directory(indexes_root: Path, kind: str) -> Path:
    return indexes_root / kind


def _spec(
    group: IdentifierGroup,
    frame: pd.DataFrame,
    *,
    dataset: str,
    threshold: float,
    on_unmatched: str,
    backend: str,
    spark: Any,
) -> tuple[MatchSpec, list[str]]:
    """The matching spec for a group, adapted to the attributes the delivery carries."""
    notes: list[str] = []
    base = spec_for(group.kind)
    attrs = normalise_records(group.kind, frame.rename(columns=group.inputs))
    available = {c for c in attrs.columns if attrs[c].notna().any()}
    if group.kind in declared_kinds():
        declaration = load_declaration(group.kind)
        raw = frame.rename(columns=group.inputs)
        for name, share in declaration.blanked(raw, attrs).items():
            if share > declaration.max_blanked_share:
                column = next((c for c, n in group.inputs.items() if n == name), name)
                notes.append(
                    f"FINDING: column {column!r} ({name}): the {declaration.get(name).normaliser} normaliser "
                    f"could not read {share:.0%} of its values, which were not used for matching; check the "
                    f"column's shape (a date needs its format in the schema)"
                )
    overrides: dict[str, Any] = {
        "record_id": ROW,
        "threshold_match_probability": threshold,
        "on_unmatched": on_unmatched,
        "source": dataset,
        "columns": {},
    }
    needs = SPLINK_NEEDS.get(group.kind)
    if group.kind in declared_kinds() and base.comparisons is not None:
        # A declared index trains Splink on whichever identifiers the delivery carries: two comparisons
        # are the fewest EM can train (each session trains the comparisons outside its blocking rule).
        compared = {c.create_output_column_name() for c in base.comparisons(frozenset(available))}
        needs = frozenset(compared) if len(compared) >= 2 else frozenset({"two comparable identifiers"})
    if base.comparisons is not None and (needs is None or not needs <= available):
        overrides["comparisons"] = None
        missing = sorted((needs or frozenset()) - available)
        notes.append(f"probabilistic matching skipped: the delivery lacks {', '.join(missing)}")
    elif base.comparisons is not None and backend == "spark":
        overrides["backend"] = "spark"
        overrides["spark_session"] = spark
        if len(frame) < SMALL_FOR_SPARK:
            # Splink's u-sampling probe phase is a dozen Spark jobs; on a small delivery one chunk is enough.
            overrides["u_num_chunks"] = 1
    rules = [rule for rule in base.deterministic_rules if set(rule) <= available]
    if not rules and available:
        # No standard key: match exactly on everything the delivery has (given_name is covered by its
        # canonical form).
        fallback = tuple(sorted(available - {"given_name"}))
        overrides["deterministic_rules"] = (fallback,)
        notes.append(f"deterministic key: {'+'.join(fallback)} (the standard keys are not in the delivery)")
    return base.with_overrides(**overrides), notes


@dataclass
class LinkageResult:
    """Index ids per delivery row (``_row`` and one ``<kind>_id`` per group) and the reports."""

    links: pd.DataFrame
    reports: dict[str, dict[str, Any]]


def link(
    identifiers: pd.DataFrame,
    groups: Sequence[IdentifierGroup],
    *,
    dataset: str,
    indexes_root: Path,
    charts_root: Path | None,
    threshold: float,
    on_unmatched: str,
    backend: str = "duckdb",
    spark: Any = None,
    truth: pd.DataFrame | None = None,
) -> LinkageResult:
    """Match every identifier group of a delivery to its reference index.

    Args:
        identifiers: ``_row`` and the raw identifier (and supporting) columns of every row.
        groups: From :func:`identifier_groups`.
        dataset: Dataset name (labels new index entries).
        indexes_root: ``linkage/indexes``.
        charts_root: Where each group's charts go (``<charts_root>/<kind>/``).
        threshold: The dataset's Splink match-probability threshold.
        on_unmatched: ``"add"`` or ``"report"``.
        backend: Splink backend, ``"duckdb"`` or ``"spark"``.
        spark: The SparkSession for the Spark backend.
        truth: Optional ``row`` and ``<kind>_id`` columns: the surrogate id each row should get (demo data);
            adds precision and recall to the reports.

    Raises:
        InvalidInput: An index the dataset maps to does not exist and unmatched records are only reported.
    """
    links = pd.DataFrame({ROW: identifiers[ROW].to_numpy(dtype="int64")})
    reports: dict[str, dict[str, Any]] = {}
    for group in groups:
        directory = index_directory(indexes_root, group.kind)
        try:
            index = ReferenceIndex.load(directory)
        except IndexNotFoundError:
            if on_unmatched != "add":
                raise InvalidInput(
                    f"there is no {group.kind} reference index at {directory}; build it first "
                    f"(`tre up --demo` builds the demo indexes), or register the dataset with "
                    f"on_unmatched=add so unmatched records start one",
                    field="dataset",
                ) from None
            empty = pd.DataFrame({c: pd.Series([], dtype=object) for c in KIND_SCHEMAS[group.kind].inputs})
            index, _ = ReferenceIndex.create(group.kind, directory, empty, source=f"empty:{dataset}")  # type: ignore[arg-type]
        frame = identifiers[[ROW, *group.inputs]].copy()
        for column, fmt in group.formats.items():
            # The schema's declared format, so the normaliser sees ISO dates whatever the delivery used.
            parsed = pd.to_datetime(frame[column], format=fmt, errors="coerce")
            frame[column] = parsed.dt.strftime("%Y-%m-%d").astype(object).where(parsed.notna(), None)
        spec, notes = _spec(
            group,
            frame,
            dataset=dataset,
            threshold=threshold,
            on_unmatched=on_unmatched,
            backend=backend,
            spark=spark,
        )
        expected = None
        if truth is not None and group.id_column in truth.columns:
            expected = pd.Series(truth[group.id_column].to_numpy(), index=truth["row"].to_numpy())
        delivery = frame.rename(columns=group.inputs)
        charts_dir = (charts_root / group.kind) if charts_root is not None else None
        # The dataset's trained model, kept beside the index: a re-ingest reuses it when it fits the
        # delivery's attributes instead of retraining (training is most of Splink's time).
        model_path = model_path_for(index, spec)
        try:
            result = match(
                delivery, index, spec, charts_dir=charts_dir, expected=expected, model_path=model_path
            )
        except EMTrainingException as exc:
            # A small delivery can leave an EM session with no pairs; its deterministic links still stand.
            notes.append(f"probabilistic matching skipped: too few records to train a model ({exc})"[:300])
            spec = spec.with_overrides(comparisons=None)
            result = match(delivery, index, spec, charts_dir=charts_dir, expected=expected)
        if result.review is not None and len(result.review) and charts_dir is not None:
            # The review queue holds identifiers: it stays in the linkage zone beside the reports.
            charts_dir.mkdir(parents=True, exist_ok=True)
            result.review.to_parquet(charts_dir / REVIEW_QUEUE, index=False)
        ids = result.links.set_index("record_id")[SURROGATE_ID]
        links[group.id_column] = ids.reindex(links[ROW].to_numpy()).to_numpy()
        report = json.loads(result.report.to_json())
        report.update(
            {
                "id_column": group.id_column,
                "columns": group.columns,
                "supporting": group.supporting,
                "unmapped": list(group.unmapped),
                "notes": [n for n in notes if not n.startswith("FINDING: ")],
                "findings": [n.removeprefix("FINDING: ") for n in notes if n.startswith("FINDING: ")],
                "index_entries": len(index),
            }
        )
        reports[group.kind] = report
    return LinkageResult(links=links, reports=reports)


def rewrite_paths(reports: Mapping[str, Any], old: Path, new: Path) -> dict[str, Any]:
    """The reports with chart paths moved from a staging directory to the published one."""
    text = json.dumps(reports)
    return dict(json.loads(text.replace(json.dumps(str(old))[1:-1], json.dumps(str(new))[1:-1])))
