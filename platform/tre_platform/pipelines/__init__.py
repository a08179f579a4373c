"""Data pipelines: ingest a delivery into the research zone (validate, link, pseudonymise, publish).

Example:
    >>> from tre_platform.pipelines import ingest
    >>> version = ingest(session, Actor.of(owner), "hospital_episodes", "landing/episodes.csv")
"""

from tre_platform.pipelines.errors import DeliveryInvalid
from tre_platform.pipelines.ingest import ENGINES, STAGES, choose_engine, find_dataset, ingest, rich_progress
from tre_platform.pipelines.validation import Problem, ValidationReport

__all__ = [
    "ENGINES",
    "STAGES",
    "DeliveryInvalid",
    "Problem",
    "ValidationReport",
    "choose_engine",
    "find_dataset",
    "ingest",
    "rich_progress",
]
