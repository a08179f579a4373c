"""Identifiers an index matches on, declared as data (``policies/indexes/<kind>.toml``).

A declaration names each identifier with the normaliser and the Splink comparison it uses, how it may
block, and the column names that mean it. Everything the matcher needs for a delivery (the normalised
attributes, Splink's comparisons, blocking rules, EM sessions, deterministic keys) is derived from the
declaration and the subset of identifiers the delivery actually carries, so no dataset needs its own spec.

Example:
    >>> people = load_declaration("demographic")
    >>> people.identifier_for("surname")
    'family_name'
    >>> rules = people.blocking_rules(frozenset({"given_name_canonical", "family_name", "dob"}))
"""

from __future__ import annotations

import itertools
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd
import splink.comparison_level_library as cll
import splink.comparison_library as cl
from splink import block_on

from tre_lib.indexing import normalise as nz

BLOCKING_KINDS = ("alone", "pair", "none")


class DeclarationError(ValueError):
    """An index declaration is malformed; the message names the file and what to change."""


def _given_name(series: pd.Series) -> dict[str, pd.Series]:
    given = nz.normalise_name(series)
    return {"given_name": given, "given_name_canonical": nz.canonical_given_name(given)}


#: Normaliser name -> function of a raw column returning one or more normalised attributes.
NORMALISERS: dict[str, Callable[[pd.Series], pd.Series | dict[str, pd.Series]]] = {
    "name": nz.normalise_name,
    "given_name": _given_name,
    "date": nz.normalise_date,
    "sex": nz.normalise_sex,
    "postcode": nz.normalise_postcode,
    "code": nz.normalise_code,
    "nhs_number": nz.normalise_nhs_number,
    "ni_number": nz.normalise_ni_number,
}


def postcode_comparison(column: str = "postcode") -> Any:
    """A postcode or zip of any country: exact, one character different, same first three, else.

    Splink's ``PostcodeComparison`` finds UK sectors and districts with UK-shaped regular expressions and
    treats every other country's codes as unparseable; these levels work for any alphanumeric code.
    """
    return cl.CustomComparison(
        output_column_name=column,
        comparison_description="Postcode",
        comparison_levels=[
            cll.NullLevel(column),
            cll.ExactMatchLevel(column).configure(label_for_charts="Exact match"),
            cll.DamerauLevenshteinLevel(column, 1).configure(label_for_charts="One character different"),
            cll.CustomLevel(
                f"substr({column}_l, 1, 3) = substr({column}_r, 1, 3)", label_for_charts="Same first three"
            ),
            cll.ElseLevel(),
        ],
    )


def _dob(column: str) -> Any:
    from tre_lib.indexing.spec import dob_comparison

    return dob_comparison(column)


#: Comparison name -> factory of a Splink comparison on one column.
COMPARISONS: dict[str, Callable[[str], Any]] = {
    "name": cl.NameComparison,
    "date_of_birth": _dob,
    "exact": cl.ExactMatch,
    "exact_or_typo": lambda c: cl.DamerauLevenshteinAtThresholds(c, [1, 2]),
    "text": lambda c: cl.JaroWinklerAtThresholds(c, [0.9, 0.7]),
    "postcode": postcode_comparison,
}


@dataclass(frozen=True)
class Identifier:
    """One declared identifier.

    Attributes:
        name: What schemas map to (``maps_to``) and the index stores.
        normaliser: Key of :data:`NORMALISERS`.
        comparison: Key of :data:`COMPARISONS`.
        compare_on: The normalised attribute Splink compares (default: ``name``).
        blocking: ``alone`` | ``pair`` | ``none`` (see the TOML file's header).
        aliases: Other column names meaning this identifier.
        description: Shown to data owners.
    """

    name: str
    normaliser: str
    comparison: str
    compare_on: str = ""
    blocking: str = "none"
    aliases: tuple[str, ...] = ()
    description: str = ""

    @property
    def attribute(self) -> str:
        """The normalised attribute compared and blocked on."""
        return self.compare_on or self.name


