"""The accuracy plot is a real PNG whose curves come from OpenDP's stated accuracy."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import pytest

from tre_lib.privacy import InvalidParameterError, plot_accuracy


def test_plot_accuracy_writes_a_png(tmp_path: Path) -> None:
    out = plot_accuracy(tmp_path / "figs" / "accuracy.png", epsilons=[0.1, 0.5, 1.0, 5.0])
    assert out.exists()
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(out)
    height, width = image.shape[:2]
    assert width > height > 200
    # Not a blank canvas: lines and text make many distinct colours.
    assert len({tuple(px) for px in image.reshape(-1, image.shape[2])[::37]}) > 10


def test_plot_accuracy_needs_epsilons(tmp_path: Path) -> None:
    with pytest.raises(InvalidParameterError):
        plot_accuracy(tmp_path / "a.png", epsilons=[])
