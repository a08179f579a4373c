"""The bundle's Cedar policies compiled to Python functions: fast denies and their reasons.

Why this exists (docs/adr/0011-compiled-policies.md): cedarpy takes each request as JSON, and Cedar
parses every entity type name in it with its full grammar, so one request costs ~50-65 µs before any
policy runs, ~10 µs of it per entity reference in the context. A ``read_dataset`` is one Cedar
request per candidate (accreditation x agreement), and a deny must evaluate every candidate for its
reasons. No Cedar binding for Python 3.11 takes typed values (cedar-python needs 3.12; ADR 0002),
so the policies - the same validated Cedar text, parsed by Cedar into its JSON form (EST) - are
compiled here, each into one Python function. This is our own evaluator of a Cedar subset, written
because no library evaluates Cedar fast enough from Python 3.11; Cedar stays the authority.

What it may decide: **only denies, and the reasons of a deny.** Every allow is decided by Cedar
itself before it is returned (``PolicyEngine.evaluate_input``), and an allow Cedar does not confirm
falls back to the Cedar-only path and is logged. A mistake here can therefore refuse access wrongly,
never grant it. With ``TRE_POLICY_VERIFY`` (the test suite) Cedar also decides every request and any
difference raises :class:`CompiledMismatch`.

The compiler accepts the subset of Cedar the bundle uses: scopes with ``==``/``in``/``is``; ``when``
and ``unless``; ``! && || == != < <= > >=``, ``if-then-else``, ``.``/``has`` on entities and the
context, ``in`` on the entity hierarchy, ``contains``/``containsAll``/``containsAny``/``isEmpty``,
and set, string, Long, Bool and entity literals. Anything else (templates, arithmetic, ``like``,
extension functions, tags, record literals, a condition on ``action``) raises :class:`Unsupported`
at load, and the engine then uses Cedar for everything.

Values are the JSON :mod:`.entities` builds, unconverted: strings, ints and bools; an entity
reference as ``{"type", "id"}``; a set as a list (compared as a set); the context as a dict (the
schema declares no other record). A ``datetime`` stays the ``YYYY-MM-DD`` text ``entities._day``
writes: fixed-width ISO dates order as the days do, and the validator only lets ``<`` compare
datetimes with datetimes (or Longs with Longs). Validated policies on schema-conforming entities
never meet a type error; a missing entity or attribute raises, which counts as an evaluation error
(and sends the request to Cedar). Two differences from Cedar remain, both only in policies the
validator rejects: Python's ``True == 1`` inside a set, and sets nested in sets compared in order.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import cedarpy

from tre_platform.errors import TreError

Json = dict[str, Any]


class Unsupported(ValueError):
    """A policy uses Cedar the compiler does not handle: the engine evaluates everything with Cedar."""


class CompiledMismatch(TreError):
    """The compiled policies and Cedar disagreed about a request (only raised when verifying)."""

    status_code = 500
    code = "policy_engine_mismatch"


class EvaluationError(Exception):
    """A policy could not be evaluated (missing attribute, unknown entity, wrong type)."""


#: What a compiled policy raises on data it cannot evaluate: Cedar's evaluation errors.
_ERRORS = (EvaluationError, KeyError, TypeError, AttributeError)


@dataclass(frozen=True)
class Index:
    """A request's entities as the generated code reads them: attributes and parents, by uid."""

    attrs: dict[tuple[str, str], Json]
    parents: dict[tuple[str, str], list[Json]]


def index(entities: Iterable[Json]) -> Index:
    """A request's entities (as :func:`.entities.build` writes them) keyed by uid."""
    attrs: dict[tuple[str, str], Json] = {}
    parents: dict[tuple[str, str], list[Json]] = {}
    for entity in entities:
        key = (entity["uid"]["type"], entity["uid"]["id"])
        attrs[key] = entity["attrs"]
        parents[key] = entity["parents"]
    return Index(attrs, parents)