@dataclass(frozen=True)
class IndexDeclaration:
    """Every identifier of an index kind, its deterministic keys and term-frequency columns."""

    kind: str
    identifiers: tuple[Identifier, ...]
    deterministic_keys: tuple[tuple[str, ...], ...] = ()
    term_frequency: tuple[str, ...] = ()
    max_blanked_share: float = 0.2
    source: str = ""
    _by_alias: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def inputs(self) -> tuple[str, ...]:
        """Identifier names, in declared order (the raw inputs of the index)."""
        return tuple(i.name for i in self.identifiers)

    def identifier_for(self, column: str) -> str | None:
        """The identifier a column name means (its own name or an alias, any case), or None."""
        return self._by_alias.get(column.strip().lower())

    def get(self, name: str) -> Identifier:
        """The identifier called ``name``.

        Raises:
            KeyError: With the declared names.
        """
        for ident in self.identifiers:
            if ident.name == name:
                return ident
        raise KeyError(f"{name!r} is not a {self.kind} identifier; declared: {', '.join(self.inputs)}")

    def normalise(self, raw: pd.DataFrame) -> pd.DataFrame:
        """Normalise raw columns named as the identifiers (absent ones count as missing)."""
        out: dict[str, pd.Series] = {}
        for ident in self.identifiers:
            column = raw[ident.name] if ident.name in raw else pd.Series(None, index=raw.index, dtype=object)
            result = NORMALISERS[ident.normaliser](column.astype(object))
            out.update(result if isinstance(result, dict) else {ident.name: result})
        return pd.DataFrame(out, index=raw.index)

    def blanked(self, raw: pd.DataFrame, normalised: pd.DataFrame) -> dict[str, float]:
        """Share of each identifier's present raw values its normaliser blanked (identifiers present only)."""
        shares: dict[str, float] = {}
        for ident in self.identifiers:
            if ident.name not in raw:
                continue
            text = raw[ident.name].astype("string").str.strip()
            present = text.notna() & (text.str.len() > 0)
            n = int(present.sum())
            if n:
                kept = normalised[ident.name].notna() & present
                shares[ident.name] = round(1.0 - int(kept.sum()) / n, 4)
        return shares

    def _available(self, available: frozenset[str]) -> list[Identifier]:
        return [i for i in self.identifiers if i.attribute in available]

    def comparisons(self, available: frozenset[str]) -> list[Any]:
        """Splink comparisons for the identifiers the delivery carries."""
        return [COMPARISONS[i.comparison](i.attribute) for i in self._available(available)]

    def blocking_rules(self, available: frozenset[str]) -> list[Any]:
        """Each ``alone`` identifier on its own, and every pair of ``pair`` identifiers.

        A true match escapes only if every rule has a disagreeing field: with k pair identifiers, only a
        record that agrees exactly on at most one of them. Pairs of independent fields keep each block
        small (a common name alone would give thousands of candidates per record in a national index).
        """
        present = self._available(available)
        rules = [block_on(i.attribute) for i in present if i.blocking == "alone"]
        paired = [i.attribute for i in present if i.blocking == "pair"]
        rules += [block_on(a, b) for a, b in itertools.combinations(paired, 2)]
        if not rules and paired:
            rules = [block_on(paired[0])]
        return rules

    def blocking_fields(self, available: frozenset[str]) -> list[tuple[str, ...]]:
        """The attributes of each blocking rule from :meth:`blocking_rules` (for the recall estimate)."""
        present = self._available(available)
        fields: list[tuple[str, ...]] = [(i.attribute,) for i in present if i.blocking == "alone"]
        paired = [i.attribute for i in present if i.blocking == "pair"]
        fields += list(itertools.combinations(paired, 2))
        if not fields and paired:
            fields = [(paired[0],)]
        return fields

    def em_rules(self, available: frozenset[str]) -> list[Any]:
        """EM sessions: until each comparison has been trained outside at least one session's rule.

        Candidates in order: each ``alone`` identifier (about one candidate per record, nearly all
        matches), each single ``pair`` identifier of date type, then pairs of ``pair`` identifiers.
        """
        present = self._available(available)
        compared = {i.attribute for i in present}
        candidates: list[tuple[str, ...]] = [(i.attribute,) for i in present if i.blocking == "alone"]
        candidates += [(i.attribute,) for i in present if i.blocking == "pair" and i.normaliser == "date"]
        paired = [i.attribute for i in present if i.blocking == "pair"]
        candidates += list(itertools.combinations(paired, 2))
        chosen: list[tuple[str, ...]] = []
        trained: set[str] = set()
        for rule in candidates:
            if trained >= compared and len(chosen) >= 2:
                break
            if not (compared - set(rule)) - trained and chosen:
                continue
            chosen.append(rule)
            trained |= compared - set(rule)
        return [block_on(*rule) for rule in chosen]

    def prior_rules(self, available: frozenset[str]) -> list[tuple[str, ...]]:
        """Deterministic keys the delivery carries (for the prior and the deterministic pass)."""
        return [k for k in self.deterministic_keys if set(k) <= available]


