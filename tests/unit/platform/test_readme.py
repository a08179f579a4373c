"""The README stays true: its configuration table names every setting, and every CLI group exists."""

from __future__ import annotations

import re
from pathlib import Path

from typer.main import get_command

from tre_platform.cli import app
from tre_platform.settings import Settings

README = Path(__file__).resolve().parents[3] / "README.md"


def test_configuration_table_lists_every_setting() -> None:
    documented = set(re.findall(r"^\| `(TRE_[A-Z_]+)` \|", README.read_text(), flags=re.M))
    expected = {f"TRE_{name.upper()}" for name in Settings.model_fields}
    assert documented == expected


def test_every_cli_command_in_the_readme_exists() -> None:
    root = get_command(app)
    groups = set(root.commands)  # type: ignore[attr-defined]
    for match in re.finditer(r"^tre ([a-z-]+)(?: ([a-z-]+))?", README.read_text(), flags=re.M):
        group, command = match.group(1), match.group(2)
        assert group in groups, f"README mentions `tre {group}` which does not exist"
        sub = root.commands[group]  # type: ignore[attr-defined]
        if command and hasattr(sub, "commands"):
            assert command in sub.commands, f"README mentions `tre {group} {command}` which does not exist"