def _is_uid(value: Any) -> bool:
    # The builder writes entity references schema-style, {"type", "id"}, and no record has exactly
    # these two keys (the schema declares none).
    return value.__class__ is dict and len(value) == 2 and "type" in value and "id" in value


def _get(S: dict[tuple[str, str], Json], value: Json, name: str) -> Any:
    """``entity.name``. Entity attributes only: the schema has no record-typed attribute, and the
    context (the one record) is read directly. A missing entity or attribute raises ``KeyError``."""
    return S[value["type"], value["id"]][name]


def _has(S: dict[tuple[str, str], Json], value: Json, name: str) -> bool:
    """``entity has name``: false for an entity that is not in the store, as in Cedar."""
    attrs = S.get((value["type"], value["id"]))
    return attrs is not None and name in attrs


def _in(H: dict[tuple[str, str], list[Json]], child: Any, parents: Any) -> bool:
    """``child in parents``: the entity is one of them or has one of them among its ancestors."""
    if not _is_uid(child):
        raise EvaluationError("`in` needs an entity on its left")
    wanted = set()
    for target in parents if parents.__class__ is list else [parents]:
        if not _is_uid(target):
            raise EvaluationError("`in` needs entities on its right")
        wanted.add((target["type"], target["id"]))
    seen: set[tuple[str, str]] = set()
    todo = [(child["type"], child["id"])]
    while todo:
        key = todo.pop()
        if key in wanted:
            return True
        if key not in seen:
            seen.add(key)
            todo.extend((p["type"], p["id"]) for p in H.get(key, ()))
    return False


def _eq(left: Any, right: Any) -> bool:
    # Sets are lists here: compare them as sets. Values of different types are never equal in Cedar.
    if left.__class__ is list:
        return right.__class__ is list and all(x in right for x in left) and all(x in left for x in right)
    return left.__class__ is right.__class__ and left == right


def _set(value: Any) -> list[Any]:
    if value.__class__ is not list:
        raise EvaluationError(f"expected a set, got a {type(value).__name__}")
    return value


def _ordered(left: Any, right: Any) -> tuple[Any, Any]:
    # Longs with Longs; datetimes (ISO day text, see the module docstring) with datetimes.
    if left.__class__ is right.__class__ and left.__class__ in (int, str):
        return left, right
    raise EvaluationError(f"cannot order a {type(left).__name__} and a {type(right).__name__}")


def _entity_type(value: Any) -> str:
    if not _is_uid(value):
        raise EvaluationError("`is` needs an entity")
    return value["type"]  # type: ignore[no-any-return]


_RUNTIME: dict[str, Any] = {
    "_set": _set, "_get": _get, "_has": _has, "_in": _in, "_eq": _eq,
    "_entity_type": _entity_type, "_ordered": _ordered,
    "_lt": lambda a, b: a < b, "_le": lambda a, b: a <= b,
    # Both sides are evaluated first, once, as Cedar does: an error on the left is an error even
    # when the right is empty.
    "_all": lambda a, b: all(x in a for x in b), "_any": lambda a, b: any(x in a for x in b),
}  # fmt: skip

_BINARY = {
    "&&": "({left} and {right})",
    "||": "({left} or {right})",
    "==": "_eq({left}, {right})",
    "!=": "(not _eq({left}, {right}))",
    "<": "_lt(*_ordered({left}, {right}))",
    "<=": "_le(*_ordered({left}, {right}))",
    ">": "_lt(*_ordered({right}, {left}))",
    ">=": "_le(*_ordered({right}, {left}))",
    "in": "_in(H, {left}, {right})",
    "contains": "({right} in _set({left}))",
    "containsAll": "_all(_set({left}), _set({right}))",
    "containsAny": "_any(_set({left}), _set({right}))",
}
#: The action is decided by the scope alone (policies are sliced by action); a condition on it is not
#: compiled, because the action hierarchy lives in the schema, not in the request's entities.
_VARIABLES = {"principal": "P", "resource": "R", "context": "C"}


