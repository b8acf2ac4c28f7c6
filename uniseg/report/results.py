"""reports/results.md, from the metrics files (read through uniseg.scores).

Tables name their protocol (restricted = the paper's; merged = related union classes added into the
target class first); the paper's HRNet numbers are shown for orientation only — the embedded benchmark
is a different, much smaller problem."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from uniseg.report.negatives import negatives_section
from uniseg.report.readout import readout_section
from uniseg.report.tables import markdown_table
from uniseg.scores import EVERY_TASK, RESTRICTED, Metrics

# Table 1 of the paper (HRNet-W18, C+I+B+M, unseen KITTI / WildDash / CamVid / mean), for orientation.
PAPER_W18_ALL = {
    "ce": (48.8, 46.0, 72.7, 55.8),
    "nullbce": (57.6, 47.5, 73.3, 59.5),
    "crbce": (58.9, 48.2, 73.9, 60.3),
}
PROTOCOL_TITLES = {
    "restricted": "restricted (the paper's protocol)",
    "merged": "merged (related union classes added into the target class)",
}
GROUP_TITLES = {
    "unseen": "Unseen datasets",
    "seen": "Seen datasets (val splits)",
    "cross": "Cross label space (images of i scored in the label space of j)",
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


def group_table(
    metrics: Metrics, losses: dict[str, str], group: str, protocol: str = RESTRICTED
) -> list[str]:
    """A markdown table: rows = models, columns = the group's datasets + mean."""
    names = metrics.datasets(group)
    if not names:
        return []
    rows = [
        [model_title(model, losses.get(model, model))]
        + [_fmt(metrics.score(model, group, n, protocol)) for n in names]
        + [_fmt(metrics.mean(model, group, protocol))]
        for model in metrics.models
    ]
    return markdown_table(["model", *names, "mean"], rows, "l" + "r" * (len(names) + 1))


def conflict_table(metrics: Metrics, losses: dict[str, str], rows: int = 10) -> list[str]:
    """Where label conflicts show: classes of label space j whose IoU on D_i's images (cross i_in_j) is
    furthest below their IoU on D_j's own images (seen j), for the first model; all models side by side."""
    models = [m for m in metrics.models if metrics.has(m, "cross")]
    if not models:
        return []
    first = models[0]
    gaps = []
    for cross in metrics.cross(first):
        own = metrics.class_iou(first, "seen", cross.space)
        for c, v in metrics.class_iou(first, "cross", cross.name).items():
            if c in own:
                gaps.append((own[c] - v, cross.name, cross.space, c))
    gaps.sort(reverse=True)
    if not gaps:
        return []
    shown = []
    for _, name, j, c in gaps[:rows]:
        cells = []
        for m in models:
            own = metrics.class_iou(m, "seen", j).get(c)
            cross = metrics.class_iou(m, "cross", name).get(c)
            cells.append(f"{_fmt(own)} / {_fmt(cross)}")
        shown.append([name, c, *cells])
    head = [f"{model_title(m, losses.get(m, m))}: own / cross" for m in models]
    return [
        "## Where the label conflicts show (per-class IoU, restricted)",
        "",
        f"Classes of label space j scored on D_j's own val images (own) and on D_i's val images (cross, i_in_j), "
        f"largest gaps of {model_title(models[0], losses.get(models[0], models[0]))} first. A class that D_i labels "
        "differently (e.g. Mapillary's bicyclist vs Cityscapes' rider) is where a loss that suppresses other "
        "datasets' classes loses IoU.",
        "",
        *markdown_table(["cross pair", "class", *head], shown),
        "",
    ]


def headroom_lines(metrics: Metrics, losses: dict[str, str]) -> list[str]:
    """The headroom of the unseen mean (synthetic benchmark): what any relation could add at most."""
    cells = [
        f"{model_title(m, losses.get(m, m))} {metrics.headroom(m):.2f}"
        for m in metrics.models
        if metrics.headroom(m) is not None
    ]
    if not cells:
        return []
    per_set = ", ".join(
        f"{d} {metrics.headroom(metrics.models[0], d):.2f}"
        for d in metrics.datasets("unseen")
        if metrics.headroom(metrics.models[0], d) is not None
    )
    return [
        "## Headroom of the unseen mean",
        "",
        "mIoU points the unseen mean would gain had every pixel of the classes a true relation can move "
        "(the secondaries of the ground-truth relations that the test set scores: rider, road, sidewalk, "
        "terrain; not CamVid's traffic sign, which only the sign-back relation moves, a convention the "
        "oracle leaves out too) been predicted right — an upper bound for what any relation can add under "
        f"the restricted protocol: {'; '.join(cells)} (per set, first model: {per_set}).",
        "",
    ]


