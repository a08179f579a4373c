"""Hatch build hook: compile tre_lib's optional C helper (HMAC-SHA256 over Arrow buffers) at install time.

The helper is ``tre_lib.pseudonymise._fasthmac`` (cffi API mode; source in
``tre_lib/pseudonymise/_fasthmac_build.py``). If it cannot be built (no C compiler, no OpenSSL headers:
Debian's ``libssl-dev``, which ``make setup`` installs) the install still succeeds with a warning and
``tre_lib.pseudonymise`` uses its pure-Python path, which gives the same output, only slower.
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

BUILDER = Path("tre_lib") / "pseudonymise" / "_fasthmac_build.py"


def _load_builder(root: Path) -> Any:
    # By path: importing the tre_lib package would pull in its runtime dependencies, absent at build time.
    spec = importlib.util.spec_from_file_location("_tre_fasthmac_build", root / BUILDER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FastHmacBuildHook(BuildHookInterface):  # type: ignore[misc]
    """Compile ``_fasthmac``: into the source tree for editable installs, into the wheel otherwise."""

    _tmp: str | None = None

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        root = Path(self.root)
        self._tmp = tempfile.mkdtemp(prefix="tre-fasthmac-")
        try:
            builder = _load_builder(root)
            if version == "editable":
                # An editable install imports tre_lib from the source tree, so the module goes there.
                builder.compile_into(root, Path(self._tmp) / "build")
                return
            built = builder.compile_into(Path(self._tmp) / "out", Path(self._tmp) / "build")
        except Exception as exc:  # any compiler or cffi failure: install the pure-Python path instead
            self.app.display_warning(
                f"tre: the fast HMAC helper was not compiled ({type(exc).__name__}: {exc}); "
                "pseudonymisation will use the slower pure-Python path. Install a C compiler and "
                "OpenSSL headers (Debian: apt-get install gcc libssl-dev) and reinstall to get it."
            )
            return
        build_data["force_include"][str(built)] = f"tre_lib/pseudonymise/{built.name}"
        build_data["pure_python"] = False
        build_data["infer_tag"] = True

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