def _literal(raw: Any) -> Any:
    if isinstance(raw, bool | int | str):
        return raw
    if isinstance(raw, dict) and set(raw) == {"__entity"}:
        return {"type": raw["__entity"]["type"], "id": raw["__entity"]["id"]}
    raise Unsupported(f"literal {raw!r}")


class _Writer:
    """Writes a policy as one Python expression. Every literal (a string, an entity) becomes a named
    constant passed to the generated function, so no text from a policy is ever part of its source:
    the source holds only operators, helper names and constant names."""

    def __init__(self) -> None:
        self.constants: dict[str, Any] = {}
        #: The context attributes the policy reads; "*" when it reads the context as a whole.
        self.reads: set[str] = set()

    def const(self, value: Any) -> str:
        name = f"K{len(self.constants)}"
        self.constants[name] = value
        return name

    def expr(self, node: Any) -> str:
        if not isinstance(node, dict) or len(node) != 1:
            raise Unsupported(f"expression {node!r}")
        ((op, arg),) = node.items()
        if op == "Value":
            return self.const(_literal(arg))
        if op == "Var":
            if arg not in _VARIABLES:
                raise Unsupported(f"variable {arg!r}")
            if arg == "context":
                self.reads.add("*")
            return _VARIABLES[arg]
        if op == "!":
            return f"(not {self.expr(arg['arg'])})"
        if op == "isEmpty":
            return f"(not _set({self.expr(arg['arg'])}))"
        if op in (".", "has"):
            name = self.const(arg["attr"])
            if arg["left"] == {"Var": "context"}:
                self.reads.add(arg["attr"])
                return f"C[{name}]" if op == "." else f"({name} in C)"
            return f"{'_get' if op == '.' else '_has'}(S, {self.expr(arg['left'])}, {name})"
        if op == "Set":
            return "[" + ", ".join(self.expr(n) for n in arg) + "]"
        if op == "if-then-else":
            cond, then, other = (self.expr(arg[k]) for k in ("if", "then", "else"))
            return f"({then} if {cond} else {other})"
        if op == "is" and "in" not in arg:
            return f"(_entity_type({self.expr(arg['left'])}) == {self.const(arg['entity_type'])})"
        if op in _BINARY:
            return _BINARY[op].format(left=self.expr(arg["left"]), right=self.expr(arg["right"]))
        raise Unsupported(f"Cedar operator {op!r}")

    def scope(self, constraint: Json, var: str) -> str | None:
        """The principal or resource scope as an expression (None: every entity)."""
        op = constraint["op"]
        if "slot" in constraint:
            raise Unsupported("templates (slots) are not compiled")
        if op == "All":
            return None
        if op == "==":
            return f"_eq({var}, {self.const(_literal({'__entity': constraint['entity']}))})"
        if op == "in" and "entity" in constraint:
            return f"_in(H, {var}, {self.const(_literal({'__entity': constraint['entity']}))})"
        if op == "is":
            test = f"({var}['type'] == {self.const(constraint['entity_type'])})"
            if "in" in constraint:
                parent = self.const(_literal({"__entity": constraint["in"]["entity"]}))
                test = f"({test} and _in(H, {var}, {parent}))"
            return test
        raise Unsupported(f"{var} scope {op!r}")

    def policy(self, policy: Json) -> str:
        parts = [p for p in (self.scope(policy["principal"], "P"), self.scope(policy["resource"], "R")) if p]
        for condition in policy.get("conditions", []):
            body = self.expr(condition["body"])
            if condition["kind"] == "when":
                parts.append(f"({body})")
            elif condition["kind"] == "unless":
                parts.append(f"(not {body})")
            else:
                raise Unsupported(f"condition kind {condition['kind']!r}")
        return " and ".join(parts) or "True"


Test = Callable[[Json, Json, Json, Any, Any], bool]


@dataclass(frozen=True)
class Compiled:
    """One policy: its ``@id``, effect, and whether a request satisfies it (raises on an error)."""

    id: str
    effect: str
    test: Test
    #: The context attributes it reads ("*": the whole context).
    reads: frozenset[str] = frozenset({"*"})


