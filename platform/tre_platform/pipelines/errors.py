"""Typed errors of the ingest pipeline.

Every refusal of a delivery is a :class:`DeliveryError` (so a caller such as the upload page can catch the
one family); its subclasses say why: too large (HTTP 413), empty, or invalid against the schema.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tre_platform.errors import InvalidInput

if TYPE_CHECKING:
    from tre_platform.pipelines.validation import ValidationReport


class DeliveryError(InvalidInput):
    """A delivery was refused; nothing was stored for it and nothing was published."""

    code = "delivery_refused"


class DeliveryTooLarge(DeliveryError):
    """The delivery is larger than the configured upload limit (``TRE_MAX_UPLOAD_BYTES``)."""

    status_code = 413
    code = "too_large"

    def __init__(self, max_bytes: int, size: int | None = None) -> None:
        got = f"{size} bytes" if size is not None else f"more than {max_bytes} bytes"
        super().__init__(
            f"the delivery is {got}; the limit is {max_bytes} bytes (TRE_MAX_UPLOAD_BYTES): "
            "split it into smaller deliveries or ask an administrator to raise the limit",
            field="delivery",
        )
        self.max_bytes = max_bytes
        self.size = size


class DeliveryEmpty(DeliveryError):
    """The delivery has no bytes at all."""

    code = "empty_file"

    def __init__(self, filename: str) -> None:
        super().__init__(
            f"{filename} is empty (0 bytes); send the file with its header row and data", field="delivery"
        )


class DeliveryInvalid(DeliveryError):
    """A delivery does not meet its dataset's registered schema; nothing was published.

    ``report`` lists every problem (column, kind, how many rows, the first rows where it occurs).
    """

    code = "delivery_invalid"

    def __init__(self, report: ValidationReport) -> None:
        super().__init__(report.summary(), field="delivery")
        self.report = report
