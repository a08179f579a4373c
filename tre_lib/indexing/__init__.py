"""Linkage zone: reference indexes with random stable surrogate ids, and the matching service.

Example:
    >>> from tre_lib.indexing import ReferenceIndex, match, spec_for
    >>> index = ReferenceIndex.load("/secure/indexes/demographic")
    >>> result = match(delivery, index, spec_for("hospital_episodes", on_unmatched="add"))
    >>> result.report.to_json()
"""

from tre_lib.indexing.index import (
    INDEX_KINDS,
    KIND_SCHEMAS,
    SURROGATE_ID,
    IndexConflictError,
    IndexKind,
    IndexNotFoundError,
    ReferenceIndex,
    ReferenceIndexError,
    new_surrogate_ids,
    normalise_records,
)
from tre_lib.indexing.matching import (
    AttributeLinks,
    Duplicates,
    MatchError,
    MatchResult,
    assign_links,
    find_duplicates,
    link_attributes,
    load_model,
    match,
    model_path_for,
)
from tre_lib.indexing.normalise import (
    canonical_given_name,
    format_postcode,
    is_valid_nhs_number,
    normalise_business_name,
    normalise_company_number,
    normalise_date,
    normalise_name,
    normalise_nhs_number,
    normalise_ni_number,
    normalise_postcode,
    normalise_sex,
)
from tre_lib.indexing.report import MatchQualityReport, evaluate_links
from tre_lib.indexing.spec import DATASET_SPECS, DEFAULT_SPECS, MatchSpec, spec_for

__all__ = [
    "DATASET_SPECS",
    "DEFAULT_SPECS",
    "INDEX_KINDS",
    "KIND_SCHEMAS",
    "SURROGATE_ID",
    "AttributeLinks",
    "Duplicates",
    "IndexConflictError",
    "IndexKind",
    "IndexNotFoundError",
    "MatchError",
    "MatchQualityReport",
    "MatchResult",
    "MatchSpec",
    "ReferenceIndex",
    "ReferenceIndexError",
    "assign_links",
    "canonical_given_name",
    "evaluate_links",
    "find_duplicates",
    "format_postcode",
    "is_valid_nhs_number",
    "link_attributes",
    "load_model",
    "match",
    "model_path_for",
    "new_surrogate_ids",
    "normalise_business_name",
    "normalise_company_number",
    "normalise_date",
    "normalise_name",
    "normalise_nhs_number",
    "normalise_ni_number",
    "normalise_postcode",
    "normalise_records",
    "normalise_sex",
    "spec_for",
]
