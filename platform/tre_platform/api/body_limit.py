"""Counting a request body as it streams in, so an oversized one is refused before it is held or spooled."""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import Message, Receive


def capped_receive(receive: Receive, limit: int, too_large: Callable[[], Exception]) -> Receive:
    """``receive``, raising ``too_large()`` as soon as the body it has passed on exceeds ``limit`` bytes.

    Used by the application-wide body limit (``api.app.BodySizeLimit``) and by the airlock's upload route
    (``api.releases.router.CappedUploadRoute``), each with its own limit and message.
    """
    received = 0

    async def counting() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise too_large()
        return message

    return counting
