"""One local Spark session for the quality tests (session scoped)."""

from __future__ import annotations
