"""Errors a researcher sees in a workspace: one clear sentence saying what to do, never a stack trace."""

from __future__ import annotations

from typing import Any


class WorkspaceError(Exception):
    """Something asked of the workspace is not available to this project (or not configured).

    In a notebook, :func:`tre_lib.session` installs a handler so that this error prints its message only.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


def install_notebook_handler() -> bool:
    """In IPython/Jupyter, show a :class:`WorkspaceError` as its message instead of a traceback.

    Returns True when a handler was installed (False outside IPython).
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None:
        return False

    def _show(shell: Any, etype: type, value: BaseException, tb: Any, tb_offset: int | None = None) -> None:
        # Printed to stderr like an error, but as one readable line: the researcher needs the
        # message, not the internals of the library.
        import sys

        print(f"WorkspaceError: {value}", file=sys.stderr)

    shell.set_custom_exc((WorkspaceError,), _show)
    return True
