"""Data pipelines: ingest a delivery into the research zone (validate, link, pseudonymise, publish).

Example:
    >>> from tre_platform.pipelines import ingest
    >>> version = ingest(session, Actor.of(owner), "hospital_episodes", "landing/episodes.csv")
"""

from tre_platform.pipelines.delivery import DeliveryUpload, MultipartUpload, StoredDelivery, store_upload
from tre_platform.pipelines.errors import DeliveryEmpty, DeliveryError, DeliveryInvalid, DeliveryTooLarge
from tre_platform.pipelines.ingest import (
    ENGINES,
    STAGES,
    check_can_ingest,
    choose_engine,
    find_dataset,
    ingest,
    ingest_upload,
    rich_progress,
)
from tre_platform.pipelines.validation import Problem, ValidationReport

__all__ = [
    "ENGINES",
    "STAGES",
    "DeliveryEmpty",
    "DeliveryError",
    "DeliveryInvalid",
    "DeliveryTooLarge",
    "DeliveryUpload",
    "MultipartUpload",
    "Problem",
    "StoredDelivery",
    "ValidationReport",
    "check_can_ingest",
    "choose_engine",
    "find_dataset",
    "ingest",
    "ingest_upload",
    "rich_progress",
    "store_upload",
]
