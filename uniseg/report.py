"""reports/results.md and its figures, from reports/metrics.json (and the models, for the example panels).

Tables name their protocol (restricted = the paper's; merged = related union classes added into the
target class first); the paper's HRNet numbers are shown for orientation only — the embedded benchmark
is a different, much smaller problem."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from uniseg.fsio import atomic_path

# Table 1 of the paper (HRNet-W18, C+I+B+M, unseen KITTI / WildDash / CamVid / mean), for orientation.
PAPER_W18_ALL = {
    "ce": (48.8, 46.0, 72.7, 55.8),
    "nullbce": (57.6, 47.5, 73.3, 59.5),
    "crbce": (58.9, 48.2, 73.9, 60.3),
}
MODEL_TITLES = {
    "ce": "Multi-dataset (CE)",
    "bce": "BCE",
    "nullbce": "UniSeg (Null BCE)",
    "crbce": "UniSeg (C-R BCE)",
}


def _fmt(v) -> str:
    return "–" if v is None else f"{v:.1f}"


def model_title(model: str, loss: str) -> str:
    return f"{MODEL_TITLES.get(loss, loss)} [{model}]"


def group_table(metrics: dict, losses: dict[str, str], group: str, key: str = "miou") -> list[str]:
    """A markdown table: rows = models, columns = the group's datasets + mean."""
    names = []
    for m in metrics.values():
        names += [n for n in m.get(group, {}) if n not in ("mean", "mean_merged") and n not in names]
    if not names:
        return []
    mean_key = "mean" if key == "miou" else "mean_merged"
    lines = ["| model | " + " | ".join(names) + " | mean |", "|---|" + "---:|" * (len(names) + 1)]
    for model, m in metrics.items():
        g = m.get(group, {})
        cells = [_fmt(g.get(n, {}).get(key)) for n in names]
        lines.append(
            f"| {model_title(model, losses.get(model, model))} | "
            + " | ".join(cells)
            + f" | {_fmt(g.get(mean_key))} |"
        )
    return lines


def conflict_table(metrics: dict, losses: dict[str, str], rows: int = 10) -> list[str]:
    """Where label conflicts show: classes of label space j whose IoU on D_i's images (cross i_in_j) is
    furthest below their IoU on D_j's own images (seen j), for the first model; all models side by side."""
    models = [m for m in metrics if metrics[m].get("cross")]
    if not models:
        return []
    first = metrics[models[0]]
    gaps = []
    for name, entry in first["cross"].items():
        if not isinstance(entry, dict) or "_in_" not in name:
            continue
        j = name.split("_in_")[1]
        own = first.get("seen", {}).get(j, {}).get("iou", {})
        for c, v in entry.get("iou", {}).items():
            if c in own:
                gaps.append((own[c] - v, name, j, c))
    gaps.sort(reverse=True)
    if not gaps:
        return []
    head = " | ".join(f"{model_title(m, losses.get(m, m))}: own / cross" for m in models)
    lines = [
        "## Where the label conflicts show (per-class IoU, restricted)",
        "",
        f"Classes of label space j scored on D_j's own val images (own) and on D_i's val images (cross, i_in_j), "
        f"largest gaps of {model_title(models[0], losses.get(models[0], models[0]))} first. A class that D_i labels "
        "differently (e.g. Mapillary's bicyclist vs Cityscapes' rider) is where a loss that suppresses other "
        "datasets' classes loses IoU.",
        "",
        f"| cross pair | class | {head} |",
        "|---|---|" + "---|" * len(models),
    ]
    for _, name, j, c in gaps[:rows]:
        cells = []
        for m in models:
            own = metrics[m].get("seen", {}).get(j, {}).get("iou", {}).get(c)
            cross = metrics[m]["cross"].get(name, {}).get("iou", {}).get(c)
            cells.append(f"{_fmt(own)} / {_fmt(cross)}")
        lines.append(f"| {name} | {c} | " + " | ".join(cells) + " |")
    return lines + [""]


