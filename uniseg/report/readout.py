"""The union readout in the report: a table per model (outside-space top-1 right, and for sigmoid models
its probability above 0.5, on each training dataset's val images) and Figure-4-like panels (the paper's
Figure 4: dataset-space top-1 | outside-space top-1, shaded by its probability | multi-label, the
outside class where its probability exceeds 0.5), from what the evaluation stored."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from uniseg.plotting import pyplot, save_figure
from uniseg.report.stored import stored_samples
from uniseg.report.tables import markdown_table
from uniseg.scores import CONFIDENT, FULL_IOU, FULL_IOU_REACHABLE, TOP1, Metrics, read_outside_examples

THRESHOLD = 0.5  # the paper's multi-label threshold (readout.THRESHOLD; not imported: no torch here)
MEASURES = (
    (TOP1, "top-1"),
    (CONFIDENT, "p > 0.5"),
    (FULL_IOU, "full-union IoU"),
    (FULL_IOU_REACHABLE, "full-union IoU, reachable"),
)


def _fmt(v) -> str:
    return "–" if v is None else f"{v:.1f}"


def readout_section(metrics: Metrics, titles: dict[str, str]) -> list[str]:
    """results.md's union readout: per model, each training dataset's readout and the mean, then the
    world classes read for the first model that has them."""
    models = [m for m in metrics.models if metrics.has(m, "union")]
    if not models:
        return []
    names = metrics.datasets("union")
    rows = [
        [titles[model], label]
        + [_fmt(metrics.readout(model, n, key)) for n in names]
        + [_fmt(metrics.readout(model, key=key))]
        for model in models
        for key, label in MEASURES
        if metrics.readout(model, key=key) is not None
    ]
    first = models[0]
    classes = [
        [name, world] + [_fmt(metrics.readout_classes(m, name).get(world)) for m in models]
        for name in names
        for world in metrics.readout_classes(first, name)
    ]
    return [
        "## Union readout: fine classes outside a dataset's label space (where C-R BCE acts)",
        "",
        "On each training dataset's val images, the pixels of every world class that another training "
        "dataset names with a class outside this dataset's label space (Cityscapes' lane markings are "
        "Mapillary's `lane marking - general`, IDD's grass is the others' `terrain`): the top-1 among the "
        "union classes outside the dataset's space, read as the paper's Figure 4 reads it. *top-1*: % of "
        "those pixels (mean over the world classes) whose top-1 is such a name; *p > 0.5*: % whose such "
        "name also has probability above 0.5 (sigmoid models). *full-union IoU*: per union class c′ outside "
        "the dataset's space that another dataset names (a cell), the IoU between the pixels whose argmax "
        "over the whole union is c′ and the pixels another dataset names c′ — false positives count too, "
        "the same for softmax and sigmoid — averaged over the cells, and over the cells a relation can "
        "reach (a class of the dataset's own space covers the pixels, so eq. 6 could add c′ as secondary "
        "label; marked from the label tables).",
        "",
        *markdown_table(["model", "measure", *names, "mean"], rows, "ll" + "r" * (len(names) + 1)),
        "",
        "Top-1 per world class:",
        "",
        *markdown_table(
            ["images", "world class", *(titles[m] for m in models)], classes, "ll" + "r" * len(models)
        ),
        "",
        *_cells(metrics, models, names, titles),
    ]


def _cells(metrics: Metrics, models: list[str], names: list[str], titles: dict[str, str]) -> list[str]:
    """The full-union IoU per cell (reachable cells marked), where the evaluation measured it."""
    rows = [
        [name, cell + (" (reachable)" if cell in metrics.reachable_cells(models[0], name) else "")]
        + [_fmt(metrics.readout_classes(m, name, FULL_IOU).get(cell)) for m in models]
        for name in names
        for cell in metrics.readout_classes(models[0], name, FULL_IOU)
    ]
    if not rows:
        return []
    header = ["images", "union class (cell)", *(titles[m] for m in models)]
    return ["Full-union IoU per cell:", "", *markdown_table(header, rows, "ll" + "r" * len(models)), ""]


def draw_readout(eval_dir: Path, details: dict, labels: dict, datasets, shards: Path, path: Path) -> bool:
    """The Figure-4-like panels of the models whose evaluation stored the readout's examples. details:
    {model: its details.json "model" block}; labels: {model: scores.read_examples(...)}."""
    outside = {m: read_outside_examples(eval_dir, m) for m, d in details.items() if d.get("union")}
    union = {m: details[m]["union"] for m in outside}
    titles = {m: f"{m} ({details[m].get('loss', m)})" for m in outside}
    return plot_readout(readout_rows(labels, outside, union, datasets, shards, titles), path)


def readout_rows(
    labels: dict[str, dict],
    outside: dict[str, dict],
    union: dict[str, list[str]],
    datasets: Sequence[str],
    shards: Path,
    titles: dict[str, str],
) -> list[dict]:
    """Rows for plot_readout: per stored training-set image, the image and each model's dataset-space
    top-1 (labels[model][dataset][key]) and outside-space top-1 with its probability
    (outside[model][dataset][key]); union[model] names the union indices."""
    rows = []
    for name, key, sample, space in stored_samples(outside, datasets, shards):
        models = [m for m in outside if key in outside[m].get(name, {}) and key in labels[m].get(name, {})]
        rows.append(
            {
                "title": f"{name}: {key}",
                "image": sample.image,
                "space": space,
                "models": [
                    (titles[m], labels[m][name][key], *outside[m][name][key], union[m]) for m in models
                ],
            }
        )
    return rows


def plot_readout(rows: list[dict], path: Path) -> bool:
    """Per image and model: dataset-space top-1 | outside-space top-1 (colour shaded by its probability) |
    multi-label (the outside class where its probability exceeds 0.5, else the dataset-space top-1)."""
    from uniseg.colours import colourise, legend_handles

    if not rows:
        return False
    plt = pyplot()
    lines = [(row, model) for row in rows for model in row["models"]]
    fig, axes = plt.subplots(len(lines), 4, figsize=(14, 1.9 * len(lines) + 0.6), squeeze=False)
    legend: list[str] = []
    for ax_row, (row, (title, own, top1, score, union)) in zip(axes, lines, strict=True):
        space = row["space"]
        own_names = np.asarray(space + ["ignore"] * (256 - len(space)), dtype=object)[own]
        top1_names = np.asarray(union + ["ignore"] * (256 - len(union)), dtype=object)[top1]
        multi = np.where(score > THRESHOLD, top1_names, own_names)
        panels = [
            (row["image"], f"{row['title']}"),
            (colourise(own, space), f"{title}: {row['title'].split(':')[0]} space, top-1"),
            ((colourise(top1, union) * score[..., None]).astype(np.uint8), "outside the space: top-1 × p"),
            (colourise(_indices(multi, union), union), f"multi-label (p > {THRESHOLD})"),
        ]
        for ax, (picture, label) in zip(ax_row, panels, strict=True):
            ax.imshow(picture, interpolation="nearest")
            ax.set_title(label, fontsize=7)
            ax.axis("off")
        legend += [c for c in np.unique(multi) if c != "ignore" and c not in legend]
    fig.legend(handles=legend_handles(legend), loc="center right", fontsize=6, frameon=False)
    fig.tight_layout(rect=(0, 0, 0.84, 1))
    save_figure(fig, path)
    return True


def _indices(names: np.ndarray, classes: list[str]) -> np.ndarray:
    position = {c: k for k, c in enumerate(classes)}
    return np.vectorize(lambda n: position.get(n, 255), otypes=[np.uint8])(names)
