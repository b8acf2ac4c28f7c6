"""headline.md: the seeds headline (reports/headline.json, uniseg/experiments/headline.py) as markdown."""

from __future__ import annotations

from uniseg.report.tables import markdown_table

ARM_TITLES = {
    "ce": "CE, linear head (the paper's multi-dataset baseline)",
    "ce-cosine": "CE, cosine head",
    "nullbce": "Null BCE (cosine head)",
    "crbce": "C-R BCE: the Null BCE model + retrain.iters with the mined relations",
    "control": "control: the same Null BCE model + retrain.iters without relations",
    "oracle": "oracle: the same Null BCE model + retrain.iters with the true relations an unseen set scores",
    "oracle-out": "oracle-out: the oracle with only its relations to a class outside the dataset's space",
    "crbce-paper": "C-R BCE in the paper's regime: from the backbone, the base schedule, mined relations",
}

# The arms' short names, for figures.
ARM_NAMES = {
    "ce": "CE (linear)",
    "ce-cosine": "CE (cosine)",
    "nullbce": "Null BCE",
    "crbce": "C-R BCE",
    "control": "control",
    "oracle": "oracle",
    "oracle-out": "oracle-out",
    "crbce-paper": "C-R BCE (paper's regime)",
}


def pair_name(key: str) -> str:
    """A paired difference's key as read ("nullbce_minus_ce_cosine" -> "Null BCE − CE (cosine)")."""
    a, b = (part.replace("_", "-") for part in key.split("_minus_"))
    return f"{ARM_NAMES.get(a, a)} − {ARM_NAMES.get(b, b)}"


# The full-union readout's columns, where a headline has them (experiments/headline.py's keys).
FULL_UNION = {"union_iou": "full-union IoU", "union_iou_reachable": "full-union IoU, reachable cells"}
# The columns of a world's table of arms and of its paired differences.
ARMS_HEADER = [
    "arm",
    "what",
    "unseen mean",
    "95 % interval",
    "per seed",
    "seen mean",
    "union readout",
    "headroom",
    "minutes per seed",
]
PAIRED_HEADER = [
    "paired difference",
    "unseen mean",
    "per seed",
    "seen mean",
    "unseen − seen",
    "union readout",
]


def _summary(h: dict, digits: int = 1) -> list[str]:
    """Two cells: mean ± std, and the 95 % interval."""
    if h["ci95"] is None:
        return [f"{h['mean']:.{digits}f} (one seed)", "–"]
    return [
        f"{h['mean']:.{digits}f} ± {h['std']:.{digits}f}",
        f"[{h['ci95'][0]:.{digits}f}, {h['ci95'][1]:.{digits}f}]",
    ]


def _ci(d: dict | None, digits: int = 2) -> str:
    if d is None:
        return "–"
    if d["ci95"] is None:
        return f"{d['mean']:+.{digits}f} (one seed)"
    return f"{d['mean']:+.{digits}f} [{d['ci95'][0]:+.{digits}f}, {d['ci95'][1]:+.{digits}f}]"


def paired_cell(d: dict | None) -> str:
    """A paired difference of the unseen mean in one cell: mean [95 % interval], its number of seeds."""
    if d is None:
        return "–"
    return _ci(d) if d["ci95"] is None else f"{_ci(d)}, {len(d['seeds'])} seeds"


def _mean(d: dict | None, key: str, fmt: str = ".1f") -> str:
    return "–" if d is None or key not in d else format(d[key]["mean"], fmt)


