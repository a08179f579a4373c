"""Fixtures of the disclosure tests: one local Spark session and one in-process Dask cluster per test run."""

from __future__ import annotations
