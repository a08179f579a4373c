"""Typed errors of the ingest pipeline."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tre_platform.errors import InvalidInput

if TYPE_CHECKING:
    from tre_platform.pipelines.validation import ValidationReport


class DeliveryInvalid(InvalidInput):
    """A delivery does not meet its dataset's registered schema; nothing was published.

    ``report`` lists every problem (column, kind, how many rows, the first rows where it occurs).
    """

    code = "delivery_invalid"

    def __init__(self, report: ValidationReport) -> None:
        super().__init__(report.summary(), field="delivery")
        self.report = report