def render(headline: dict) -> str:
    """headline.md."""
    lines = [
        "# Headline over seeds (embedded synthetic benchmark)",
        "",
        "Unseen mean mIoU (%) of KITTI, WildDash and CamVid, restricted protocol; mean ± sample std and a 95 % "
        "t-interval over seeds. Paired: the difference of two arms on the same seed (same data, same initial "
        "weights), then its mean and interval — the comparisons the paper's claims are about — on the unseen "
        "mean, the seen mean (val splits of the training sets), unseen − seen (the paper's signature: a gain "
        "about generalisation shows on unseen sets beyond the seen ones) and the union readout (fine classes "
        "outside a training dataset's label space on its images, results.md). Headroom: what any relation "
        "could add to the unseen mean at most.",
    ]
    if headline.get("targets"):
        rows = [
            [str(t["world"]), t["target"], t["measured"], "yes" if t["met"] else "**no**"]
            for t in headline["targets"]
        ]
        lines += ["", "## Targets", "", *markdown_table(["world", "target", "measured", "met"], rows)]
        lines += [
            "",
            'Where a target is missed, the per-class differences below and docs/findings.md ("Each claim '
            'where it lives") give the diagnosis.',
        ]
    for world, h in headline["worlds"].items():
        default = " (the default world)" if int(world) == headline["default_world"] else ""
        lines += ["", f"## World {world}{default}: seeds {', '.join(map(str, h['seeds']))}", ""]
        if h.get("devices"):
            where = "; ".join(f"{d}: seeds {', '.join(map(str, s))}" for d, s in h["devices"].items())
            lines += [f"Computed on {where}.", ""]
        rows = []
        # The full-union IoU (over all cells; over the cells a relation can reach) where it was measured.
        full = [k for k in FULL_UNION if any(k in a for a in h["arms"].values())]
        for arm, a in h["arms"].items():
            only = "" if a["seeds"] == h["seeds"] else f" (seeds {', '.join(map(str, a['seeds']))})"
            rows.append(
                [
                    arm,
                    f"{ARM_TITLES.get(arm, arm)}{only}",
                    *_summary(a),
                    ", ".join(f"{v:.1f}" for v in a["per_seed"]),
                    _mean(a, "seen"),
                    _mean(a, "union"),
                    *(_mean(a, k) for k in full),
                    _mean(a, "headroom", ".2f"),
                    ", ".join(f"{m} ({d})" for d, m in a["minutes"].items()),
                ]
            )
        header = [*ARMS_HEADER[:7], *(FULL_UNION[k] for k in full), *ARMS_HEADER[7:]]
        lines += markdown_table(header, rows, "l" * (8 + len(full)) + "r")
        if h["paired"]:
            rows = [
                [
                    f"{name} ({len(d['seeds'])} seeds)",
                    _ci(d),
                    ", ".join(f"{v:+.1f}" for v in d["per_seed"]),
                    _ci(d.get("seen")),
                    _ci(d.get("signature")),
                    _ci(d.get("union")),
                    *(_ci(d.get(k)) for k in full),
                ]
                for name, d in h["paired"].items()
            ]
            lines += ["", *markdown_table([*PAIRED_HEADER, *(FULL_UNION[k] for k in full)], rows)]
        negatives = [(arm, a) for arm, a in h["arms"].items() if "negative_void" in a]
        positive = [True] if any("positive_void" in a for _, a in negatives) else []
        if negatives:
            lines += [
                "",
                "Negative frames (WildDash 2: class mIoU of its positive frames, the same abstaining — void "
                "below the model's θ from the seen val splits — and % of negative-frame pixels left void):",
            ]
            rows = []
            for arm, a in negatives:
                wd2 = next((d for name, d in a["unseen"].items() if name == "wilddash2"), None)
                rows.append(
                    [
                        arm,
                        _mean({"x": wd2} if wd2 else None, "x"),
                        _mean(a, "abstain"),
                        _mean(a, "negative_void"),
                        *(_mean(a, "positive_void") for _ in positive),
                    ]
                )
            rows += [
                [
                    f"{name}, paired ({len(d['negative_void']['seeds'])} seeds)",
                    _ci(d.get("class_miou")),
                    _ci(d.get("abstain")),
                    _ci(d["negative_void"]),
                    *(_ci(d.get("positive_void")) for _ in positive),
                ]
                for name, d in h["paired"].items()
                if "negative_void" in d
            ]
            header = ["arm", "class mIoU", "class mIoU, abstaining", "negative pixels void %"]
            header += ["positive pixels void %" for _ in positive]
            lines += ["", *markdown_table(header, rows)]
        if h.get("oracle_rule"):
            lines += ["", f"The oracle rule: {h['oracle_rule']}"]
        for name in (
            "nullbce_minus_ce",
            "nullbce_minus_ce_cosine",
            "crbce_minus_control",
            "oracle_minus_control",
            "oracle_out_minus_control",
        ):
            per_class = h["classes"].get(name)
            if per_class:
                rows = [[key, *_summary(d)] for key, d in per_class.items()]
                lines += ["", f"Per class, {name} (IoU points):", ""]
                lines += markdown_table(["class", "mean ± std", "95 % interval"], rows)
        for rule, rel in h["relations"].items():
            cells = ", ".join(f"{k} {v['mean']:.2f}" for k, v in rel.items())
            lines += [
                "",
                f"Relations mined from the Null BCE models, candidates `{rule}` (mean over seeds): {cells}.",
            ]
    return "\n".join(lines) + "\n"