def default_directory() -> Path:
    """The repository's ``policies/indexes`` (deployments pass ``directory=`` instead)."""
    return Path(__file__).resolve().parents[2] / "policies" / "indexes"


def parse_declaration(text: str, source: str = "<string>") -> IndexDeclaration:
    """Parse and check a declaration's TOML text.

    Raises:
        DeclarationError: Unknown normaliser/comparison/blocking, or a key naming an undeclared attribute.
    """
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DeclarationError(f"{source}: not valid TOML ({exc})") from exc
    head = doc.get("index", {})
    idents: list[Identifier] = []
    for name, body in (doc.get("identifiers") or {}).items():
        for key, allowed, what in (
            ("normaliser", NORMALISERS, "normaliser"),
            ("comparison", COMPARISONS, "comparison"),
        ):
            if body.get(key) not in allowed:
                raise DeclarationError(
                    f"{source}: identifier {name!r} has {what} {body.get(key)!r}; "
                    f"use one of {sorted(allowed)}"
                )
        if body.get("blocking", "none") not in BLOCKING_KINDS:
            raise DeclarationError(f"{source}: identifier {name!r}: blocking must be one of {BLOCKING_KINDS}")
        idents.append(
            Identifier(
                name=name,
                normaliser=body["normaliser"],
                comparison=body["comparison"],
                compare_on=body.get("compare_on", ""),
                blocking=body.get("blocking", "none"),
                aliases=tuple(str(a).lower() for a in body.get("aliases", [])),
                description=body.get("description", ""),
            )
        )
    if not idents:
        raise DeclarationError(f"{source}: declares no [identifiers.<name>]")
    by_alias: dict[str, str] = {}
    for ident in idents:
        for alias in (ident.name, *ident.aliases):
            if by_alias.setdefault(alias, ident.name) != ident.name:
                raise DeclarationError(f"{source}: {alias!r} names both {by_alias[alias]} and {ident.name}")
    declaration = IndexDeclaration(
        kind=str(head.get("kind", "")),
        identifiers=tuple(idents),
        deterministic_keys=tuple(tuple(k) for k in head.get("deterministic_keys", [])),
        term_frequency=tuple(head.get("term_frequency", [])),
        max_blanked_share=float(head.get("max_blanked_share", 0.2)),
        source=source,
        _by_alias=by_alias,
    )
    attributes = {i.attribute for i in idents} | {i.name for i in idents}
    for det_key in declaration.deterministic_keys:
        if not set(det_key) <= attributes:
            raise DeclarationError(
                f"{source}: deterministic key {list(det_key)} names undeclared identifiers"
            )
    return declaration


@cache
def _load(path: Path) -> IndexDeclaration:
    return parse_declaration(path.read_text(encoding="utf-8"), str(path))


def declared_kinds(directory: Path | None = None) -> tuple[str, ...]:
    """Index kinds with a declaration file."""
    return tuple(sorted(p.stem for p in (directory or default_directory()).glob("*.toml")))


def load_declaration(kind: str, directory: Path | None = None) -> IndexDeclaration:
    """The declaration of an index kind (``<directory>/<kind>.toml``).

    Raises:
        DeclarationError: No such file, or it is malformed.
    """
    path = (directory or default_directory()) / f"{kind}.toml"
    if not path.exists():
        raise DeclarationError(f"no identifier declaration for the {kind} index at {path}")
    return _load(path.resolve())
