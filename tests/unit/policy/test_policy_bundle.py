"""The bundle is validated at load: a broken file is refused with its name and line."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tre_platform.policy import PolicyBundleError, PolicyEngine, load_bundle
from tre_platform.policy.facts import ACTIONS
from tre_platform.settings import REPO_ROOT

SOURCE = REPO_ROOT / "policies" / "cedar"


def _copy(tmp_path: Path) -> Path:
    target = tmp_path / "policies" / "cedar"
    shutil.copytree(SOURCE, target)
    return target


def _edit(path: Path, old: str, new: str) -> int:
    """Replace ``old`` once and return the (1-based) line where the replacement starts."""
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return text[: text.index(old)].count("\n") + 1


def test_the_shipped_bundle_loads_with_every_action_of_the_engine() -> None:
    bundle = load_bundle(REPO_ROOT / "policies")
    declared = set(re.findall(r'^action "?(\w+)"? (?:in|appliesTo)', str(bundle.schema), re.MULTILINE))
    assert declared == set(ACTIONS)
    assert all(p.reason for p in bundle.policies.values())
    assert {p.effect for p in bundle.policies.values()} == {"permit", "forbid"}
    assert re.fullmatch(r"[0-9a-f]{64}", bundle.hash)


def test_the_bundle_hash_changes_with_any_file_and_only_then(tmp_path: Path) -> None:
    directory = _copy(tmp_path)
    first = load_bundle(directory.parent).hash
    assert load_bundle(directory.parent).hash == first
    assert first == load_bundle(REPO_ROOT / "policies").hash
    _edit(directory / "10_account.cedar", "is disabled", "has been disabled")
    assert load_bundle(directory.parent).hash != first


def _syntax_error(d: Path) -> tuple[str, int]:
    line = _edit(
        d / "30_project.cedar",
        "when { context.today < context.project.start_date };",
        "when { context.today < };",
    )
    return "30_project.cedar", line


def _unknown_attribute(d: Path) -> tuple[str, int]:
    line = _edit(
        d / "30_project.cedar",
        "context.project.end_date < context.today",
        "context.project.finish_date < context.today",
    )
    return "30_project.cedar", line


def _unknown_entity_type(d: Path) -> tuple[str, int]:
    path = d / "10_account.cedar"
    lines = path.read_text().count("\n")
    path.write_text(
        path.read_text()
        + '\n@id("robots")\n@reason("no robots")\nforbid (principal is Robot, action, resource);\n'
    )
    return "10_account.cedar", lines + 4


def _type_error(d: Path) -> tuple[str, int]:
    _edit(
        d / "40_datasets.cedar",
        "when { resource.tier > context.project.max_tier };",
        'when { resource.tier > "three" };',
    )
    # Cedar names no token for a type error: the error points at the policy's first line.
    text = (d / "40_datasets.cedar").read_text()
    return "40_datasets.cedar", text[: text.index('@id("tier.project")')].count("\n") + 1


def _schema_syntax_error(d: Path) -> tuple[str, int]:
    line = _edit(d / "tre.cedarschema", "  tier: Long,\n", "  tier: Long\n  oops oops,\n")
    return "tre.cedarschema", line + 1


def _schema_unknown_type(d: Path) -> tuple[str, int]:
    line = _edit(d / "tre.cedarschema", "  tier: Long,\n", "  tier: Lung,\n")
    return "tre.cedarschema", line


def _missing_reason(d: Path) -> tuple[str, int]:
    line = _edit(d / "10_account.cedar", '@reason("the account of {user} is disabled")\n', "")
    return "10_account.cedar", line - 1


def _duplicate_id(d: Path) -> tuple[str, int]:
    _edit(d / "30_project.cedar", '@id("project.ended")', '@id("account.disabled")')
    text = (d / "30_project.cedar").read_text()
    return "30_project.cedar", text[: text.index('@id("account.disabled")')].count("\n") + 1


BREAKAGES: dict[str, Callable[[Path], tuple[str, int]]] = {
    "syntax error": _syntax_error,
    "unknown attribute": _unknown_attribute,
    "unknown entity type": _unknown_entity_type,
    "type error": _type_error,
    "schema syntax error": _schema_syntax_error,
    "schema unknown type": _schema_unknown_type,
    "missing @reason": _missing_reason,
    "duplicate @id": _duplicate_id,
}


@pytest.mark.parametrize("breakage", list(BREAKAGES), ids=list(BREAKAGES))
def test_a_broken_bundle_is_refused_naming_file_and_line(tmp_path: Path, breakage: str) -> None:
    directory = _copy(tmp_path)
    file_name, line = BREAKAGES[breakage](directory)
    with pytest.raises(PolicyBundleError) as raised:
        PolicyEngine.load(directory.parent)
    error = raised.value
    assert error.file is not None and error.file.name == file_name
    assert error.line == line, error.message
    assert f"{file_name}:{line}:" in error.message
    assert "tre policy validate" in error.message


def test_an_empty_or_missing_bundle_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PolicyBundleError, match="no policy directory"):
        load_bundle(tmp_path / "nowhere")
    (tmp_path / "cedar").mkdir()
    with pytest.raises(PolicyBundleError, match=r"exactly one \.cedarschema"):
        load_bundle(tmp_path)
    shutil.copy(SOURCE / "tre.cedarschema", tmp_path / "cedar")
    with pytest.raises(PolicyBundleError, match=r"no \.cedar policy files"):
        load_bundle(tmp_path)
