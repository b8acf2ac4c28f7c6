"""Pictures of a dataset for a person to look at: images above their coloured label maps."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image


def write_grid(
    images: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    classes: Sequence[str],
    title: str,
    out: str | Path,
) -> None:
    """A grid with one column per sample: the RGB image on top, its label map below (legend of the
    classes present; ignore is black)."""
    from uniseg.colours import colourise, legend_handles
    from uniseg.plotting import pyplot, save_figure

    plt = pyplot()

    n = len(images)
    h, w = images[0].shape[:2]
    fig, axes = plt.subplots(2, n, figsize=(2.6 * n * w / h / 2 + 2.2, 2 * 1.4 + 0.6), squeeze=False)
    present: set[int] = set()
    for k in range(n):
        axes[0, k].imshow(images[k])
        axes[1, k].imshow(colourise(labels[k], classes), interpolation="nearest")
        present |= set(np.unique(labels[k]).tolist())
        for ax in axes[:, k]:
            ax.axis("off")
    shown = [c for i, c in enumerate(classes) if i in present]
    fig.legend(handles=legend_handles(shown), loc="center right", fontsize=6, frameon=False)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0, 0.82, 0.95))
    save_figure(fig, out)


def preview_layout(root: str | Path, out: str | Path, n: int = 4) -> None:
    """Preview of a dataset in the canonical layout (layout.py): its first n samples of the first split."""
    from uniseg.datasets.layout import list_samples, read_meta

    meta = read_meta(root)
    split = next(s for s in ("train", "val", "test") if meta.splits.get(s))
    samples = list_samples(root, split)[:n]
    images = [np.asarray(Image.open(s.image).convert("RGB")) for s in samples]
    labels = [np.asarray(Image.open(s.label)) for s in samples]
    write_grid(
        images,
        labels,
        meta.classes,
        f"{meta.name} ({meta.source}, {split}): {len(meta.classes)} classes",
        out,
    )


def write_note(title: str, text: str, out: str | Path) -> None:
    """A picture that says why there is nothing to show (an optional dataset that is absent)."""
    import textwrap

    from uniseg.plotting import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 1.6))
    ax.axis("off")
    ax.text(0.0, 0.5, title + "\n" + textwrap.fill(text, 90), fontsize=7, va="center", ha="left")
    save_figure(fig, out)
