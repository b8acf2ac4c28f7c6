"""The report's figures (matplotlib, Agg backend): mIoU bars per group, the cross-label-space matrix,
example predictions, the heat map of mined similarities and the seeds headline's paired differences.
Each is written with `plotting.save_figure`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from uniseg.plotting import pyplot, save_figure
from uniseg.report.results import cross_matrix, model_title
from uniseg.report.stored import stored_samples
from uniseg.scores import EVERY_TASK, Metrics


def plot_group_bars(metrics: Metrics, losses: dict[str, str], group: str, path: Path) -> bool:
    """Grouped bars: datasets of `group` x models, restricted (solid) and merged (hatched)."""
    plt = pyplot()
    names = metrics.datasets(group)
    if not names:
        return False
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * (len(names) + 1)), 4))
    width = 0.8 / (len(EVERY_TASK) * len(metrics.models))
    for k, model in enumerate(metrics.models):
        for p, protocol in enumerate(EVERY_TASK):  # the first (restricted) solid, the others hatched
            vals = [metrics.score(model, group, n, protocol) for n in names]
            vals.append(metrics.mean(model, group, protocol))
            x = np.arange(len(names) + 1) + (len(EVERY_TASK) * k + p) * width - 0.4 + width / 2
            ax.bar(
                x,
                [np.nan if v is None else v for v in vals],
                width,
                hatch="//" if p else None,
                color=f"C{k}",
                alpha=0.9 if p == 0 else 0.55,
                label=f"{model_title(model, losses.get(model, model))}, {protocol}",
            )
    ax.set_xticks(range(len(names) + 1), [*names, "mean"])
    ax.set_ylabel("mIoU (%)")
    ax.set_title(f"{group} datasets")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)
    return True


def plot_cross(metrics: Metrics, losses: dict[str, str], datasets: Sequence[str], path: Path) -> bool:
    """One heat map per model: rows = images of dataset i, columns = label space j (diagonal = seen)."""
    plt = pyplot()
    models = [m for m in metrics.models if metrics.has(m, "cross")]
    if not models or len(datasets) < 2:
        return False
    fig, axes = plt.subplots(1, len(models), figsize=(5.2 * len(models) + 1.5, 4.6), squeeze=False)
    fig.subplots_adjust(wspace=0.55, bottom=0.22, left=0.12)
    for ax, model in zip(axes[0], models, strict=True):
        grid = cross_matrix(metrics, model, datasets)
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
    save_figure(fig, path)
    return True


def example_rows(
    predictions: dict[str, dict], datasets: Sequence[str], shards: Path, losses: dict
) -> list[dict]:
    """Rows for plot_panels from the predictions the evaluation stored (scores.read_examples per model):
    each stored image of `datasets`, its ground truth and each model's prediction (label-space indices)."""
    rows = []
    for name, key, sample, classes in stored_samples(predictions, datasets, shards):
        panels = [("ground truth", sample.label, classes)]
        for model, stored in predictions.items():
            if key in stored.get(name, {}):
                panels.append((f"{model} ({losses.get(model, model)})", stored[name][key], classes))
        rows.append({"title": f"{name}: {key}", "image": sample.image, "panels": panels})
    return rows


def plot_panels(rows: list[dict], path: Path) -> bool:
    """Figure-4-like panels: per row an image, its ground truth and each model's prediction, coloured in
    the test dataset's label space. rows: {"title", "image" uint8 [H,W,3], "panels": [(name, label, classes)]}."""
    from uniseg.colours import colourise, legend_handles

    plt = pyplot()
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
    save_figure(fig, path)
    return True