def compile_policy(policy_id: str, policy: Json) -> Compiled:
    """One policy, in Cedar's JSON form (EST), as a Python function of (P, R, C, S, H): principal,
    resource, context, the entities' attributes and their parents."""
    if policy.get("effect") not in ("permit", "forbid"):
        raise Unsupported(f"effect {policy.get('effect')!r}")
    writer = _Writer()
    source = f"def test(P, R, C, S, H):\n    return {writer.policy(policy)}\n"
    namespace: dict[str, Any] = {"__builtins__": {}, **_RUNTIME, **writer.constants}
    exec(compile(source, f"<policy {policy_id}>", "exec"), namespace)  # noqa: S102 - see _Writer
    return Compiled(policy_id, policy["effect"], namespace["test"], frozenset(writer.reads))


def _actions_matching(
    constraint: Json, groups: Mapping[str, frozenset[str]], actions: Iterable[str]
) -> set[str]:
    """The actions (of ``actions``) that a policy's action scope admits, through the action groups."""
    op = constraint["op"]
    if op == "All":
        return set(actions)
    if op == "==":
        return {a for a in actions if a == constraint["entity"]["id"]}
    if op == "in":
        targets = {e["id"] for e in constraint.get("entities", [constraint.get("entity")]) if e}
        return {a for a in actions if ({a} | groups.get(a, frozenset())) & targets}
    raise Unsupported(f"action scope {op!r}")


def action_ancestors(groups: Mapping[str, frozenset[str]]) -> dict[str, frozenset[str]]:
    """Each action's groups, and their groups in turn."""
    out: dict[str, frozenset[str]] = {}
    for action in groups:
        seen: set[str] = set()
        todo = list(groups[action])
        while todo:
            group = todo.pop()
            if group not in seen:
                seen.add(group)
                todo.extend(groups.get(group, ()))
        out[action] = frozenset(seen)
    return out


@dataclass(frozen=True)
class Diagnostics:
    """Cedar's diagnostics, as :class:`PolicyEngine.interpret` reads them (ids are the ``@id`` s)."""

    reasons: list[str]
    errors: list[str]
    id_annotations_by_reason: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Result:
    """One request's answer, shaped like ``cedarpy.AuthzResult`` for the engine."""

    permits: tuple[str, ...]
    forbids: tuple[str, ...]
    errors: tuple[str, ...]

    @property
    def allowed(self) -> bool:
        return bool(self.permits) and not self.forbids

    @property
    def diagnostics(self) -> Diagnostics:
        reasons = self.forbids if self.forbids else self.permits if self.allowed else ()
        return Diagnostics(list(reasons), list(self.errors))

    def __add__(self, other: Result) -> Result:
        """The answer of the policies of both (disjoint sets of policies, the same request)."""
        return Result(self.permits + other.permits, self.forbids + other.forbids, self.errors + other.errors)


#: The context attributes a request's candidates differ in: one request per combination of them.
CANDIDATE_ATTRIBUTES = ("accreditation", "agreement")