def unlearned_classes(metrics: dict, losses: dict[str, str]) -> list[str]:
    """Classes a model never gets right on its seen val splits (IoU 0 wherever they are scored): label
    conflicts that live in those classes cannot show in any table above."""
    lines = []
    for model, m in metrics.items():
        scored: dict[str, list[float]] = {}
        for entry in m.get("seen", {}).values():
            if isinstance(entry, dict):
                for c, v in entry.get("iou", {}).items():
                    scored.setdefault(c, []).append(v)
        zero = sorted(c for c, vs in scored.items() if vs and max(vs) == 0.0)
        if zero:
            lines.append(f"- {model_title(model, losses.get(model, model))}: {', '.join(zero)}")
    if not lines:
        return []
    head = [
        "## Classes not learned",
        "",
        "IoU 0 on every seen val split that scores them. A label conflict inside these classes (e.g. rider vs "
        "bicyclist) cannot show in the cross or unseen numbers until the model learns them (more iterations, "
        "pretrained weights).",
        "",
    ]
    return head + lines + [""]


def cross_matrix(metrics_model: dict, datasets: Sequence[str], key: str = "miou") -> np.ndarray:
    """[i, j] = mIoU of D_i's val images in D_j's label space (NaN on the diagonal: see the seen table)."""
    grid = np.full((len(datasets), len(datasets)), np.nan)
    cross = metrics_model.get("cross", {})
    for a, i in enumerate(datasets):
        for b, j in enumerate(datasets):
            v = cross.get(f"{i}_in_{j}", {}).get(key)
            if v is not None:
                grid[a, b] = v
            if i == j:
                seen = metrics_model.get("seen", {}).get(i, {}).get(key)
                grid[a, b] = np.nan if seen is None else seen
    return grid


def results_markdown(
    metrics: dict,
    losses: dict[str, str],
    datasets: Sequence[str],
    relations: dict | None,
    figures: Sequence[str],
    protocol: str = "both",
    headline: str | None = None,
) -> str:
    """results.md; `headline` is the text of headline.md (`make seeds`), embedded under "Over seeds"."""
    lines = [
        "# Results",
        "",
        f"Training datasets: {', '.join(datasets)}. Models: "
        + ", ".join(model_title(m, losses.get(m, m)) for m in metrics)
        + ". mIoU in percent over the classes of each test label space that the model's union has and that "
        "occur in the ground truth or the prediction.",
        "",
    ]
    for group, title in (
        ("unseen", "Unseen datasets"),
        ("seen", "Seen datasets (val splits)"),
        ("cross", "Cross label space (images of i scored in the label space of j)"),
    ):
        for key, title_p in (
            ("miou", "restricted (the paper's protocol)"),
            ("miou_merged", "merged (related union classes added into the target class)"),
        ):
            if protocol != "both" and not title_p.startswith(protocol):
                continue
            table = group_table(metrics, losses, group, key)
            if table:
                lines += [f"## {title} — {title_p}", ""] + table + [""]
    lines += conflict_table(metrics, losses)
    lines += unlearned_classes(metrics, losses)
    if relations:
        r = relations.get("relations", {})
        pr = ""
        if r.get("precision") is not None or r.get("recall") is not None:
            pr = f"; against the benchmark's ground truth: precision {r.get('precision')}, recall {r.get('recall')}"
        lines += [
            "## Mined relations",
            "",
            f"τ = {r.get('tau')}, {r.get('relations')} relations{pr}. Details: [relations.md](relations.md).",
            "",
        ]
    lines += [
        "## Over seeds",
        "",
        "The tables above are one run (one seed). `make seeds` trains CE, Null BCE, C-R BCE and the control "
        "for C-R BCE over several seeds as DVC experiments and writes mean, std and 95% intervals to "
        "[headline.md](headline.md)"
        + (", copied here." if headline else "; none has been written yet.")
        + " What the seeds do and do not show (CE vs Null BCE split per class into label-conflict gains and "
        "slowly learned small classes; the no-relations control for C-R BCE) is worked out in "
        "[docs/findings.md](../docs/findings.md).",
        "",
    ]
    if headline:
        # headline.md's own title is dropped; its text follows as is.
        body = [line for line in headline.strip().splitlines() if not line.startswith("# ")]
        while body and not body[0].strip():
            body.pop(0)
        lines += [line.replace("# ", "### ", 1) if line.startswith("## ") else line for line in body] + [""]
    lines += [
        "## For orientation: the paper (HRNet-W18, C+I+B+M, real data, Table 1)",
        "",
        "| method | KITTI | WildDash | CamVid | mean |",
        "|---|---:|---:|---:|---:|",
    ]
    for loss, row in PAPER_W18_ALL.items():
        lines.append(f"| {MODEL_TITLES[loss]} | " + " | ".join(f"{v:.1f}" for v in row) + " |")
    lines += ["", "## Figures", ""]
    lines += [f"![{Path(f).stem}]({f})" for f in figures]
    return "\n".join(lines) + "\n"


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_group_bars(metrics: dict, losses: dict[str, str], group: str, path: Path) -> bool:
    """Grouped bars: datasets of `group` x models, restricted (solid) and merged (hatched)."""
    plt = _pyplot()
    names = []
    for m in metrics.values():
        names += [n for n in m.get(group, {}) if n not in ("mean", "mean_merged") and n not in names]
    if not names:
        return False
    names.append("mean")
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(names)), 4))
    width = 0.8 / (2 * len(metrics))
    for k, (model, m) in enumerate(metrics.items()):
        g = m.get(group, {})
        for p, (key, hatch) in enumerate((("miou", None), ("miou_merged", "//"))):
            vals = [
                (g.get("mean" if key == "miou" else "mean_merged") if n == "mean" else g.get(n, {}).get(key))
                for n in names
            ]
            x = np.arange(len(names)) + (2 * k + p) * width - 0.4 + width / 2
            ax.bar(
                x,
                [np.nan if v is None else v for v in vals],
                width,
                hatch=hatch,
                color=f"C{k}",
                alpha=0.9 if p == 0 else 0.55,
                label=f"{model_title(model, losses.get(model, model))}, {'restricted' if p == 0 else 'merged'}",
            )
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("mIoU (%)")
    ax.set_title(f"{group} datasets")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    _save(fig, path)
    return True