def unlearned_classes(metrics: Metrics, losses: dict[str, str]) -> list[str]:
    """Classes a model never gets right on its seen val splits (IoU 0 wherever they are scored): label
    conflicts that live in those classes cannot show in any table above."""
    lines = []
    for model in metrics.models:
        scored: dict[str, list[float]] = {}
        for name in metrics.datasets("seen", model):
            for c, v in metrics.class_iou(model, "seen", name).items():
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


def cross_matrix(
    metrics: Metrics, model: str, datasets: Sequence[str], protocol: str = RESTRICTED
) -> np.ndarray:
    """[i, j] = mIoU of D_i's val images in D_j's label space; the diagonal is the seen score."""
    grid = np.full((len(datasets), len(datasets)), np.nan)
    for a, i in enumerate(datasets):
        for b, j in enumerate(datasets):
            v = metrics.score(model, "seen", i, protocol) if i == j else None
            for cross in metrics.cross(model):
                if (cross.images, cross.space) == (i, j):
                    v = metrics.score(model, "cross", cross.name, protocol)
            grid[a, b] = np.nan if v is None else v
    return grid


def results_markdown(
    metrics: Metrics,
    losses: dict[str, str],
    datasets: Sequence[str],
    relations: dict | None,  # the block of relations.json (scores.read_relation_metrics)
    figures: Sequence[str],
    protocol: str = "both",
    headline: str | None = None,
    headline_figure: str | None = None,
    thresholds: dict[str, float | None] | None = None,
    ladder: dict | None = None,
    ladder_figure: str | None = None,
    converged: Converged | None = None,
) -> str:
    """results.md; `headline` is the text of headline.md (`make seeds`), embedded under "Over seeds" with
    `headline_figure` (its paired differences) below it; `ladder` (scores.read_ladder) and its figure under
    "The converged budget"; the converged profile's headline (`make converged`) under "At convergence"."""
    lines = [
        "# Results",
        "",
        f"Training datasets: {', '.join(datasets)}. Models: "
        + ", ".join(model_title(m, losses.get(m, m)) for m in metrics.models)
        + ". mIoU in percent over the classes of each test label space that the model's union has and that "
        "occur in the ground truth or the prediction.",
        "",
    ]
    for group, title in GROUP_TITLES.items():
        for shown in EVERY_TASK:
            if protocol not in ("both", shown):
                continue
            table = group_table(metrics, losses, group, shown)
            if table:
                lines += [f"## {title} — {PROTOCOL_TITLES[shown]}", ""] + table + [""]
    titles = {m: model_title(m, losses.get(m, m)) for m in metrics.models}
    lines += negatives_section(metrics, titles, thresholds or {})
    lines += headroom_lines(metrics, losses)
    lines += readout_section(metrics, titles)
    lines += conflict_table(metrics, losses)
    lines += unlearned_classes(metrics, losses)
    if relations:
        r = relations
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
        "The tables above are one run (one seed). `make seeds` trains CE (linear head; `--arm ce-cosine` "
        "adds the cosine head), Null BCE, C-R BCE and its no-relations control over several seeds with the "
        "stages' own commands and writes paired differences with 95% intervals to [headline.md](headline.md)"
        + (", copied here." if headline else "; none has been written yet.")
        + " What the seeds do and do not show (which classes carry Null BCE's lead over each CE baseline; "
        "C-R BCE against the same training without relations) is worked out in "
        "[docs/findings.md](../docs/findings.md).",
        "",
    ]
    if headline:
        lines += _embedded(headline)
    if headline_figure:
        lines += [f"![paired differences over seeds]({headline_figure})", ""]
    if ladder:
        lines += ladder_section(ladder, ladder_figure)
    if converged:
        lines += convergence_section(converged)
    paper = [[MODEL_TITLES[loss], *(f"{v:.1f}" for v in row)] for loss, row in PAPER_W18_ALL.items()]
    lines += [
        "## For orientation: the paper (HRNet-W18, C+I+B+M, real data, Table 1)",
        "",
        *markdown_table(["method", "KITTI", "WildDash", "CamVid", "mean"], paper, "lrrrr"),
        "",
        "## Figures",
        "",
    ]
    lines += [f"![{Path(f).stem}]({f})" for f in figures]
    return "\n".join(lines) + "\n"


def _embedded(markdown: str) -> list[str]:
    """A headline.md under a results.md section: its own title dropped, its sections one level down."""
    body = [line for line in markdown.strip().splitlines() if not line.startswith("# ")]
    while body and not body[0].strip():
        body.pop(0)
    return ["#" + line if line.startswith("## ") else line for line in body] + [""]


