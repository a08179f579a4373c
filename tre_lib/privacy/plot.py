"""Plot of stated accuracy against ε, for the README and the UI."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tre_lib.privacy.errors import InvalidParameterError
from tre_lib.privacy.mechanisms import DEFAULT_ALPHA, DEFAULT_MAX_ROWS, Bounds, expected_accuracy


def plot_accuracy(
    path: str | os.PathLike[str],
    *,
    epsilons: Sequence[float] | None = None,
    bounds: Bounds = (0.0, 100.0),
    n_rows: int = 1000,
    contributions: int = 1,
    max_rows: int = DEFAULT_MAX_ROWS,
    alpha: float = DEFAULT_ALPHA,
) -> Path:
    """Save a PNG of the stated confidence-interval half-width of ``dp_count`` and ``dp_mean`` against ε.

    The accuracies come from OpenDP's accuracy utilities on an empty frame (see
    :func:`tre_lib.privacy.expected_accuracy`), so no data is read and no budget is spent. Uses matplotlib's
    Agg canvas directly, so it works headless and never touches pyplot's global state.

    Args:
        path: Where to write the PNG (parent directories are created).
        epsilons: ε values to plot; default 20 log-spaced values from 0.05 to 10.
        bounds: Clamp bounds of the mean (the unit of its axis).
        n_rows: Rows assumed for the mean (its accuracy depends on the group size).
        contributions: Rows one person may contribute.
        max_rows: Public upper bound on the rows.
        alpha: Significance (0.05: 95% intervals).

    Returns:
        The path written.

    Example:
        >>> import tempfile, pathlib
        >>> out = plot_accuracy(pathlib.Path(tempfile.mkdtemp()) / "acc.png", epsilons=[0.5, 1, 2])
        >>> out.read_bytes()[:4] == b"\\x89PNG"
        True
    """
    eps = list(np.geomspace(0.05, 10.0, 20)) if epsilons is None else [float(e) for e in epsilons]
    if not eps:
        raise InvalidParameterError("epsilons must list at least one value")
    eps = sorted(eps)
    common = {"contributions": contributions, "max_rows": max_rows, "alpha": alpha}
    count_acc = [expected_accuracy("count", e, **common) for e in eps]  # type: ignore[arg-type]
    mean_acc = [
        expected_accuracy("mean", e, bounds=bounds, n_rows=n_rows, **common)  # type: ignore[arg-type]
        for e in eps
    ]

    fig = Figure(figsize=(9, 3.8), layout="constrained")
    FigureCanvasAgg(fig)
    level = f"{(1 - alpha) * 100:g}%"
    for ax, values, title, unit in (
        (fig.add_subplot(1, 2, 1), count_acc, "dp_count", "records"),
        (fig.add_subplot(1, 2, 2), mean_acc, f"dp_mean, bounds {bounds}, n={n_rows}", "value units"),
    ):
        ax.plot(eps, values, marker="o", markersize=3)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("ε (privacy-loss parameter)")
        ax.set_ylabel(f"{level} CI half-width ({unit})")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(f"Stated accuracy (OpenDP) vs ε — each person contributes ≤ {contributions} row(s)")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", dpi=110)
    return out