def plot_cross(metrics: dict, losses: dict[str, str], datasets: Sequence[str], path: Path) -> bool:
    """One heat map per model: rows = images of dataset i, columns = label space j (diagonal = seen)."""
    plt = _pyplot()
    models = [m for m in metrics if metrics[m].get("cross")]
    if not models or len(datasets) < 2:
        return False
    fig, axes = plt.subplots(1, len(models), figsize=(5.2 * len(models) + 1.5, 4.6), squeeze=False)
    fig.subplots_adjust(wspace=0.55, bottom=0.22, left=0.12)
    for ax, model in zip(axes[0], models, strict=True):
        grid = cross_matrix(metrics[model], datasets)
        im = ax.imshow(grid, vmin=0, vmax=100, cmap="viridis")
        for a in range(len(datasets)):
            for b in range(len(datasets)):
                if not np.isnan(grid[a, b]):
                    ax.text(
                        b,
                        a,
                        f"{grid[a, b]:.1f}",
                        ha="center",
                        va="center",
                        color="white" if grid[a, b] < 60 else "black",
                        fontsize=8,
                    )
        ax.set_xticks(range(len(datasets)), datasets, rotation=30)
        ax.set_yticks(range(len(datasets)), datasets)
        ax.set_xlabel("label space j")
        ax.set_ylabel("images of i")
        ax.set_title(model_title(model, losses.get(model, model)), fontsize=9)
    fig.colorbar(im, ax=axes[0].tolist(), label="mIoU (%), restricted", shrink=0.8)
    _save(fig, path)
    return True


def plot_panels(rows: list[dict], path: Path) -> bool:
    """Figure-4-like panels: per row an image, its ground truth and each model's prediction, coloured in
    the test dataset's label space. rows: {"title", "image" uint8 [H,W,3], "panels": [(name, label, classes)]}."""
    from uniseg.colours import colourise, legend_handles

    plt = _pyplot()
    if not rows:
        return False
    cols = 1 + max(len(r["panels"]) for r in rows)
    fig, axes = plt.subplots(len(rows), cols, figsize=(3.2 * cols + 2, 1.9 * len(rows) + 0.5), squeeze=False)
    legend = []
    for ax_row, row in zip(axes, rows, strict=True):
        ax_row[0].imshow(row["image"])
        ax_row[0].set_title(row["title"], fontsize=8)
        for ax, (name, label, classes) in zip(ax_row[1:], row["panels"], strict=False):
            ax.imshow(colourise(label, classes), interpolation="nearest")
            ax.set_title(name, fontsize=8)
            legend += [
                c for c in classes if c not in legend and (np.asarray(label) == classes.index(c)).any()
            ]
        for ax in ax_row:
            ax.axis("off")
    fig.legend(handles=legend_handles(legend), loc="center right", fontsize=6, frameon=False)
    fig.tight_layout(rect=(0, 0, 0.86, 1))
    _save(fig, path)
    return True
