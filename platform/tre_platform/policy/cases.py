"""Golden allow/deny cases: policies are data, and so are the examples that pin their meaning.

``policies/cases/world.json`` describes a small world (organisations, users, datasets, projects,
agreements, release requests). Each case in ``policies/cases/{allow,deny}/*.json`` patches that world
and asks for one decision::

    {
      "description": "an expired accreditation stops a member reading",
      "patch": {"users.alice.accreditations.0.expires_on": "2025-05-31"},
      "request": {"action": "read_dataset", "user": "alice", "project": "P1", "dataset": "hes"},
      "expect": "deny",
      "reason": "expired on 2025-05-31",
      "policy_id": "accreditation.expired"
    }

``today`` defaults to the world's ``today``. A patch key is a dotted path (list items by index); a
null value removes the key. The tests and ``tre policy validate`` run every case.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tre_platform.policy.engine import Decision, PolicyEngine
from tre_platform.policy.facts import World

CASES_DIR = "cases"
WORLD_FILE = "world.json"


class CaseError(ValueError):
    """A golden case file is malformed; the message names the file."""


@dataclass(frozen=True)
class GoldenCase:
    path: Path
    description: str
    world: dict[str, Any]
    request: dict[str, Any]
    expect: str
    reason: str | None
    policy_id: str | None

    @property
    def name(self) -> str:
        return f"{self.path.parent.name}/{self.path.stem}"


@dataclass(frozen=True)
class CaseResult:
    case: GoldenCase
    decision: Decision
    problems: list[str]

    @property
    def passed(self) -> bool:
        return not self.problems


def apply_patch(world: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``world`` with each dotted path in ``patch`` set (or removed when the value is null)."""
    result = copy.deepcopy(world)
    for dotted, value in patch.items():
        parts = dotted.split(".")
        node: Any = result
        for part in parts[:-1]:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        last = parts[-1]
        if isinstance(node, list):
            index = int(last)
            if index == len(node):
                node.append(value)
            else:
                node[index] = value
        elif value is None:
            node.pop(last, None)
        else:
            node[last] = value
    return result


def load_cases(policies_dir: Path) -> list[GoldenCase]:
    """Every case under ``policies_dir/cases/{allow,deny}``, sorted by name."""
    root = policies_dir / CASES_DIR
    world = json.loads((root / WORLD_FILE).read_text(encoding="utf-8"))
    cases: list[GoldenCase] = []
    for expect in ("allow", "deny"):
        for path in sorted((root / expect).glob("*.json")):
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                request = dict(data["request"])
                request.setdefault("today", world.get("today"))
                case = GoldenCase(
                    path=path,
                    description=str(data["description"]),
                    world=apply_patch(world, data.get("patch", {})),
                    request=request,
                    expect=str(data["expect"]),
                    reason=data.get("reason"),
                    policy_id=data.get("policy_id"),
                )
            except (KeyError, ValueError, IndexError, TypeError) as error:
                raise CaseError(f"{path}: malformed golden case ({error!r})") from error
            if case.expect != expect:
                raise CaseError(f"{path}: expects {case.expect!r} but lives in {expect}/")
            if expect == "deny" and not case.reason:
                raise CaseError(f'{path}: a deny case must say which reason it expects ("reason")')
            cases.append(case)
    return cases


def run_case(engine: PolicyEngine, case: GoldenCase) -> CaseResult:
    """Decide ``case`` and list every way the decision differs from what the case expects."""
    world = World.from_dict(case.world)
    request = world.request(**case.request)
    decision = engine.evaluate(request)
    problems: list[str] = []
    if decision.effect != case.expect:
        problems.append(f"expected {case.expect}, got {decision.effect}: {decision.reasons}")
    if case.reason and not any(case.reason in reason for reason in decision.reasons):
        problems.append(f"no reason contains {case.reason!r}; reasons were {decision.reasons}")
    if case.policy_id and case.policy_id not in decision.policy_ids:
        problems.append(f"policy {case.policy_id!r} not among the determining policies {decision.policy_ids}")
    return CaseResult(case, decision, problems)
