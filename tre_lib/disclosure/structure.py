"""The additive structure of a table: its cells and the equations "margin = sum of its parts".

Every cell of a table (interior and margin) is one variable; every published margin gives one linear
equation. The attacker audit, secondary suppression and controlled rounding all work on this one
structure, so a 1-D table (one equation: total = sum of cells), a 2-D table with row and column margins and a
table with hierarchical (multi-level) index or columns are handled by the same code.

Keys are tuples, one entry per level. A margin at level ``i`` has ``MARGIN`` ("All") at levels ``i..``;
its children are the keys one level deeper with the same prefix. A table without column variables has the
single column key ``()``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MARGIN = "All"

Key = tuple[Hashable, ...]
CellKey = tuple[Key, Key]


def margin_level(key: Key, margin_name: str = MARGIN) -> int:
    """Index of the first margin entry of a key (len(key) for a leaf)."""
    for i, part in enumerate(key):
        if part == margin_name:
            return i
    return len(key)


def hierarchy(keys: Sequence[Key], margin_name: str = MARGIN) -> dict[Key, list[Key]]:
    """Map each margin key to its direct children among ``keys``.

    A key with a margin at level ``i`` (and at every level after it; pandas writes ``""`` after the first
    margin of a MultiIndex, which is read the same way) sums the keys whose first ``i`` parts are equal and
    whose margin level is one deeper.
    """
    normalised = [_normalise(k, margin_name) for k in keys]
    by_level: dict[int, list[Key]] = defaultdict(list)
    for key in normalised:
        by_level[margin_level(key, margin_name)].append(key)
    children: dict[Key, list[Key]] = {}
    for key in normalised:
        level = margin_level(key, margin_name)
        if level == len(key):
            continue
        prefix = key[:level]
        children[key] = [k for k in by_level.get(level + 1, []) if k[:level] == prefix]
    return children


def _normalise(key: Key, margin_name: str) -> Key:
    level = margin_level(key, margin_name)
    if level < len(key):
        return (*key[:level], *([margin_name] * (len(key) - level)))
    return key


@dataclass
class TableStructure:
    """Cells of a table and the additive equations between them.

    Attributes:
        row_keys: row keys in display order.
        col_keys: column keys in display order.
        cells: every (row key, column key), row-major.
        equations: (total cell index, component cell indices) for each published margin relation.
        is_margin: per cell, whether it is a margin (in either direction).
    """

    row_keys: list[Key]
    col_keys: list[Key]
    cells: list[CellKey] = field(init=False)
    index: dict[CellKey, int] = field(init=False)
    equations: list[tuple[int, list[int]]] = field(init=False)
    is_margin: np.ndarray = field(init=False)
    margin_name: str = MARGIN

    def __post_init__(self) -> None:
        self.row_keys = [_normalise(k, self.margin_name) for k in self.row_keys]
        self.col_keys = [_normalise(k, self.margin_name) for k in self.col_keys]
        self.cells = [(r, c) for r in self.row_keys for c in self.col_keys]
        self.index = {cell: i for i, cell in enumerate(self.cells)}
        row_children = hierarchy(self.row_keys, self.margin_name)
        col_children = hierarchy(self.col_keys, self.margin_name)
        equations: list[tuple[int, list[int]]] = []
        for parent, kids in row_children.items():
            if kids:
                for c in self.col_keys:
                    equations.append((self.index[(parent, c)], [self.index[(k, c)] for k in kids]))
        for parent, kids in col_children.items():
            if kids:
                for r in self.row_keys:
                    equations.append((self.index[(r, parent)], [self.index[(r, k)] for k in kids]))
        self.equations = equations
        self.is_margin = np.array(
            [
                margin_level(r, self.margin_name) < len(r) or margin_level(c, self.margin_name) < len(c)
                for r, c in self.cells
            ],
            dtype=bool,
        )
        self._flat: tuple[np.ndarray, np.ndarray] | None = None
        self._cell_equations: list[list[int]] = [[] for _ in self.cells]
        for e, (total, parts) in enumerate(self.equations):
            for i in (total, *parts):
                self._cell_equations[i].append(e)

    def flat_members(self) -> tuple[np.ndarray, np.ndarray]:
        """Every (cell, equation) membership as two aligned arrays, for counting per equation with numpy."""
        if self._flat is None:
            cells = [m for e in range(len(self.equations)) for m in self.members(e)]
            owners = [e for e in range(len(self.equations)) for _ in self.members(e)]
            self._flat = (np.asarray(cells, dtype=np.int64), np.asarray(owners, dtype=np.int64))
        return self._flat

    @property
    def size(self) -> int:
        """Number of cells."""
        return len(self.cells)

    def equations_of(self, cell: int) -> list[int]:
        """Indices of the equations a cell takes part in."""
        return self._cell_equations[cell]

    def members(self, equation: int) -> list[int]:
        """All cells of an equation, the total first."""
        total, parts = self.equations[equation]
        return [total, *parts]

    def check_additive(self, values: np.ndarray, rtol: float = 1e-9) -> list[int]:
        """Equations that the given values break (empty for an additive table)."""
        broken = []
        for e, (total, parts) in enumerate(self.equations):
            expected = float(np.sum(values[parts]))
            if not np.isclose(values[total], expected, rtol=rtol, atol=1e-9 * max(1.0, abs(expected))):
                broken.append(e)
        return broken


def as_key(label: Any, nlevels: int) -> Key:
    """A pandas index label as a key tuple of ``nlevels`` parts."""
    if nlevels == 0:
        return ()
    if isinstance(label, tuple):
        return tuple(label)
    return (label,)