def plot_headline(headline: dict, path: Path) -> bool:
    """The seeds headline's paired differences (headline.json), one panel per world: a dot per seed
    (its marker says the device it ran on), the mean with its 95 % interval, and zero."""
    worlds = {w: h for w, h in headline.get("worlds", {}).items() if h.get("paired")}
    if not worlds:
        return False
    names = list(dict.fromkeys(n for h in worlds.values() for n in h["paired"]))  # the headline's order
    plt = pyplot()
    fig, axes = plt.subplots(
        1,
        len(worlds),
        figsize=(5 * len(worlds) + 1.5, 0.8 * len(names) + 1.8),
        sharex=True,
        sharey=True,
        squeeze=False,
    )
    markers, legend = {}, {}
    for ax, (world, h) in zip(axes[0], worlds.items(), strict=True):
        device_of = {s: d for d, seeds in h.get("devices", {}).items() for s in seeds}
        for y, name in enumerate(names):
            d = h["paired"].get(name)
            if not d:
                continue
            for seed, value in zip(d["seeds"], d["per_seed"], strict=True):
                device = device_of.get(seed, "not recorded")
                marker = markers.setdefault(device, "osD^v"[len(markers) % 5])
                (dot,) = ax.plot(value, y - 0.15, marker, color="C0", alpha=0.7, ms=5)
                legend.setdefault(f"one seed ({device})", dot)
            if d["ci95"]:
                (bar,) = ax.plot(d["ci95"], [y + 0.15] * 2, color="k", lw=2)
                legend.setdefault("mean and 95 % interval", bar)
            ax.plot(d["mean"], y + 0.15, "|", color="k", ms=12, mew=2)
        ax.axvline(0, color="grey", lw=1, ls="--")
        ax.set_title(f"world {world}: seeds {', '.join(map(str, h['seeds']))}", fontsize=10)
        ax.set_xlabel("paired difference of the unseen mean (mIoU points)")
    axes[0][0].set_yticks(range(len(names)), [n.replace("_minus_", " − ") for n in names])
    axes[0][0].set_ylim(len(names) - 0.5, -0.5)
    fig.legend(legend.values(), legend.keys(), loc="lower center", ncol=len(legend), fontsize=8)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    save_figure(fig, path)
    return True


def plot_ladder(curve: dict, decision: dict, path: Path, unseen: dict | None = None) -> bool:
    """The budget ladder's learning curves: seen mean mIoU against the base budget (iterations, log
    scale), one line per arm through its mean over the seeds run, a dot per seed, B* marked when the rule
    has fixed it. curve: {arm: {budget: {seed: seen mean}}} (experiments/ladder.py). Once the rungs are
    scored on the unseen sets (`unseen`: {pair: {budget: {seed: difference}}}), a second panel: how the
    paired differences of the unseen mean move with the budget."""
    from uniseg.report.headline import ARM_NAMES, pair_name

    arms = {arm: {b: seeds for b, seeds in points.items() if seeds} for arm, points in curve.items()}
    arms = {arm: points for arm, points in arms.items() if points}
    if not arms:
        return False
    pairs = {pair: points for pair, points in (unseen or {}).items() if points}
    plt = pyplot()
    fig, axes = plt.subplots(1, 2 if pairs else 1, figsize=(11.5 if pairs else 6.5, 4.2), squeeze=False)
    ax = axes[0][0]
    for arm, points in arms.items():
        _budget_line(ax, points, ARM_NAMES.get(arm, arm))
    budgets = sorted({b for points in arms.values() for b in points})
    _budget_axis(ax, budgets, decision)
    ax.set_ylabel("seen mean mIoU (%)")
    ax.set_title("Budget ladder: seen val splits only (world 0)")
    if pairs:
        ax = axes[0][1]
        for pair, points in pairs.items():
            _budget_line(ax, points, pair_name(pair))
        ax.axhline(0, color="grey", lw=1, ls="--")
        _budget_axis(ax, sorted({b for points in pairs.values() for b in points}), decision)
        ax.set_ylabel("paired difference of the unseen mean (mIoU points)")
        ax.set_title("How the verdict moves with the budget (world 0)")
    fig.tight_layout()
    save_figure(fig, path)
    return True


def _budget_line(ax, points: dict, label: str) -> None:
    """One line through the means over seeds against the budget, a dot per seed in the line's colour."""
    budgets = sorted(points)
    means = [sum(points[b].values()) / len(points[b]) for b in budgets]
    (line,) = ax.plot(budgets, means, marker="o", label=label)
    for b in budgets:
        ax.scatter([b] * len(points[b]), list(points[b].values()), s=10, color=line.get_color(), alpha=0.5)


def _budget_axis(ax, budgets: list[int], decision: dict) -> None:
    """The budget axis (log 2, the rungs as ticks), B* marked once the rule has fixed it, legend, grid."""
    if decision.get("budget"):
        state = "converged" if decision["converged"] else "not converged"
        ax.axvline(decision["budget"], color="0.3", linestyle="--", linewidth=1)
        ax.text(
            decision["budget"],
            ax.get_ylim()[0],
            f"B* = {decision['budget']} ({state}) ",
            fontsize=8,
            va="bottom",
            ha="right",  # inside the axes: B* is the last rung when the rule is not met
        )
    ax.set_xscale("log", base=2)
    ax.set_xticks(budgets, [str(b) for b in budgets])
    ax.set_xlabel("base training budget (iterations, batch 8)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