class CompiledBundle:
    """Every policy of a bundle compiled, sliced by action: each action's applicable policies only."""

    def __init__(
        self,
        policies: Sequence[tuple[str, Json]],
        action_groups: Mapping[str, frozenset[str]],
        actions: Iterable[str],
    ) -> None:
        groups = action_ancestors(action_groups)
        actions = set(actions) | set(groups) | {g for gs in groups.values() for g in gs}
        self._by_action: dict[str, list[Compiled]] = {a: [] for a in actions}
        self._permits: dict[str, list[Compiled]] = {a: [] for a in actions}
        for policy_id, policy in policies:
            compiled = compile_policy(policy_id, policy)
            for action in _actions_matching(policy["action"], groups, actions):
                self._by_action[action].append(compiled)
                if compiled.effect == "permit":
                    self._permits[action].append(compiled)
        # Per action: (the policies not reading the agreement, those reading it), when no policy
        # reads both candidate attributes (see authorize_product).
        accreditation, agreement = CANDIDATE_ATTRIBUTES
        self._split: dict[str, tuple[list[Compiled], list[Compiled]]] = {}
        for action, applicable in self._by_action.items():
            if any("*" in p.reads or {accreditation, agreement} <= p.reads for p in applicable):
                continue
            self._split[action] = (
                [p for p in applicable if agreement not in p.reads],
                [p for p in applicable if agreement in p.reads],
            )

    @classmethod
    def from_text(
        cls, text: str, action_groups: Mapping[str, frozenset[str]], actions: Iterable[str]
    ) -> CompiledBundle:
        """Compile Cedar policy text (parsed by Cedar itself into its JSON form)."""
        est = json.loads(cedarpy.policies_to_json_str(text))
        if est.get("templates"):
            raise Unsupported("templates are not compiled")
        policies = [
            (p.get("annotations", {}).get("id") or positional, p)
            for positional, p in sorted(est["staticPolicies"].items(), key=lambda kv: int(kv[0][6:]))
        ]
        return cls(policies, action_groups, actions)

    def authorize(
        self, requests: Sequence[Json], store: Index, *, permits_only: bool = False
    ) -> list[Result]:
        """Cedar's answer for each request (principal/action/resource uids and context, as built).

        Like Cedar: allowed when some permit is satisfied and no forbid; the determining policies
        are the satisfied forbids of a deny, the satisfied permits of an allow; a policy that cannot
        be evaluated is an error, and counts as not satisfied.
        """
        table = self._permits if permits_only else self._by_action
        return [self._run(self._policies(table, r), r, store) for r in requests]

    def authorize_product(
        self, requests: Sequence[Json], shape: tuple[int, int], store: Index
    ) -> list[Result]:
        """:meth:`authorize` for the candidates of one decision, evaluating each policy only as often
        as what it reads varies.

        ``requests`` are the product of ``shape`` = (accreditations, agreements), accreditation-major:
        request ``i * agreements + j`` carries accreditation ``i`` and agreement ``j``, and they differ
        in nothing else. A policy that reads neither is the same for all of them; one that reads only
        the agreement is the same for every accreditation. So the policies not reading the agreement
        are evaluated once per accreditation, the others once per agreement, and each candidate's
        answer is the sum of its two parts - unless some policy reads both (or the whole context):
        then every candidate is evaluated whole.
        """
        accreditations, agreements = shape
        if not requests or accreditations * agreements != len(requests):
            raise ValueError(f"{len(requests)} requests are not a product of {shape}")
        split = self._split.get(requests[0]["action"]["id"])
        if split is None or len(requests) == 1:
            return self.authorize(requests, store)
        per_accreditation, per_agreement = split
        first = [self._run(per_accreditation, requests[i * agreements], store) for i in range(accreditations)]
        second = [self._run(per_agreement, requests[j], store) for j in range(agreements)]
        return [a + b for a in first for b in second]

    @staticmethod
    def _policies(table: dict[str, list[Compiled]], request: Json) -> list[Compiled]:
        action = request["action"]
        policies = table.get(action["id"])
        if policies is None or action["type"] != "Action":
            raise Unsupported(f"action {action!r} is not in the schema")
        return policies

    @staticmethod
    def _run(policies: Sequence[Compiled], request: Json, store: Index) -> Result:
        principal, resource, context = request["principal"], request["resource"], request["context"]
        attrs, parents = store.attrs, store.parents
        permits: list[str] = []
        forbids: list[str] = []
        errors: list[str] = []
        for policy in policies:
            try:
                satisfied = policy.test(principal, resource, context, attrs, parents)
            except _ERRORS as error:
                errors.append(f"error while evaluating policy `{policy.id}`: {error!r}")
                continue
            if satisfied:
                (permits if policy.effect == "permit" else forbids).append(policy.id)
        return Result(tuple(permits), tuple(forbids), tuple(errors))
