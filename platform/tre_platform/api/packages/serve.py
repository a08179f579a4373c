"""The mirror process: pypiserver over the wheelhouse, read-only, no fallback (``python -m`` this module).

pypiserver is built here as a WSGI app rather than run through its command line so that uploads and
removals are refused outright (an authenticator that never accepts), whatever a client sends.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from tre_platform.api.packages.mirror import wheelhouse
from tre_platform.settings import get_settings

log = logging.getLogger("tre.mirror")


def _refuse_everyone(username: str, password: str) -> bool:
    """Nobody may upload to or remove from the mirror: wheels arrive only through the control plane."""
    return False


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Handler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s %s", self.address_string(), format % args)


def make_app() -> Any:
    """The pypiserver WSGI app over the wheelhouse: downloads and listings open, updates refused."""
    import pypiserver

    settings = get_settings()
    return pypiserver.app(
        roots=[wheelhouse(settings)],
        authenticate=["update"],
        auther=_refuse_everyone,
        disable_fallback=True,
        hash_algo="sha256",
        backend_arg="simple-dir",  # read the directory on every request: a new wheel is seen at once
    )


#: Given by ``tre up``: the mirror stops when the process that started it is gone, however it ended.
WITH_PARENT = "--exit-with-parent"


def _stop_when_orphaned(server: WSGIServer, parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    log.warning("the process that started the mirror is gone; stopping")
    server.shutdown()


def main(argv: list[str] | None = None) -> None:
    """Serve the mirror on 127.0.0.1:``package_mirror_port`` until killed (or, with
    ``--exit-with-parent``, until the process that started it ends)."""
    logging.basicConfig(level=logging.WARNING)
    args = sys.argv[1:] if argv is None else argv
    settings = get_settings()
    server = make_server(
        "127.0.0.1", settings.package_mirror_port, make_app(), server_class=_Server, handler_class=_Handler
    )
    if WITH_PARENT in args:
        threading.Thread(
            target=_stop_when_orphaned, args=(server, os.getppid()), name="mirror-parent", daemon=True
        ).start()
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":  # pragma: no cover
    main()
