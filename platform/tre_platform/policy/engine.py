"""The policy engine: every access decision in tre is made here, from the Cedar policies, and explained.

How a decision is made (see docs/adr/0002-policy-engine.md):

1. The request's facts (:mod:`.facts`) become Cedar entities and one Cedar request per candidate
   credential - each of the user's accreditations, each agreement of the dataset's owner
   (:mod:`.entities`).
2. Cedar evaluates them against the validated bundle: the first candidate alone, then - only if it
   is not allowed - the rest in one batch (the first is the likeliest to allow: a user's latest
   accreditation). Deny by default; a ``forbid`` beats any ``permit``. The decision is *allow* when
   some candidate is allowed, and names the first one in order, as if all had been evaluated.
3. Each ``forbid`` policy is exactly one condition, annotated with ``@reason``. The reasons of a deny
   are the ``@reason`` texts of the forbids Cedar itself reports as determining, so the explanation
   and the decision come from the same evaluation and cannot disagree.
4. A deny also says whether any permit applied at all (else "no policy permits ..."). That is a Cedar
   call to the permits alone; when every permit is unconditional and scoped by role, action and
   resource type only, its answer depends on exactly those and is remembered per combination.
5. Decisions are remembered (:class:`DecisionCache`) by the whole request: Cedar is deterministic, so
   the same facts under the same bundle always give the same decision. Only ``evaluated_at`` is
   fresh on a hit. Every decision is still audited by :meth:`PolicyEngine.decide`, hit or not.
6. Parsed entities are remembered too: the part of the store that is the same for every request about
   a dataset (the dataset, its owner, the candidate agreements) is parsed once, keyed by its exact
   JSON, and each request adds its own entities to it (:meth:`PolicyEngine.entity_store`).
7. Denies are found fast: the same policies, compiled to Python (:mod:`.compiled`, ADR 0011),
   evaluate every candidate, each policy only as often as what it reads varies, without parsing any
   entity into Cedar. **Every allow is decided by Cedar itself** (steps 1-3), so a mistake in the
   compiled form can refuse access, never grant it; a compiled allow Cedar does not confirm is logged
   and Cedar's decision stands. A compiled deny with an evaluation error is decided again by Cedar,
   for Cedar's own error messages. With ``TRE_POLICY_VERIFY`` (the test suite) Cedar decides every
   request as well, and any difference raises :class:`CompiledMismatch`.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import cedarpy
from sqlalchemy.orm import Session

from tre_platform.api.audit.service import record, record_kept  # its session listeners, before any flush
from tre_platform.clock import clock
from tre_platform.errors import PolicyDenied
from tre_platform.policy.bundle import PolicyBundle, PolicyInfo, load_bundle
from tre_platform.policy.compiled import CompiledBundle, CompiledMismatch, Index, Unsupported
from tre_platform.policy.compiled import Result as CompiledResult
from tre_platform.policy.compiled import index as compiled_index
from tre_platform.policy.entities import Candidate, CedarInput, Json, build
from tre_platform.policy.facts import DATASET_ACTIONS, PolicyRequest
from tre_platform.settings import get_settings

if TYPE_CHECKING:
    from tre_platform.actor import Actor
    from tre_platform.api.agreements.models import DataSharingAgreement
    from tre_platform.api.datasets.models import Dataset
    from tre_platform.api.projects.models import Project
    from tre_platform.api.users.models import User
    from tre_platform.policy.db import PackageLike, ReleaseLike

log = logging.getLogger(__name__)

#: One request's answer: Cedar's, or the compiled policies' (the same shape).
Answer = cedarpy.AuthzResult | CompiledResult

_PLACEHOLDER = re.compile(r"\{(\w+)\}")
#: How many failing agreements a deny lists one by one before summarising the rest.
MAX_LISTED_AGREEMENTS = 5


@dataclass(frozen=True)
class Decision:
    """The outcome of one policy decision, with the words that explain it.

    ``reasons`` say which rule allowed or which conditions failed; ``policy_ids`` are the ``@id`` of
    the determining policies; ``bundle_hash`` identifies the exact policy files applied.
    """

    allowed: bool
    action: str
    principal: str
    resource: str
    reasons: list[str]
    policy_ids: list[str]
    bundle_hash: str
    evaluated_at: dt.datetime
    resource_type: str = ""
    resource_id: str = ""
    principal_id: str = ""
    #: The day the policies compared expiry dates with.
    today: dt.date | None = None
    #: The agreement (reference) the allow relied on, if any.
    agreement: str | None = None
    #: Cedar evaluation errors (each makes its candidate fail closed).
    errors: list[str] = field(default_factory=list)

    @property
    def effect(self) -> str:
        return "allow" if self.allowed else "deny"

    def message(self) -> str:
        """One line for a person: the decision and why."""
        verb = "may" if self.allowed else "may not"
        return f"{self.principal} {verb} {self.action} {self.resource}: " + "; ".join(self.reasons)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["decision"] = self.effect
        data["evaluated_at"] = self.evaluated_at.isoformat()
        data["today"] = self.today.isoformat() if self.today else None
        return data


def render(template: str, facts: Mapping[str, str]) -> str:
    """Fill ``{name}`` placeholders from ``facts``; an unknown name is left visible, never dropped."""
    return _PLACEHOLDER.sub(lambda m: facts.get(m.group(1), m.group(0)), template)


def _dimension(info: PolicyInfo) -> str:
    """Which candidate a forbid is about: an agreement, an accreditation, or neither ("general")."""
    if info.id.startswith("agreement.") or "{agreement" in info.reason:
        return "agreement"
    if info.id.startswith("accreditation.") or "{accreditation" in info.reason:
        return "accreditation"
    return "general"


def _allows(results: Sequence[Answer]) -> bool:
    """Whether :meth:`PolicyEngine.interpret` allows: some candidate allowed without any error."""
    return any(r.allowed and not r.diagnostics.errors for r in results)


def mergeable_groups(inputs: Sequence[CedarInput]) -> list[tuple[list[int], list[Json]]]:
    """Split requests into groups whose entity stores can be merged without changing any decision.

    Two stores merge when every uid they share has identical attributes and parents. A store whose
    parents are not all inside it (never the case for :func:`build`'s) is kept alone, because a parent
    lent by another request could add ancestors that ``in`` would then see.
    """
    groups: list[tuple[list[int], dict[tuple[str, str], Json], bool]] = []  # members, store, open
    for index, cedar_input in enumerate(inputs):
        own = {(e["uid"]["type"], e["uid"]["id"]): e for e in cedar_input.entities}
        closed = all((p["type"], p["id"]) in own for e in own.values() for p in e["parents"])
        joined = False
        if closed:
            for members, merged, open_ in groups:
                if open_ and all(merged.get(key, entity) == entity for key, entity in own.items()):
                    members.append(index)
                    merged.update(own)
                    joined = True
                    break
        if not joined:
            groups.append(([index], own, closed))
    return [(members, list(merged.values())) for members, merged, _ in groups]


V = TypeVar("V")


class LruCache(Generic[V]):
    """A bounded, thread-safe least-recently-used map from strings, counting hits and misses."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.hits = 0
        self.misses = 0
        self._items: OrderedDict[str, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> V | None:
        with self._lock:
            found = self._items.get(key)
            if found is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return found

    def put(self, key: str, value: V) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._items)


class DecisionCache(LruCache[Decision]):
    """Decisions keyed by the whole request (see :meth:`key`).

    Sound because a decision is a pure function of the request's facts and the bundle (Cedar is
    deterministic, and "today" is one of the facts): a hit returns exactly what evaluating would.
    """

    @staticmethod
    def key(request: PolicyRequest) -> str:
        # The dataclasses' repr is an unambiguous rendering of every fact (strings are quoted and
        # escaped): equal keys mean equal requests. Equal requests whose sets or mappings iterate in
        # another order may get different keys - a miss, never a wrong hit.
        return repr(request)


class PolicyEngine:
    """Evaluates requests against a validated :class:`PolicyBundle`.

    Example:
        >>> engine = PolicyEngine.load(Path("policies"))
        >>> decision = engine.evaluate(world.request("read_dataset", "alice", project="P1",
        ...                                          dataset="hes", today="2025-06-01"))
        >>> decision.allowed, decision.reasons
    """

    def __init__(
        self,
        bundle: PolicyBundle,
        *,
        cache_size: int = 10_000,
        entity_cache_size: int = 1_024,
        compiled: bool = True,
        verify: bool | None = None,
    ) -> None:
        """``cache_size``: decisions remembered (0: evaluate every request afresh).

        ``entity_cache_size``: parsed dataset entity stores remembered (0: parse every store whole).
        Each costs ~40 KB (cedarpy's parsed handle, with the schema's action entities), so the
        default holds at most ~45 MB: the datasets in use, not every dataset ever registered.

        ``compiled``: find denies with the compiled policies (False: Cedar evaluates everything).
        ``verify``: Cedar decides every request too and the two must agree (default: the
        ``policy_verify`` setting).
        """
        self.bundle = bundle
        self.verify = get_settings().policy_verify if verify is None else verify
        self.compiled: CompiledBundle | None = None
        if compiled:
            try:
                self.compiled = CompiledBundle.from_text(bundle.text, bundle.action_groups, bundle.actions)
            except Unsupported as error:
                log.warning("policies not compiled, Cedar evaluates every request: %s", error)
        #: Compiled allows Cedar did not confirm (each is logged; Cedar's decision was returned).
        self.unconfirmed = 0
        self.cache = DecisionCache(cache_size) if cache_size > 0 else None
        # Keyed by the exact JSON parsed, so an edited, revoked or new agreement (or dataset) is
        # another key: nothing to invalidate. Expiry needs nothing either: dates are compared with
        # the request's `today`, which is context, not part of the store.
        self.entity_cache: LruCache[cedarpy.Entities] | None = (
            LruCache(entity_cache_size) if entity_cache_size > 0 else None
        )
        self._order = {policy_id: n for n, policy_id in enumerate(bundle.policies)}
        # A permit without conditions is decided by its scope (principal, action, resource) alone, and
        # every candidate of a decision shares those: then whether any permit applies is the same for
        # every candidate, and asking Cedar about the first one answers for all.
        self._permits_read_context = any(
            info.conditional for info in bundle.policies.values() if info.effect == "permit"
        )
        # Whether any permit applies then depends on the principal's roles, the action and the
        # resource type alone: remember Cedar's answer per combination (see ``_any_permit``).
        self._permit_memo: dict[tuple[str, frozenset[str], str], bool] | None = (
            {}
            if not self._permits_read_context
            and all(info.scope_by_role for info in bundle.policies.values() if info.effect == "permit")
            else None
        )

    @classmethod
    def load(
        cls,
        policies_dir: Path,
        *,
        cache_size: int = 10_000,
        entity_cache_size: int = 1_024,
        compiled: bool = True,
        verify: bool | None = None,
    ) -> PolicyEngine:
        """Load and validate the bundle; raises :class:`PolicyBundleError` naming file and line."""
        return cls(
            load_bundle(policies_dir),
            cache_size=cache_size,
            entity_cache_size=entity_cache_size,
            compiled=compiled,
            verify=verify,
        )

    @property
    def bundle_hash(self) -> str:
        return self.bundle.hash

    # Pure evaluation --------------------------------------------------------------------------

    def evaluate(self, request: PolicyRequest) -> Decision:
        """Decide ``request`` (no database, no audit), from the cache when it was decided before."""
        if self.cache is None:
            return self.evaluate_uncached(request)
        key = DecisionCache.key(request)
        cached = self.cache.get(key)
        if cached is not None:
            # Fresh lists too: a caller that edits its decision's reasons must not edit the cache's.
            return replace(
                cached,
                evaluated_at=clock.now(),
                reasons=list(cached.reasons),
                policy_ids=list(cached.policy_ids),
                errors=list(cached.errors),
            )
        decision = self.evaluate_uncached(request)
        if not decision.errors:  # an evaluation error is logged each time it happens
            self.cache.put(key, decision)
        return decision

    def evaluate_uncached(self, request: PolicyRequest) -> Decision:
        """Decide ``request`` afresh, never from the cache: denies compiled, allows by Cedar."""
        return self.evaluate_input(request, build(request))

    def evaluate_input(
        self, request: PolicyRequest, cedar_input: CedarInput, entities: cedarpy.Entities | None = None
    ) -> Decision:
        """Decide a request whose entities are built; ``entities``: their parsed store, if the caller
        has it (otherwise they are parsed only when Cedar evaluates: an allow, an error, verifying)."""

        def parsed() -> cedarpy.Entities:
            return entities if entities is not None else self.entity_store(cedar_input)

        if self.compiled is None or cedar_input.shape is None:
            return self.evaluate_built(request, cedar_input, parsed())
        try:
            compiled, results = self.evaluate_compiled(request, cedar_input)
        except Unsupported:  # an action the schema does not declare: Cedar says what is wrong
            return self.evaluate_built(request, cedar_input, parsed())
        if not (compiled.allowed or compiled.errors or self.verify):
            return compiled
        if compiled.allowed and not compiled.errors and not self.verify:
            # Cedar decides the allow: it evaluates the candidate the compiled policies allow (the
            # first, in order; every earlier one they deny, and a deny cannot grant anything).
            chosen = next(i for i, r in enumerate(results) if r.allowed)
            store = parsed()
            confirmed = self._authorize([cedar_input.candidates[chosen].cedar_request], store)
            if _allows(confirmed):
                evaluated = replace(cedar_input, candidates=cedar_input.candidates[: chosen + 1])
                return self.interpret(request, evaluated, [*results[:chosen], *confirmed], entities=store)
        decision = self.evaluate_built(request, cedar_input, parsed())
        self._compare(compiled, decision)
        return decision

    def evaluate_compiled(
        self, request: PolicyRequest, cedar_input: CedarInput
    ) -> tuple[Decision, list[CompiledResult]]:
        """The decision and its reasons from the compiled policies alone (no Cedar, no parsing), and
        their answer for each candidate.

        Only a deny without errors is ever returned as it is (see :meth:`evaluate_input`).
        """
        assert self.compiled is not None and cedar_input.shape is not None
        store = compiled_index(cedar_input.entities)
        requests = [c.cedar_request for c in cedar_input.candidates]
        results = self.compiled.authorize_product(requests, cedar_input.shape, store)
        return self.interpret(request, cedar_input, results, store=store), results

    def _compare(self, compiled: Decision, cedar: Decision) -> None:
        """Cedar's decision stands; a compiled one that differs is logged (verifying: raised)."""
        if compiled.errors or cedar.errors:
            same = compiled.allowed == cedar.allowed
        else:
            same = (compiled.allowed, compiled.reasons, compiled.policy_ids, compiled.agreement) == (
                cedar.allowed,
                cedar.reasons,
                cedar.policy_ids,
                cedar.agreement,
            )
        if same:
            return
        message = (
            f"compiled policies and Cedar disagree on {cedar.action} {cedar.resource_type} "
            f"{cedar.resource_id} by {cedar.principal}: compiled {compiled.effect} {compiled.reasons}, "
            f"Cedar {cedar.effect} {cedar.reasons}"
        )
        if compiled.allowed and not cedar.allowed:
            self.unconfirmed += 1
        log.error(message)
        if self.verify:
            raise CompiledMismatch(message)

    def evaluate_built(
        self, request: PolicyRequest, cedar_input: CedarInput, entities: cedarpy.Entities
    ) -> Decision:
        """The Cedar evaluation and its reasons, for a request whose entities are built and parsed."""
        requests = [c.cedar_request for c in cedar_input.candidates]
        results = self._authorize(requests[:1], entities)
        if len(requests) > 1 and not _allows(results):
            results += self._authorize(requests[1:], entities)
        # On an early allow only the first candidate was evaluated; interpret() stops at the first
        # allowed candidate anyway, so the decision is the same as with all of them.
        evaluated = replace(cedar_input, candidates=cedar_input.candidates[: len(results)])
        return self.interpret(request, evaluated, results, entities=entities)

    def _authorize(self, requests: list[Json], entities: cedarpy.Entities) -> list[cedarpy.AuthzResult]:
        # The schema stays on the hot path: it is what puts each action in its groups (`action in
        # Action::"dataset_use"`). Without it Cedar would silently skip every group-scoped forbid.
        actions = {r["action"]["id"] for r in requests}
        policies = self.bundle.policy_set_for(actions.pop()) if len(actions) == 1 else self.bundle.policy_set
        return cedarpy.is_authorized_batch(requests, policies, entities, schema=self.bundle.schema)

    def evaluate_many(self, requests: Sequence[PolicyRequest]) -> list[Decision]:
        """Decide many requests with as few Cedar calls as possible; same decisions as :meth:`evaluate`.

        Requests whose entities agree (every shared uid has identical attributes and parents) share
        one parsed entity store and one ``is_authorized_batch`` call, and the permit-only check of
        all their denies is one more call. A request whose entities disagree with the group's starts
        a new group. Any request with a Cedar evaluation error is decided again on its own, so an
        entity lent by another request can never turn a fail-closed error into a different answer.
        """
        inputs = [build(request) for request in requests]
        decisions: list[Decision | None] = [None] * len(requests)
        for group, entities in mergeable_groups(inputs):
            handle = self.parse_entities(entities)
            results = self._split(group, inputs, self.bundle.policy_set, handle)
            denied = [i for i in group if not _allows(results[i])]
            permitted = self._split(denied, inputs, self.bundle.permit_set, handle, permits=True)
            for i in group:
                if any(r.diagnostics.errors for r in results[i]):
                    decisions[i] = self.evaluate(requests[i])
                else:
                    decisions[i] = self.interpret(
                        requests[i], inputs[i], results[i], permitted=permitted.get(i)
                    )
        return [d for d in decisions if d is not None]

    def _split(
        self,
        indices: Sequence[int],
        inputs: Sequence[CedarInput],
        policies: cedarpy.PolicySet,
        entities: cedarpy.Entities,
        *,
        permits: bool = False,
    ) -> dict[int, list[cedarpy.AuthzResult]]:
        """One Cedar call for the candidates of ``indices``, its results handed back per request."""
        if not indices:
            return {}
        per_input = {
            i: self._permit_requests(inputs[i])
            if permits
            else [c.cedar_request for c in inputs[i].candidates]
            for i in indices
        }
        flat = cedarpy.is_authorized_batch(
            [r for i in indices for r in per_input[i]], policies, entities, schema=self.bundle.schema
        )
        out: dict[int, list[cedarpy.AuthzResult]] = {}
        position = 0
        for i in indices:
            count = len(per_input[i])
            out[i] = flat[position : position + count]
            position += count
        return out

    def _permit_requests(self, cedar_input: CedarInput) -> list[Json]:
        """The Cedar requests that tell whether any permit applies to a decision at all."""
        requests = [c.cedar_request for c in cedar_input.candidates]
        return requests if self._permits_read_context else requests[:1]

    def parse_entities(self, entities: list[Json]) -> cedarpy.Entities:
        """Parse and validate (against the schema) an entity store once, for every Cedar call on it.

        Passing entities as JSON to ``is_authorized_batch`` makes Cedar parse them on each call; a
        parsed handle is reused by the evaluation and by the permit-only check of a deny.
        """
        return cedarpy.Entities.from_json_str(json.dumps(entities), self.bundle.schema)

    def entity_store(self, cedar_input: CedarInput) -> cedarpy.Entities:
        """The parsed store of ``cedar_input``: its dataset's part from the cache, plus its own entities.

        Gives the same store as :meth:`parse_entities` of all the entities (the schema validates both
        parts, and adding recomputes the hierarchy over the whole), for a fraction of the cost: the
        dataset's part - the agreements above all - is most of the parsing, and is the same for every
        request about that dataset.
        """
        if self.entity_cache is None or not cedar_input.shared:
            return self.parse_entities(cedar_input.entities)
        key = json.dumps(cedar_input.shared)
        base = self.entity_cache.get(key)
        if base is None:
            base = cedarpy.Entities.from_json_str(key, self.bundle.schema)
            self.entity_cache.put(key, base)
        return base.with_added_json_str(json.dumps(cedar_input.own), self.bundle.schema)

    def run(
        self, cedar_input: CedarInput, entities: cedarpy.Entities | None = None
    ) -> list[cedarpy.AuthzResult]:
        """The Cedar evaluation itself: every candidate in one batch (``entities``: a parsed store)."""
        return cedarpy.is_authorized_batch(
            [c.cedar_request for c in cedar_input.candidates],
            self.bundle.policy_set,
            entities if entities is not None else self.parse_entities(cedar_input.entities),
            schema=self.bundle.schema,
        )

    def _ids(self, result: Answer) -> list[str]:
        annotations = result.diagnostics.id_annotations_by_reason
        ids = [annotations.get(pid, pid) for pid in result.diagnostics.reasons]
        # Cedar reports the determining policies as a set, in no stable order: put them in the
        # bundle's order (file, then line) so the same request always gets the same reasons.
        return sorted(ids, key=lambda i: self._order.get(i, len(self._order)))

    def interpret(
        self,
        request: PolicyRequest,
        cedar_input: CedarInput,
        results: Sequence[Answer],
        *,
        entities: cedarpy.Entities | None = None,
        permitted: Sequence[cedarpy.AuthzResult] | None = None,
        store: Index | None = None,
    ) -> Decision:
        """Turn Cedar's per-candidate results into one :class:`Decision` with its reasons.

        Args:
            request: the request decided.
            cedar_input: what :func:`build` made of it.
            results: Cedar's result for each candidate, in order.
            entities: the parsed entity store of ``cedar_input``, reused by the permit-only check.
            permitted: the permit-only results, when the caller already has them (batches).
            store: the compiled policies' store, when ``results`` are theirs: the permit-only check
                is theirs too.
        """
        now = clock.now()
        base = Decision(
            allowed=False,
            action=request.action,
            principal=cedar_input.principal,
            resource=cedar_input.resource_label,
            reasons=[],
            policy_ids=[],
            bundle_hash=self.bundle.hash,
            evaluated_at=now,
            resource_type=cedar_input.resource_type,
            resource_id=cedar_input.resource_id,
            principal_id=request.user.id,
            today=request.today,
        )
        errors: list[str] = []
        for candidate, result in zip(cedar_input.candidates, results, strict=True):
            candidate_errors = [str(e) for e in result.diagnostics.errors]
            errors.extend(candidate_errors)
            # A policy that fails to evaluate is skipped by Cedar; for a forbid that would fail open,
            # so a candidate with any evaluation error never allows.
            if result.allowed and not candidate_errors:
                return replace(
                    base,
                    allowed=True,
                    reasons=self._allow_reasons(request, candidate, self._ids(result)),
                    policy_ids=self._ids(result),
                    agreement=candidate.agreement.reference if candidate.agreement else None,
                    errors=errors,
                )
        any_permit = (
            self._any_permit(request, cedar_input, entities, store)
            if permitted is None
            else any(r.allowed for r in permitted)
        )
        reasons, policy_ids = self._deny_reasons(request, cedar_input, results, any_permit)
        if errors:
            reasons.append(
                "the policies could not be evaluated completely, so access is refused: " + "; ".join(errors)
            )
            log.error(
                "policy evaluation errors for %s %s: %s", request.action, cedar_input.resource_id, errors
            )
        return replace(base, reasons=reasons, policy_ids=policy_ids, errors=errors)

    def _any_permit(
        self,
        request: PolicyRequest,
        cedar_input: CedarInput,
        entities: cedarpy.Entities | None,
        store: Index | None = None,
    ) -> bool:
        """Whether any permit applies to the request at all: the permits alone asked (of Cedar, or of
        the compiled policies when ``store`` is theirs)."""
        key = (request.action, request.user.roles, cedar_input.resource_type)
        if self._permit_memo is not None and key in self._permit_memo:
            return self._permit_memo[key]
        if store is not None and self.compiled is not None:
            requests = self._permit_requests(cedar_input)
            # Not remembered: the memo holds Cedar's answers only.
            return any(r.allowed for r in self.compiled.authorize(requests, store, permits_only=True))
        answer = any(
            r.allowed
            for r in cedarpy.is_authorized_batch(
                self._permit_requests(cedar_input),
                self.bundle.permit_set,
                entities if entities is not None else self.parse_entities(cedar_input.entities),
                schema=self.bundle.schema,
            )
        )
        if self._permit_memo is not None:
            self._permit_memo[key] = answer
        return answer

    def _allow_reasons(self, request: PolicyRequest, candidate: Candidate, ids: list[str]) -> list[str]:
        facts = candidate.facts
        reasons = [render(self.bundle.policies[i].reason, facts) for i in ids if i in self.bundle.policies]
        if candidate.accreditation is not None:
            reasons.append(
                render("accreditation {accreditation} is valid until {accreditation_expires_on}", facts)
            )
        if candidate.agreement is not None:
            reasons.append(
                render(
                    "agreement {agreement} of {agreement_owner} covers dataset {dataset} for "
                    "{project_organisation}, purpose '{project_purpose}' and legal gateway "
                    "'{project_legal_gateway}' until {agreement_valid_to}",
                    facts,
                )
            )
        return reasons

    def _deny_reasons(
        self,
        request: PolicyRequest,
        cedar_input: CedarInput,
        results: Sequence[Answer],
        any_permit: bool,
    ) -> tuple[list[str], list[str]]:
        candidates = cedar_input.candidates
        fired: list[list[PolicyInfo]] = []
        for result in results:
            infos = [self.bundle.policies[i] for i in self._ids(result) if i in self.bundle.policies]
            fired.append([info for info in infos if info.effect == "forbid"])
        # Cedar names only the forbids when it denies; whether any permit applied at all is asked of
        # the permits alone (``permitted``), so "nobody permits this" is also Cedar's answer, not a guess.
        no_permit = [] if any_permit else [self._no_permit_reason(request, candidates[0].facts)]
        if not any(fired):
            return no_permit, []

        # A dimension (accreditation, agreement) is not to blame if some candidate passes all of its
        # conditions: then only the other dimensions' failures explain the deny.
        blamed: set[str] = {"general"}
        for dimension in ("accreditation", "agreement"):
            if all(any(_dimension(info) == dimension for info in infos) for infos in fired):
                blamed.add(dimension)

        general: list[str] = []
        accreditation: list[str] = []
        per_agreement: dict[str, list[str]] = {}
        policy_ids: list[str] = []
        for candidate, infos in zip(candidates, fired, strict=True):
            for info in infos:
                dimension = _dimension(info)
                if dimension not in blamed:
                    continue
                if info.id not in policy_ids:
                    policy_ids.append(info.id)
                text = render(info.reason, candidate.facts)
                if dimension == "agreement" and candidate.agreement is not None:
                    bucket = per_agreement.setdefault(candidate.agreement.reference, [])
                elif dimension == "accreditation":
                    bucket = accreditation
                else:
                    bucket = general
                if text not in bucket:
                    bucket.append(text)

        reasons = no_permit + general + accreditation
        if per_agreement and request.action in DATASET_ACTIONS and request.dataset and request.project:
            facts = candidates[0].facts
            reasons.append(
                render(
                    "no agreement of {dataset_owner} covers dataset {dataset} for {project_organisation} "
                    "(project {project})",
                    facts,
                )
                + ":"
            )
            listed = list(per_agreement.items())
            for _reference, texts in listed[:MAX_LISTED_AGREEMENTS]:
                reasons.extend(texts)
            if len(listed) > MAX_LISTED_AGREEMENTS:
                reasons.append(
                    f"... and {len(listed) - MAX_LISTED_AGREEMENTS} more agreements of "
                    f"{facts.get('dataset_owner', 'the owner')} fail too"
                )
        else:
            for texts in per_agreement.values():
                reasons.extend(texts)
        return reasons, policy_ids

    def _no_permit_reason(self, request: PolicyRequest, facts: Mapping[str, str]) -> str:
        roles = sorted({role for info in self.bundle.permits_for(request.action) for role in info.roles})
        needs = f"it needs the role {' or '.join(roles)}" if roles else "no policy permits it for anyone"
        return render(f"no policy permits {{user}} ({{user_roles}}) to {request.action}: {needs}", facts)

    # Database-backed decisions ------------------------------------------------------------------

    def decide(
        self,
        session: Session,
        user: User | Actor | None,
        action: str,
        *,
        project: Project | str | None = None,
        dataset: Dataset | str | None = None,
        columns: Sequence[str] | None = None,
        release: ReleaseLike | None = None,
        agreement: DataSharingAgreement | None = None,
        package: PackageLike | None = None,
        audit: bool = True,
    ) -> Decision:
        """Load the facts from the database, decide, and write the decision to the audit log.

        An allow is recorded in ``session``'s transaction (commit it with the change it permits); a
        deny is recorded and committed in a transaction of its own, because the caller's is about to
        be rolled back - unless ``session`` has already written (a second transaction would wait on
        its locks): then it goes into ``session``, and is written again on its own if ``session``'s
        transaction ends without a commit. A deny is never lost.

        Args:
            session: the caller's database session.
            user: the user (or :class:`Actor`) asking; None is the system/operator.
            action: one of :data:`policy.facts.ACTIONS`.
            project: the project (model or id) for project and dataset actions.
            dataset: the dataset (model or id) for read_dataset, build_view, ingest_dataset.
            columns: the columns asked for; None means every column the approval lists.
            release: the release request (anything with id, requester_id, project_id, checker_ids).
            agreement: the agreement being granted (grant_agreement), saved or not.
            package: the package request (request_package, approve_package), saved or not.
            audit: False only for previews that grant nothing (e.g. whether to show a button).
        """
        from tre_platform.policy.db import load_request

        request = load_request(
            session,
            user,
            action,
            project=project,
            dataset=dataset,
            columns=columns,
            release=release,
            agreement=agreement,
            package=package,
            today=clock.today(),
        )
        decision = self.evaluate(request)
        if audit:
            write_audit(session, decision, request)
        return decision

    def check(self, session: Session, user: User | Actor | None, action: str, **objects: Any) -> Decision:
        """Like :meth:`decide`, but raise :class:`PolicyDenied` (carrying the reasons) on a deny."""
        decision = self.decide(session, user, action, **objects)
        if not decision.allowed:
            raise PolicyDenied(decision.message(), reasons=decision.reasons)
        return decision

    def can(self, session: Session, user: User | Actor | None, action: str, **objects: Any) -> bool:
        """Like :meth:`decide`, answering only yes or no."""
        return self.decide(session, user, action, **objects).allowed


def write_audit(session: Session, decision: Decision, request: PolicyRequest) -> None:
    """Record ``decision`` in the audit log (allow: caller's transaction; deny: kept even on rollback)."""
    details: dict[str, Any] = {
        "bundle_hash": decision.bundle_hash,
        "policy_ids": decision.policy_ids,
        "principal_id": decision.principal_id,
        "today": request.today.isoformat(),
        "project_id": request.project.id if request.project else None,
        "dataset_id": request.dataset.id if request.dataset else None,
        "columns": list(request.columns) if request.columns is not None else None,
        "agreement": decision.agreement,
    }
    kwargs: dict[str, Any] = {
        "actor": decision.principal,
        "action": f"policy.{decision.action}",
        "target_type": decision.resource_type,
        "target_id": decision.resource_id,
        "decision": decision.effect,
        "reasons": decision.reasons,
        "details": details,
    }
    if decision.allowed:
        record(session, **kwargs)
    else:
        # A deny changes nothing and its caller usually rolls back (or rolls back the savepoint it is
        # in): the deny must be in the log all the same.
        record_kept(session, **kwargs)


@lru_cache(maxsize=4)
def _engine_for(policies_dir: Path) -> PolicyEngine:
    return PolicyEngine.load(policies_dir)


def get_engine() -> PolicyEngine:
    """The process-wide engine for ``get_settings().policies_dir`` (loaded and validated once)."""
    return _engine_for(get_settings().policies_dir.resolve())


def reload_engine() -> PolicyEngine:
    """Drop the cached engine and load the bundle again (after policies change)."""
    _engine_for.cache_clear()
    return get_engine()


def authorize(
    session: Session,
    user: User | Actor | None,
    action: str,
    *,
    project: Project | str | None = None,
    dataset: Dataset | str | None = None,
    columns: Sequence[str] | None = None,
    release: ReleaseLike | None = None,
    agreement: DataSharingAgreement | None = None,
    audit: bool = True,
) -> Decision:
    """The one call every enforcement point makes (view builder, spawner, airlock, API services).

    Returns the audited :class:`Decision`; callers that must stop on a deny use
    ``authorize(...).allowed`` or :func:`require`.

    Example:
        >>> decision = authorize(session, user, "read_dataset", project=project, dataset=hes,
        ...                      columns=["age", "sex"])
        >>> if not decision.allowed:
        ...     raise PolicyDenied(decision.message(), reasons=decision.reasons)
    """
    return get_engine().decide(
        session,
        user,
        action,
        project=project,
        dataset=dataset,
        columns=columns,
        release=release,
        agreement=agreement,
        audit=audit,
    )


def require(session: Session, user: User | Actor | None, action: str, **objects: Any) -> Decision:
    """:func:`authorize`, raising :class:`PolicyDenied` with the reasons when denied."""
    return get_engine().check(session, user, action, **objects)
