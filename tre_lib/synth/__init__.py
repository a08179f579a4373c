"""Seeded synthetic demo data: a population, addresses, geography, businesses and the datasets drawn on them.

Example:
    >>> from tre_lib.synth import generate_world, make_dataset
    >>> world = generate_world(2_000, seed=7)
    >>> records, truth = make_dataset(world, "hospital_episodes", 1_000, seed=1)
"""

from tre_lib.synth.datasets import DATASETS, CorruptionRates, DatasetSpec, make_dataset
from tre_lib.synth.world import REFERENCE_DATE, World, generate_world

__all__ = [
    "DATASETS",
    "REFERENCE_DATE",
    "CorruptionRates",
    "DatasetSpec",
    "World",
    "generate_world",
    "make_dataset",
]
