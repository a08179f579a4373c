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
from tre_lib.indexing.matching import MatchError, MatchResult, match
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
    "IndexConflictError",
    "IndexKind",
    "IndexNotFoundError",
    "MatchError",
    "MatchQualityReport",
    "MatchResult",
    "MatchSpec",
    "ReferenceIndex",
    "ReferenceIndexError",
    "canonical_given_name",
    "evaluate_links",
    "format_postcode",
    "is_valid_nhs_number",
    "match",
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
