"""Match specifications: per index kind (and per dataset) keys, Splink comparisons, blocking and thresholds.

A :class:`MatchSpec` is data plus small factories that return Splink objects for the attributes a delivery
actually carries (a survey with no NHS number gets no NHS-number comparison, so no untrainable parameters).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import splink.comparison_level_library as cll
import splink.comparison_library as cl
from splink import block_on

Available = frozenset[str]
SplinkFactory = Callable[[Available], list[Any]]


@dataclass(frozen=True)
class MatchSpec:
    """How to match a delivery to a reference index.

    Attributes:
        kind: Index kind (demographic, business, address, geography, classification).
        columns: Delivery column -> index input column, for deliveries that name fields differently.
        record_id: Delivery column holding the record id (defaults to the frame's index).
        deterministic_rules: Ordered exact-key rules on normalised attributes; a record matching exactly
            one index entry on a rule is linked "deterministic". Rules whose attributes the delivery lacks
            are skipped.
        comparisons: Factory of Splink comparisons for the available attributes; ``None`` means
            deterministic matching only (geography, classification).
        blocking_rules: Factory of Splink blocking rules generating candidate pairs for prediction.
        em_blocking_rules: Factory of blocking rules, one expectation-maximisation session each.
        blocking_fields: The attributes of each prediction blocking rule (for the blocking-recall
            estimate in the report); ``None``: not estimated.
        term_frequency_columns: Columns whose exact-match levels use term-frequency adjustments.
        threshold_match_probability: Keep the best link only if its match probability is at least this.
        threshold_match_weight: If set, used instead of the probability threshold.
        review_match_probability: Lower threshold of clerical review: a record whose best candidate scores
            at least this but below the threshold is queued for a linkage reviewer (``None``: no queue).
        one_to_one: Link each index entry to at most one delivery record (as well as each record to at most
            one entry): right for a deduplicated index and a delivery with one record per entity (a
            register, a census), wrong for event data (several hospital episodes per person).
        on_unmatched: ``"add"`` gives unmatched records new index entries; ``"report"`` only reports them.
        backend: ``"duckdb"`` (default) or ``"spark"`` (pass ``spark_session``) for large deliveries.
        spark_session: The SparkSession for the Spark backend; it must load Splink's similarity jar
            (``splink.backends.spark.similarity_jar_location()``) for Jaro-Winkler.
        m_from_deterministic: Estimate m from the deterministic links as labels before EM refines it.
        min_labels: Fewest deterministic links needed to use them as labels.
        u_max_pairs: Pairs sampled to estimate u.
        training_records: Train on at most this many delivery records (a seeded random sample) against
            the whole index; every remaining record is still scored. Training cost grows with the
            delivery (EM compares each record with its block in the index), the model's parameters do not
            need millions of records, so a 1M delivery trains as fast as a 50k one. ``None``: all records.
        u_from_index: Estimate u on pairs of index entries (all non-matches: the index is deduplicated)
            instead of random delivery-index pairs, of which about 1/len(index) are true matches.
        u_min_index_pairs: Fewest index pairs needed for ``u_from_index`` (a smaller index falls back to
            delivery-index pairs).
        u_num_chunks: Chunks Splink splits u sampling into (1 disables its probe phase: far fewer Spark jobs
            on small data).
        deterministic_recall: Assumed recall of the deterministic rules, to estimate the prior.
        seed: Seed for u sampling (reproducible models).
        source: Label stored with index entries added from this delivery.
    """

    kind: str
    columns: Mapping[str, str] = field(default_factory=dict)
    record_id: str | None = None
    deterministic_rules: tuple[tuple[str, ...], ...] = ()
    comparisons: SplinkFactory | None = None
    blocking_rules: SplinkFactory | None = None
    em_blocking_rules: SplinkFactory | None = None
    blocking_fields: Callable[[Available], list[tuple[str, ...]]] | None = None
    term_frequency_columns: tuple[str, ...] = ()
    threshold_match_probability: float = 0.9
    threshold_match_weight: float | None = None
    review_match_probability: float | None = 0.5
    one_to_one: bool = False
    on_unmatched: Literal["add", "report"] = "report"
    backend: Literal["duckdb", "spark"] = "duckdb"
    spark_session: Any = None
    m_from_deterministic: bool = True
    min_labels: int = 25
    u_max_pairs: float = 5e5
    training_records: int | None = 10_000
    u_num_chunks: int = 1
    u_from_index: bool = True
    u_min_index_pairs: int = 1_000
    deterministic_recall: float = 0.85
    seed: int = 42
    source: str = "delivery"

    def with_overrides(self, **overrides: Any) -> MatchSpec:
        """Return a copy with some fields changed, e.g. ``spec.with_overrides(on_unmatched="add")``."""
        return replace(self, **overrides)

    def validate(self) -> None:
        """Check the spec's settings, raising ``ValueError`` with what to change."""
        if self.on_unmatched not in ("add", "report"):
            raise ValueError(f"on_unmatched must be 'add' or 'report', not {self.on_unmatched!r}.")
        if self.backend not in ("duckdb", "spark"):
            raise ValueError(f"backend must be 'duckdb' or 'spark', not {self.backend!r}.")
        if self.backend == "spark" and self.spark_session is None:
            raise ValueError("backend='spark' needs spark_session=<SparkSession with Splink's jar loaded>.")
        if not 0.0 < self.threshold_match_probability <= 1.0:
            raise ValueError("threshold_match_probability must be in (0, 1].")
        if self.review_match_probability is not None and not 0.0 < self.review_match_probability <= 1.0:
            raise ValueError(
                "review_match_probability must be in (0, 1] (at or above the threshold: no queue)."
            )
        if not 0.0 < self.deterministic_recall <= 1.0:
            raise ValueError("deterministic_recall must be in (0, 1].")


def _has(available: Available, *names: str) -> bool:
    return set(names) <= available


def dob_comparison(column: str = "dob") -> Any:
    """Date-of-birth comparison with a level for day and month transposed (a common keying error).

    Splink's stock ``DateOfBirthComparison`` scores 1980-03-07 vs 1980-07-03 only as "within a year"; a
    dedicated level lets the model learn that a swap is strong evidence of a match.
    """
    swap = (
        f"substr({column}_l, 1, 4) = substr({column}_r, 1, 4) AND "
        f"substr({column}_l, 6, 2) = substr({column}_r, 9, 2) AND "
        f"substr({column}_l, 9, 2) = substr({column}_r, 6, 2)"
    )
    return cl.CustomComparison(
        output_column_name=column,
        comparison_description="Date of birth",
        comparison_levels=[
            cll.NullLevel(column),
            cll.ExactMatchLevel(column).configure(label_for_charts="Exact match"),
            cll.CustomLevel(swap, label_for_charts="Day and month transposed"),
            cll.DamerauLevenshteinLevel(column, 1).configure(label_for_charts="One character different"),
            cll.AbsoluteDateDifferenceLevel(
                column, input_is_string=True, threshold=1, metric="year"
            ).configure(label_for_charts="Within a year"),
            cll.AbsoluteDateDifferenceLevel(
                column, input_is_string=True, threshold=10, metric="year"
            ).configure(label_for_charts="Within ten years"),
            cll.ElseLevel(),
        ],
    )


def _people() -> Any:
    from tre_lib.indexing.identifiers import load_declaration

    return load_declaration("demographic")


def _demographic_comparisons(available: Available) -> list[Any]:
    return list(_people().comparisons(available))


def _demographic_blocking(available: Available) -> list[Any]:
    return list(_people().blocking_rules(available))


def _demographic_em(available: Available) -> list[Any]:
    return list(_people().em_rules(available))


def _demographic_blocking_fields(available: Available) -> list[tuple[str, ...]]:
    return list(_people().blocking_fields(available))


def company_number_comparison(column: str = "company_number") -> Any:
    """Company-number comparison with a level for one digit wrong or two digits swapped.

    A one-keystroke error in an eight-digit number is common in returns keyed by hand; with only exact and
    "else" levels such a record's company number counts as strong evidence *against* its own company.
    """
    return cl.CustomComparison(
        output_column_name=column,
        comparison_description="Company number",
        comparison_levels=[
            cll.NullLevel(column),
            cll.ExactMatchLevel(column).configure(label_for_charts="Exact match"),
            cll.DamerauLevenshteinLevel(column, 1).configure(
                label_for_charts="One digit different or two transposed"
            ),
            cll.ElseLevel(),
        ],
    )


def business_name_comparison(column: str = "business_name") -> Any:
    """Business-name comparison: exact, then Jaro-Winkler bands, without term-frequency adjustment.

    Splink's ``NameComparison`` always adjusts the exact level by the name's frequency, which caps its
    evidence at log2(number of businesses): on an index of a few hundred businesses an exact name could
    never outweigh the prior. Normalised business names are nearly unique, and u estimated on pairs of
    index entries already prices the few shared ones.
    """
    return cl.CustomComparison(
        output_column_name=column,
        comparison_description="Business name",
        comparison_levels=[
            cll.NullLevel(column),
            cll.ExactMatchLevel(column).configure(label_for_charts="Exact match"),
            *(cll.JaroWinklerLevel(column, t) for t in (0.95, 0.88, 0.7)),
            cll.ElseLevel(),
        ],
    )


def _business_comparisons(available: Available) -> list[Any]:
    comparisons: list[Any] = [business_name_comparison("business_name")]
    if _has(available, "company_number"):
        comparisons.append(company_number_comparison("company_number"))
    if _has(available, "postcode"):
        comparisons.append(cl.PostcodeComparison("postcode"))
    if _has(available, "sic_code"):
        comparisons.append(cl.ExactMatch("sic_code"))
    return comparisons


def _business_blocking(available: Available) -> list[Any]:
    # The exact rules find most pairs; the prefix/suffix rules find a name with one typo (it keeps one of
    # its ends) when the company number is missing or mistyped too.
    rules = [
        block_on("business_name"),
        block_on("substr(business_name, 1, 8)"),
        block_on("substr(business_name, -8)"),
    ]
    if _has(available, "company_number"):
        rules += [
            block_on("company_number"),
            block_on("substr(company_number, 1, 5)", "substr(business_name, 1, 3)"),
        ]
    if _has(available, "postcode"):
        rules.append(block_on("postcode"))
    return rules


def _business_em(available: Available) -> list[Any]:
    # Each session estimates m for the comparisons outside its rule: blocking on the name trains the
    # company number (and postcode), blocking on the company number trains the name.
    rules = [block_on("business_name")]
    if _has(available, "company_number"):
        rules.append(block_on("company_number"))
    if _has(available, "postcode"):
        rules.append(block_on("postcode"))
    return rules


def _address_comparisons(available: Available) -> list[Any]:
    return [
        cl.ExactMatch("house_number"),
        cl.NameComparison("street"),
        cl.PostcodeComparison("postcode"),
        cl.ExactMatch("town"),
    ]


def _address_blocking(available: Available) -> list[Any]:
    return [block_on("postcode"), block_on("street", "town")]


# The person index: identifiers, keys, comparisons, blocking and EM sessions all derive from its
# declaration (policies/indexes/demographic.toml) and the identifiers each delivery carries.
DEMOGRAPHIC_SPEC = MatchSpec(
    kind="demographic",
    deterministic_rules=_people().deterministic_keys,
    comparisons=_demographic_comparisons,
    blocking_rules=_demographic_blocking,
    em_blocking_rules=_demographic_em,
    blocking_fields=_demographic_blocking_fields,
    term_frequency_columns=_people().term_frequency,
)
BUSINESS_SPEC = MatchSpec(
    kind="business",
    deterministic_rules=(("company_number",), ("business_name", "postcode")),
    comparisons=_business_comparisons,
    blocking_rules=_business_blocking,
    em_blocking_rules=_business_em,
    threshold_match_probability=0.8,
)
ADDRESS_SPEC = MatchSpec(
    kind="address",
    deterministic_rules=(("uprn",), ("house_number", "street", "postcode")),
    comparisons=_address_comparisons,
    blocking_rules=_address_blocking,
    em_blocking_rules=_address_blocking,
    term_frequency_columns=("street",),
)
GEOGRAPHY_SPEC = MatchSpec(kind="geography", deterministic_rules=(("postcode",),))
CLASSIFICATION_SPEC = MatchSpec(kind="classification", deterministic_rules=(("code",),))

DEFAULT_SPECS: dict[str, MatchSpec] = {
    "demographic": DEMOGRAPHIC_SPEC,
    "business": BUSINESS_SPEC,
    "address": ADDRESS_SPEC,
    "geography": GEOGRAPHY_SPEC,
    "classification": CLASSIFICATION_SPEC,
}

# The demo datasets' record id columns and their per-dataset thresholds.
DATASET_SPECS: dict[str, MatchSpec] = {
    "hospital_episodes": DEMOGRAPHIC_SPEC.with_overrides(record_id="episode_id", source="hospital_episodes"),
    "gp_registrations": DEMOGRAPHIC_SPEC.with_overrides(
        record_id="registration_id", source="gp_registrations"
    ),
    "labour_force_survey": DEMOGRAPHIC_SPEC.with_overrides(
        record_id="respondent_id", source="labour_force_survey", threshold_match_probability=0.95
    ),
    "business_register": BUSINESS_SPEC.with_overrides(record_id="reference", source="business_register"),
    "product_safety_incidents": BUSINESS_SPEC.with_overrides(
        record_id="incident_id", source="product_safety_incidents"
    ),
    "product_test_failures": BUSINESS_SPEC.with_overrides(
        record_id="test_id", source="product_test_failures"
    ),
}


def spec_for(kind_or_dataset: str, **overrides: Any) -> MatchSpec:
    """The default spec for an index kind or a demo dataset name, with optional overrides.

    Raises:
        KeyError: If the name is neither a kind nor a known dataset.
    """
    if kind_or_dataset in DATASET_SPECS:
        base = DATASET_SPECS[kind_or_dataset]
    elif kind_or_dataset in DEFAULT_SPECS:
        base = DEFAULT_SPECS[kind_or_dataset]
    else:
        raise KeyError(
            f"No match spec for {kind_or_dataset!r}; "
            f"use one of {sorted(DEFAULT_SPECS)} or {sorted(DATASET_SPECS)}."
        )
    return base.with_overrides(**overrides) if overrides else base
