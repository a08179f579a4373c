"""Disclosure-control rule parameters: a frozen dataclass, loaded from TOML profiles in ``policies/``.

Rule parameters are data, not code (house style rule 4): the numbers a data owner or tier needs live in
``policies/disclosure/profiles/<name>.toml``. The dataclass defaults mirror ``default.toml`` (a unit test
holds them equal) so that code without a profiles directory still behaves like the default profile.

Example:
    >>> from tre_lib.disclosure import load_profile
    >>> rules = load_profile("health-tier3")
    >>> rules.threshold
    10
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tre_lib.disclosure.errors import ProfileNotFoundError, RulesError

_CHOICES: dict[str, tuple[str, ...]] = {
    "zeros": ("flag", "suppress", "ignore"),
    "negative": ("review", "suppress"),
    "missing": ("report", "review"),
    "mitigation": ("suppress", "round"),
    "rounding_method": ("controlled", "nearest"),
}
_PROFILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclasses.dataclass(frozen=True)
class Rules:
    """Parameters of every disclosure-control rule.

    Attributes:
        name: the profile these rules came from ("custom" when built in code).
        description: free text shown in the record.
        threshold: minimum number of contributors of a published cell (cells with 0 < n < threshold fail).
        dominance_n: n of the (n,k)-dominance rule.
        dominance_k: k of the (n,k)-dominance rule, a fraction: a cell fails when its top n contributors
            make up more than k of its total.
        p_percent: p of the p% rule, a fraction: a cell fails when total - x1 - x2 < p * x1.
        zeros: what to do with empty cells: "flag" (publish, status review), "suppress" or "ignore".
        structural_zeros: cells (row key, column key) that are empty by definition and may be published.
        negative: what to do with a cell that has negative contributions: "review" or "suppress".
        missing: "report" missing values in the record only, or also ask for "review".
        allow_min_max: publish min/max tables (each cell is one contributor's value) after threshold checks.
        protection_level: required attacker-interval width of a suppressed magnitude cell, as a fraction
            of its value.
        count_protection: required attacker-interval width of a suppressed count cell; None means the
            threshold (so the attacker cannot rule out that the cell is at or above the threshold).
        insider_protection: also protect against the largest contributor of a suppressed cell, who knows
            their own value (magnitude tables).
        mitigation: "suppress" (primary + secondary suppression) or "round" (count tables only).
        rounding_base: base of rounding.
        rounding_method: "controlled" (additive: rows and columns still add to rounded margins) or
            "nearest" (each cell independently, not additive).
        min_residual_df: minimum residual degrees of freedom of a regression.
        unit: the column of the unit id the data owner counts contributors by (an index id, e.g.
            ``"person_id"`` or ``"business_id"``). Thresholds, dominance and p% then count distinct units and
            a unit's contribution is the sum of its records; None counts records (rows).
        max_cells: most cells (margins included) a table may have; a larger one is refused before any
            protection work.
    """

    name: str = "custom"
    description: str = ""
    threshold: int = 10
    dominance_n: int = 2
    dominance_k: float = 0.9
    p_percent: float = 0.10
    zeros: str = "flag"
    structural_zeros: tuple[tuple[Any, Any], ...] = ()
    negative: str = "review"
    missing: str = "report"
    allow_min_max: bool = False
    protection_level: float = 0.10
    count_protection: int | None = None
    insider_protection: bool = True
    mitigation: str = "suppress"
    rounding_base: int = 5
    rounding_method: str = "controlled"
    min_residual_df: int = 10
    unit: str | None = None
    max_cells: int = 100_000

    def __post_init__(self) -> None:
        self.validate()

    def validate(self, source: str | None = None) -> None:
        """Check every parameter; raise :class:`RulesError` naming the first bad one.

        Args:
            source: the file the values came from, quoted in the error.
        """
        _check_int(self, "threshold", source, minimum=1)
        _check_int(self, "dominance_n", source, minimum=1)
        _check_fraction(self, "dominance_k", source)
        _check_fraction(self, "p_percent", source)
        _check_fraction(self, "protection_level", source, allow_zero=True)
        _check_int(self, "rounding_base", source, minimum=2)
        _check_int(self, "min_residual_df", source, minimum=1)
        _check_int(self, "max_cells", source, minimum=1)
        if self.unit is not None and (not isinstance(self.unit, str) or not self.unit):
            raise RulesError("unit", f"must be a column name (e.g. 'person_id'), got {self.unit!r}", source)
        if self.count_protection is not None:
            _check_int(self, "count_protection", source, minimum=1)
        for key, allowed in _CHOICES.items():
            value = getattr(self, key)
            if value not in allowed:
                raise RulesError(key, f"got {value!r}; use one of {', '.join(allowed)}", source)
        for key in ("allow_min_max", "insider_protection"):
            if not isinstance(getattr(self, key), bool):
                raise RulesError(key, f"must be true or false, got {getattr(self, key)!r}", source)
        for key in ("name", "description"):
            if not isinstance(getattr(self, key), str):
                raise RulesError(key, "must be a string", source)
        for cell in self.structural_zeros:
            if not isinstance(cell, tuple) or len(cell) != 2:
                raise RulesError(
                    "structural_zeros", f"each entry must be a [row, column] pair, got {cell!r}", source
                )

    @property
    def required_count_width(self) -> int:
        """Attacker-interval width a suppressed count cell needs (count_protection or the threshold)."""
        return self.count_protection if self.count_protection is not None else self.threshold

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable parameters, for the disclosure-control record."""
        out = dataclasses.asdict(self)
        out["structural_zeros"] = [[_jsonable_key(r), _jsonable_key(c)] for r, c in self.structural_zeros]
        return out

    def replace(self, **changes: Any) -> Rules:
        """A copy with some parameters changed (validated like any other Rules)."""
        return from_mapping(changes, base=self)


def _jsonable_key(key: Any) -> Any:
    return list(key) if isinstance(key, tuple) else key


def _check_int(rules: Rules, key: str, source: str | None, minimum: int) -> None:
    value = getattr(rules, key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise RulesError(key, f"must be a whole number, got {value!r}", source)
    if value < minimum:
        raise RulesError(key, f"must be at least {minimum}, got {value}", source)


def _check_fraction(rules: Rules, key: str, source: str | None, allow_zero: bool = False) -> None:
    value = getattr(rules, key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RulesError(key, f"must be a number between 0 and 1, got {value!r}", source)
    low_ok = value >= 0 if allow_zero else value > 0
    if not (low_ok and value <= 1):
        raise RulesError(
            key,
            f"must be a fraction in {'[0' if allow_zero else '(0'}, 1], got {value} (write 10% as 0.1)",
            source,
        )


_FIELDS = {f.name for f in dataclasses.fields(Rules)}


def from_mapping(data: Mapping[str, Any], base: Rules | None = None, source: str | None = None) -> Rules:
    """Build Rules from a mapping of parameter names, starting from ``base`` (the defaults if None).

    Args:
        data: parameter names and values; unknown names are an error.
        base: rules to start from.
        source: file name quoted in errors.

    Returns:
        Validated rules.

    Raises:
        RulesError: an unknown parameter or a bad value.
    """
    values = dataclasses.asdict(base) if base is not None else {}
    if base is not None:
        values["structural_zeros"] = base.structural_zeros
    for key, value in data.items():
        if key not in _FIELDS:
            raise RulesError(key, f"unknown parameter; known ones are {', '.join(sorted(_FIELDS))}", source)
        if key == "structural_zeros":
            value = _parse_structural_zeros(value, source)
        values[key] = value
    try:
        return Rules(**values)
    except RulesError as err:
        if source is not None and err.source is None:
            raise RulesError(err.key, err.detail, source) from None
        raise


def _parse_structural_zeros(value: Any, source: str | None) -> tuple[tuple[Any, Any], ...]:
    if not isinstance(value, list | tuple):
        raise RulesError("structural_zeros", "must be a list of [row, column] pairs", source)
    cells: list[tuple[Any, Any]] = []
    for item in value:
        if not isinstance(item, list | tuple) or len(item) != 2:
            raise RulesError(
                "structural_zeros", f"each entry must be a [row, column] pair, got {item!r}", source
            )
        row, col = (tuple(k) if isinstance(k, list) else k for k in item)
        cells.append((row, col))
    return tuple(cells)


def default_profiles_dir() -> Path:
    """The repository's ``policies/disclosure/profiles`` (deployments pass ``directory=`` instead)."""
    return Path(__file__).resolve().parents[2] / "policies" / "disclosure" / "profiles"


def load_profile(name: str, directory: str | Path | None = None) -> Rules:
    """Load and validate a disclosure-control profile ``<directory>/<name>.toml``.

    A profile file has an optional top-level ``description`` and ``extends = "<other profile>"`` and a
    ``[rules]`` table whose keys are :class:`Rules` fields.

    Args:
        name: profile name, e.g. ``"default"`` or ``"health-tier3"``.
        directory: where profiles live; defaults to the repository's ``policies/disclosure/profiles``.

    Returns:
        The validated rules, with ``name`` set to the profile name.

    Raises:
        ProfileNotFoundError: no such profile (the message lists those that exist).
        RulesError: a bad key or value; the message names the file and the key.
    """
    return _load_profile(name, Path(directory) if directory is not None else default_profiles_dir(), ())


def _load_profile(name: str, directory: Path, seen: tuple[str, ...]) -> Rules:
    if not isinstance(name, str) or not _PROFILE_NAME.match(name):
        raise ProfileNotFoundError(f"{name!r} is not a profile name (letters, digits, '-', '_', '.')")
    path = directory / f"{name}.toml"
    if not path.is_file():
        known = sorted(p.stem for p in directory.glob("*.toml")) if directory.is_dir() else []
        raise ProfileNotFoundError(
            f"no disclosure profile {name!r} in {directory}; known profiles: {', '.join(known) or 'none'}. "
            "Pass directory= to load_profile to use another folder."
        )
    source = str(path)
    if name in seen:
        raise RulesError(
            "extends", f"profiles extend each other in a cycle: {' -> '.join((*seen, name))}", source
        )
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise RulesError("(file)", f"is not valid TOML: {err}", source) from None
    unknown = set(doc) - {"description", "extends", "rules"}
    if unknown:
        raise RulesError(
            sorted(unknown)[0], "unknown top-level key; use description, extends and a [rules] table", source
        )
    body = doc.get("rules", {})
    if not isinstance(body, dict):
        raise RulesError("rules", "must be a table ([rules])", source)
    base: Rules | None = None
    if "extends" in doc:
        if not isinstance(doc["extends"], str):
            raise RulesError("extends", "must be the name of another profile", source)
        base = _load_profile(doc["extends"], directory, (*seen, name))
    for key in ("name", "description"):
        if key in body:
            raise RulesError(key, "is set from the file name / top-level description, not in [rules]", source)
    description = doc.get("description", "")
    if not isinstance(description, str):
        raise RulesError("description", "must be a string", source)
    return from_mapping({**body, "name": name, "description": description}, base=base, source=source)


def coerce_rules(rules: Rules | Mapping[str, Any] | str | None, directory: str | Path | None = None) -> Rules:
    """Accept a profile name, a mapping of parameters, a Rules object or None (the defaults).

    A mapping may name ``"profile"`` to start from a profile and override some of its parameters, e.g.
    ``{"profile": "health-tier3", "mitigation": "round"}``.
    """
    if rules is None:
        return Rules(name="default")
    if isinstance(rules, Rules):
        return rules
    if isinstance(rules, str):
        return load_profile(rules, directory)
    if isinstance(rules, Mapping):
        data = dict(rules)
        profile = data.pop("profile", None)
        base = load_profile(profile, directory) if profile is not None else None
        return from_mapping(data, base=base)
    raise RulesError("rules", f"must be a profile name, a dict or a Rules object, got {type(rules).__name__}")
