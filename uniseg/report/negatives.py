"""A test set with negative frames in the report (WildDash 2, the paper's Table 4): class mIoU, class mIoU
as a submission with abstention scores it, the share of negative-frame pixels left void, and each model's
abstention threshold — beside the paper's numbers for orientation."""

from __future__ import annotations

from uniseg.report.tables import markdown_table
from uniseg.scores import POSITIVE_VOID, Metrics

# Table 4 of the paper (WildDash 2 benchmark server, HRNet-W48 on C+I+B+M): class mIoU, negative mIoU, meta
# average — the server's own metrics, which the embedded benchmark cannot compute (abstain.py).
PAPER_TABLE4 = {
    "MSeg": (38.7, 24.7, 35.2),
    "Multi-dataset (CE)": (39.0, 27.9, 36.0),
    "UniSeg (C-R BCE)": (41.7, 34.8, 39.4),
}


def _fmt(v, digits: int = 1) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def negatives_section(
    metrics: Metrics, titles: dict[str, str], thresholds: dict[str, float | None]
) -> list[str]:
    """results.md's section for every unseen set that has negative frames."""
    lines = []
    for name in metrics.datasets("unseen"):
        models = [m for m in metrics.models if metrics.negative_void(m, name) is not None]
        if not models:
            continue
        rows = [
            [
                titles[m],
                _fmt(metrics.score(m, "unseen", name)),
                _fmt(metrics.score(m, "unseen", name, "abstain")),
                _fmt(metrics.negative_void(m, name)),
                _fmt(metrics.negative_void(m, name, POSITIVE_VOID)),
                _fmt(thresholds.get(m), 3),
            ]
            for m in models
        ]
        paper = [[k, *(f"{v:.1f}" for v in row)] for k, row in PAPER_TABLE4.items()]
        lines += [
            f"## {name}: negative frames and abstention (the paper's Table 4)",
            "",
            f"Class mIoU over {name}'s classes on its positive frames (restricted protocol, and as a submission "
            "with abstention scores it: a pixel whose top probability is below the model's threshold θ is void, "
            "a miss), and the share of the negative frames' pixels left void — not the benchmark's negative "
            "mIoU, whose definition is not published (docs/benchmark.md) — beside the same share of its "
            "positive frames' pixels (a model that voids everything voids both). θ keeps 95 % of the labelled pixels "
            "of the seen val splits (chosen there, never on a test set); softmax and sigmoid models get the "
            f"same rule. {name} is not averaged into the unseen mean.",
            "",
            *markdown_table(
                [
                    "model",
                    "class mIoU",
                    "class mIoU, abstaining",
                    "negative pixels void %",
                    "positive pixels void %",
                    "θ",
                ],
                rows,
                "lrrrrr",
            ),
            "",
            "For orientation, the paper's Table 4 (the benchmark server: class mIoU, negative mIoU, meta average):",
            "",
            *markdown_table(["method", "class mIoU", "negative mIoU", "meta avg."], paper, "lrrr"),
            "",
        ]
    return lines
