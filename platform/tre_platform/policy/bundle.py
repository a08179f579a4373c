"""Loading the policy bundle: the Cedar schema and policies under ``policies/cedar/``.

A bundle is validated completely before it is used: the schema parses, every policy file parses and
type-checks against the schema, and every policy carries a unique ``@id`` and a ``@reason``. A bundle
that fails any of these raises :class:`PolicyBundleError` naming the file and line, so the control
plane refuses to start rather than run with policies nobody checked.

Cedar reports *what* is wrong but not *where* (cedarpy's errors carry no source positions), so this
module splits each file into its statements itself and maps an error back to a line (see
:func:`split_statements`).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cedarpy

from tre_platform.errors import TreError
from tre_platform.policy.compiled import action_ancestors

SCHEMA_SUFFIX = ".cedarschema"
POLICY_SUFFIX = ".cedar"
CEDAR_DIR = "cedar"
_POLICY_ID = re.compile(r"\bpolicy(\d+)\b")
_POSITIONAL_PREFIX = re.compile(r"for policy `policy\d+`, ")
_UNKNOWN_TYPES = re.compile(r"failed to resolve types?: (.+)$")


class PolicyBundleError(TreError):
    """The policy bundle cannot be used; ``file`` and ``line`` say where the problem is."""

    status_code = 500
    code = "policy_bundle_invalid"

    def __init__(self, message: str, *, file: Path | None = None, line: int | None = None) -> None:
        where = ""
        if file is not None:
            where = f"{file}:{line}: " if line is not None else f"{file}: "
        super().__init__(
            f"{where}{message} (fix the policy bundle and restart; `tre policy validate` checks it)"
        )
        self.file = file
        self.line = line
        self.detail = message


@dataclass(frozen=True)
class Statement:
    """One policy statement (annotations included) of a file, with the line it starts on."""

    text: str
    line: int
    #: Source offset of the statement's first character, for mapping later lines.
    offset: int


@dataclass(frozen=True)
class PolicyInfo:
    """What the engine knows about one policy: its id, effect, reason template and where it lives."""

    id: str
    effect: str  # "permit" | "forbid"
    reason: str
    file: str
    line: int
    #: The roles a permit names in its principal scope (``principal in Role::"x"``); empty for forbids.
    roles: tuple[str, ...] = ()
    #: The actions (or action groups) the policy's scope names; empty means every action.
    actions: tuple[str, ...] = ()
    #: Whether the policy has a ``when``/``unless`` condition (else its scope alone decides it).
    conditional: bool = True
    #: Whether the scope names at most roles (``principal in Role::"x"``), actions and the resource's
    #: type: then, without conditions, whether the policy applies depends on those alone.
    scope_by_role: bool = False
    #: The policy's own text (annotations included).
    source: str = ""


@dataclass(frozen=True)
class PolicyBundle:
    """A validated schema and policy set, ready to evaluate."""

    directory: Path
    schema: cedarpy.Schema
    policy_set: cedarpy.PolicySet
    #: The permit policies alone: tells a deny by default (no permit applies) from a deny by a forbid.
    permit_set: cedarpy.PolicySet
    policies: dict[str, PolicyInfo]
    #: SHA-256 over the schema and policy files, sorted by name: identifies the exact rules applied.
    hash: str
    files: tuple[str, ...] = field(default_factory=tuple)
    #: action -> the action groups it belongs to (from the schema), for explaining permits.
    action_groups: dict[str, frozenset[str]] = field(default_factory=dict)
    #: Every policy file's text, in file order: what ``policy_set`` was parsed from.
    text: str = ""
    #: Every action the schema declares (action groups included).
    actions: frozenset[str] = frozenset()
    _sliced: dict[str, cedarpy.PolicySet] = field(default_factory=dict, compare=False, repr=False)

    def policy_set_for(self, action: str) -> cedarpy.PolicySet:
        """The policies whose action scope admits ``action``: what Cedar evaluates for it.

        The same decisions as the whole set: a policy whose scope does not match is never satisfied
        and, its condition unevaluated, never an error. Cedar evaluates every policy it is given.
        """
        sliced = self._sliced.get(action)
        if sliced is None:
            names = {action} | set(action_ancestors(self.action_groups).get(action, frozenset()))
            texts = [i.source for i in self.policies.values() if not i.actions or names & set(i.actions)]
            sliced = cedarpy.PolicySet.from_str("\n".join(texts))
            self._sliced[action] = sliced
        return sliced

    def permits_for(self, action: str) -> list[PolicyInfo]:
        """The permit policies whose scope names ``action`` (directly or through a group)."""
        names = {action} | set(self.action_groups.get(action, frozenset()))
        return [
            info
            for info in self.policies.values()
            if info.effect == "permit" and (not info.actions or names.intersection(info.actions))
        ]


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def split_statements(text: str) -> list[Statement]:
    """Split Cedar text into ``;``-terminated statements, skipping strings and ``//`` comments.

    Used to map Cedar's position-less errors back to lines. A trailing statement with no ``;`` (a
    syntax error in itself) is returned too.
    """
    statements: list[Statement] = []
    start: int | None = None
    i = 0
    length = len(text)
    while i < length:
        char = text[i]
        if char == "/" and text.startswith("//", i):
            newline = text.find("\n", i)
            i = length if newline == -1 else newline
            continue
        if start is None and not char.isspace():
            start = i
        if char == '"':
            i += 1
            while i < length and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
        elif char == ";" and start is not None:
            statements.append(Statement(text[start : i + 1], _line_of(text, start), start))
            start = None
        i += 1
    if start is not None:
        statements.append(Statement(text[start:], _line_of(text, start), start))
    return statements


def _syntax_error_line(statement: Statement, parse: Any) -> int:
    """The line inside ``statement`` where the syntax breaks.

    Parses growing prefixes of the statement: while the prefix is merely incomplete Cedar reports
    "unexpected end of input"; the first prefix that fails differently ends on the offending line.
    """
    lines = statement.text.split("\n")
    for count in range(1, len(lines) + 1):
        prefix = "\n".join(lines[:count])
        try:
            parse(prefix)
        except ValueError as error:
            if "end of input" not in str(error):
                return statement.line + count - 1
            continue
        # This prefix parses: the error lies further on.
    return statement.line


def _token_line(statement: Statement, message: str) -> int:
    """The line of ``statement`` holding the first `quoted` name of a validation error (or its start)."""
    for token in re.findall(r"`([^`]+)`", message):
        if _POLICY_ID.fullmatch(token):
            continue
        match = re.search(rf"\b{re.escape(token)}\b", statement.text)
        if match:
            return statement.line + statement.text.count("\n", 0, match.start())
    return statement.line


def _parse_policy_file(path: Path, text: str) -> list[Statement]:
    statements = split_statements(text)
    try:
        cedarpy.PolicySet.from_str(text)
    except ValueError as error:
        for statement in statements:
            try:
                cedarpy.PolicySet.from_str(statement.text)
            except ValueError as statement_error:
                line = _syntax_error_line(statement, cedarpy.PolicySet.from_str)
                raise PolicyBundleError(f"syntax error: {statement_error}", file=path, line=line) from None
        raise PolicyBundleError(f"syntax error: {error}", file=path, line=None) from None
    return statements


def _load_schema(path: Path) -> tuple[cedarpy.Schema, str]:
    text = path.read_text(encoding="utf-8")
    try:
        return cedarpy.Schema.from_str(text), text
    except ValueError as error:
        message = str(error)
        line: int | None = None
        unknown = _UNKNOWN_TYPES.search(message)
        if unknown:
            # Point at the first use of the first unknown type name.
            name = unknown.group(1).split(",")[0].strip()
            match = re.search(rf"\b{re.escape(name)}\b", text)
            if match:
                line = _line_of(text, match.start())
        else:
            # A syntax error: the first declaration that does not parse on its own.
            for statement in split_statements(text):
                try:
                    cedarpy.Schema.from_str(statement.text)
                except ValueError as statement_error:
                    if "error parsing schema" in str(statement_error):
                        line = _syntax_error_line(statement, cedarpy.Schema.from_str)
                        break
        raise PolicyBundleError(f"invalid Cedar schema: {message}", file=path, line=line) from None


def _scope_entities(scope: dict[str, Any]) -> list[dict[str, Any]]:
    if "entity" in scope:
        return [scope["entity"]]
    return list(scope.get("entities", []))


def _describe(path: Path, text: str, statements: list[Statement], name: str) -> dict[int, PolicyInfo]:
    """Each policy of a file by its position (Cedar numbers them policy0, policy1, ... in file order)."""
    est = json.loads(cedarpy.policies_to_json_str(text))
    if est.get("templates"):
        raise PolicyBundleError(
            "templates (policies with ?principal/?resource slots) are not used in tre; write static policies",
            file=path,
            line=statements[0].line if statements else None,
        )
    infos: dict[int, PolicyInfo] = {}
    for positional, policy in est["staticPolicies"].items():
        index = int(positional.removeprefix("policy"))
        line = statements[index].line if index < len(statements) else 1
        annotations = policy.get("annotations", {})
        policy_id = annotations.get("id")
        reason = annotations.get("reason")
        if not policy_id:
            raise PolicyBundleError(
                'policy has no @id("...") annotation; every policy needs one', file=path, line=line
            )
        if not reason:
            raise PolicyBundleError(
                f'policy {policy_id} has no @reason("...") annotation; say in words why it allows or denies',
                file=path,
                line=line,
            )
        roles = tuple(
            entity["id"] for entity in _scope_entities(policy["principal"]) if entity.get("type") == "Role"
        )
        actions = tuple(entity["id"] for entity in _scope_entities(policy["action"]))
        principal, resource = policy["principal"], policy["resource"]
        scope_by_role = (
            principal["op"] == "All"
            or (principal["op"] == "in" and principal.get("entity", {}).get("type") == "Role")
        ) and (resource["op"] == "All" or (resource["op"] == "is" and "in" not in resource))
        infos[index] = PolicyInfo(
            id=policy_id,
            effect=policy["effect"],
            reason=reason,
            file=name,
            line=line,
            roles=roles,
            actions=actions,
            conditional=bool(policy.get("conditions")),
            scope_by_role=scope_by_role,
            source=statements[index].text if index < len(statements) else "",
        )
    return infos


def _action_groups(schema: cedarpy.Schema) -> dict[str, frozenset[str]]:
    # The schema's text form is re-read here rather than kept: `action a in [g1, g2]` declarations.
    groups: dict[str, frozenset[str]] = {}
    for match in re.finditer(r'action\s+"?([\w]+)"?\s+in\s+\[([^\]]*)\]', str(schema)):
        members = re.findall(r'"?(?:Action::)?"?([\w]+)"?', match.group(2))
        groups[match.group(1)] = frozenset(members)
    return groups


def bundle_hash(files: list[Path], root: Path) -> str:
    """SHA-256 over each file's relative name and content, in name order."""
    digest = hashlib.sha256()
    for path in sorted(files, key=lambda p: p.relative_to(root).as_posix()):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def load_bundle(policies_dir: Path) -> PolicyBundle:
    """Load and validate the bundle in ``policies_dir/cedar`` (or ``policies_dir`` itself).

    Raises:
        PolicyBundleError: the schema or a policy file is missing, does not parse, does not validate
            against the schema, or a policy lacks its ``@id``/``@reason``; the message names file and line.
    """
    directory = policies_dir / CEDAR_DIR if (policies_dir / CEDAR_DIR).is_dir() else policies_dir
    if not directory.is_dir():
        raise PolicyBundleError(f"no policy directory at {directory}; set TRE_POLICIES_DIR")
    schemas = sorted(directory.glob(f"*{SCHEMA_SUFFIX}"))
    if len(schemas) != 1:
        raise PolicyBundleError(
            f"expected exactly one {SCHEMA_SUFFIX} file in {directory}, found {len(schemas)}",
            file=directory,
        )
    schema, _ = _load_schema(schemas[0])
    policy_files = sorted(directory.glob(f"*{POLICY_SUFFIX}"))
    if not policy_files:
        raise PolicyBundleError(f"no {POLICY_SUFFIX} policy files in {directory}", file=directory)

    policies: dict[str, PolicyInfo] = {}
    texts: list[str] = []
    permit_texts: list[str] = []
    for path in policy_files:
        text = path.read_text(encoding="utf-8")
        statements = _parse_policy_file(path, text)
        result = cedarpy.validate_policies(text, schema)
        if not result.validation_passed:
            error = result.errors[0]
            line = None
            positional = _POLICY_ID.search(error.policy_id or error.error)
            if positional and int(positional.group(1)) < len(statements):
                line = _token_line(statements[int(positional.group(1))], error.error)
            label = result.id_annotations_by_policy_id.get(error.policy_id, error.policy_id)
            messages = "; ".join(_POSITIONAL_PREFIX.sub("", e.error) for e in result.errors)
            raise PolicyBundleError(
                f"policy {label or '?'} does not match the schema: {messages}", file=path, line=line
            )
        described = _describe(path, text, statements, path.name)
        permit_texts.extend(
            statements[i].text for i, info in sorted(described.items()) if info.effect == "permit"
        )
        for _, info in sorted(described.items()):
            policy_id = info.id
            if policy_id in policies:
                other = policies[policy_id]
                raise PolicyBundleError(
                    f"@id {policy_id!r} is already used in {other.file} line {other.line}; make ids unique",
                    file=path,
                    line=info.line,
                )
            policies[policy_id] = info
        texts.append(text)

    combined = "\n".join(texts)
    return PolicyBundle(
        directory=directory,
        schema=schema,
        policy_set=cedarpy.PolicySet.from_str(combined),
        permit_set=cedarpy.PolicySet.from_str("\n".join(permit_texts)),
        policies=policies,
        hash=bundle_hash([schemas[0], *policy_files], directory),
        files=tuple(p.name for p in [schemas[0], *policy_files]),
        action_groups=_action_groups(schema),
        text=combined,
        actions=frozenset(re.findall(r'^\s*action\s+"?(\w+)"?', str(schema), re.MULTILINE)),
    )
