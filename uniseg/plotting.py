"""matplotlib for the pictures the project writes (dataset previews, the report's figures): the Agg
backend, so nothing needs a display, and one way to write a figure — atomically, as PNG."""

from __future__ import annotations

from pathlib import Path

from uniseg.fsio import atomic_path


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path) -> None:
    """Write a matplotlib figure as PNG (110 dpi), atomically, and free it."""
    import matplotlib.pyplot as plt

    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