@dataclass(frozen=True)
class Converged:
    """The converged profile's headline (`make converged`): headline.json as read, headline.md's text, the
    budget B* it trained for (the ladder's decision; None when the ladder here does not say), the short
    budget's headline.json to set beside it (None when there is none) with its iterations, and the
    converged headline's figure."""

    headline: dict
    markdown: str
    budget: int | None
    short: dict | None = None
    short_budget: int = 800
    figure: str | None = None


def convergence_section(c: Converged) -> list[str]:
    """ "At convergence": each world's paired differences at the short budget and at B* side by side (unseen
    mean, 95 % interval, seeds), then the converged headline itself (targets judged at B*, the oracle rule,
    per-class differences)."""
    from uniseg.report.headline import paired_cell

    budget = f"B* = {c.budget} iterations" if c.budget else "B*"
    lines = [
        f"## At convergence ({budget})",
        "",
        "`make converged` trains every arm of the headline again at the budget the ladder fixed, with the "
        "retrain budget R* = B*/3, and judges the same targets there (reports/seeds/converged/headline.md, "
        f"copied below). Beside the short budget ({c.short_budget} iterations), each pair's unseen-mean "
        "difference (mean [95 % interval], seeds):",
        "",
    ]
    for world, h in c.headline.get("worlds", {}).items():
        short = (c.short or {}).get("worlds", {}).get(world, {}).get("paired", {})
        names = list(dict.fromkeys([*h.get("paired", {}), *short]))
        if not names:
            continue
        rows = [[name, paired_cell(short.get(name)), paired_cell(h["paired"].get(name))] for name in names]
        lines += [f"World {world}:", ""]
        lines += markdown_table(["paired difference", f"{c.short_budget} iterations", budget], rows) + [""]
    lines += _embedded(c.markdown)
    if c.figure:
        lines += [f"![paired differences over seeds at convergence]({c.figure})", ""]
    return lines


def ladder_section(ladder: dict, figure: str | None) -> list[str]:
    """The budget ladder (`make ladder`, reports/seeds/<profile>/ladder.json): where its rule stands, the
    seen means per arm and budget, once B* is fixed the unseen paired differences per budget, and the
    learning curves."""
    from uniseg.report.headline import ARM_NAMES, pair_name

    decision, curve = ladder["decision"], ladder["curve"]
    budgets = sorted({b for points in curve.values() for b, seeds in points.items() if seeds})

    def cell(points: dict, budget: int, signed: bool = False) -> str:
        seeds = points.get(budget)
        if not seeds:
            return ""
        mean = sum(seeds.values()) / len(seeds)
        return f"{mean:{'+' if signed else ''}.1f}" + (f" ({len(seeds)} seeds)" if len(seeds) > 1 else "")

    rows = [[ARM_NAMES.get(arm, arm), *(cell(points, b) for b in budgets)] for arm, points in curve.items()]
    if decision.get("budget") is None:
        state = f"B* is not fixed yet: {decision['reason']}."
    else:
        verdict = "converged by the rule" if decision["converged"] else "**not converged**: the longest rung"
        state = f"B* = {decision['budget']}, R* = {decision['retrain']} ({verdict}): {decision['reason']}."
    lines = [
        "## The converged budget (the budget ladder)",
        "",
        "The tables above train the base models for 800 iterations (6.7 epochs), which is not converged. "
        "`make ladder` trains CE (linear head), CE (cosine head) and Null BCE for "
        + ", ".join(str(b) for b in ladder["budgets"])
        + " iterations on world 0 and scores the seen val splits only (the unseen sets stay untouched until "
        "the budget is fixed). " + ladder["rule"],
        "",
        f"**Where it stands:** {state}",
        "",
        "Seen mean mIoU (%), mean over the seeds run (seed 0 unless said):",
        "",
        *markdown_table(["arm", *(str(b) for b in budgets)], rows, "l" + "r" * len(budgets)),
        "",
    ]
    pairs = {pair: points for pair, points in ladder.get("unseen", {}).items() if points}
    if pairs:
        pair_budgets = sorted({b for points in pairs.values() for b in points})
        lines += [
            "Once B* was fixed, every rung's models were scored on the unseen sets as well: the paired "
            "differences of the unseen mean (mIoU points, mean over the seeds run) against the budget, "
            "how the verdict moves with training:",
            "",
            *markdown_table(
                ["paired difference", *(str(b) for b in pair_budgets)],
                [
                    [pair_name(pair), *(cell(points, b, signed=True) for b in pair_budgets)]
                    for pair, points in pairs.items()
                ],
                "l" + "r" * len(pair_budgets),
            ),
            "",
        ]
    if figure:
        lines += [f"![budget ladder]({figure})", ""]
    return lines
