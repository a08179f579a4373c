"""Domains talk through public names: no module imports another module's ``_private`` names.

(``lint-imports``, run by ``make lint``, proves the import graph has no circle between the domains and
that enforcement is one way in; import-linter cannot express private *names*, so this test does.)
"""

from __future__ import annotations

import ast
from pathlib import Path

import tre_platform

ROOT = Path(tre_platform.__file__).parent
#: Existing exceptions outside enforcement's domains, to be made public by their owners; never add to it.
KNOWN = {
    ("tre_platform.ui.pages.auth", "tre_platform.api.auth.router", "_set_cookies"),
    ("tre_platform.api.datasets.cli", "tre_platform.pipelines.cli", "_actor"),
    ("tre_platform.api.datasets.cli", "tre_platform.pipelines.cli", "_fail"),
}


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_module_imports_another_modules_private_names() -> None:
    found = set()
    for path in ROOT.rglob("*.py"):
        importer = _module(path)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tre_platform"):
                for alias in node.names:
                    if (
                        alias.name.startswith("_")
                        and not alias.name.startswith("__")
                        and node.module != importer
                    ):
                        found.add((importer, node.module, alias.name))
    assert found - KNOWN == set()
