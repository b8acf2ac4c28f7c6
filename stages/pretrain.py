"""Stage pretrain: the backbone's stand-in for ImageNet — world classes (dense by default, or which ones a
crop shows), on scenes rendered with random styles and a seed no dataset uses (uniseg/train/pretrain.py).

Its output, models/pretrained.pt (a backbone file, 6 MB for hrnet_w18_small), is committed to git, so
a fresh clone does not pay for it; `model.pretrained` points to it by default."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from uniseg.errors import exit_on_user_error
from uniseg.fsio import write_json
from uniseg.model.backbones import save_backbone_file
from uniseg.params import load_params
from uniseg.train.pretrain import pretrain_backbone

app = typer.Typer(add_completion=False)


@app.command()
def main(
    params: Path = typer.Option(Path("params.yaml"), help="Parameters file."),
    out: Path = typer.Option(Path("models/pretrained.pt"), help="Backbone file to write."),
    summary_path: Path = typer.Option(Path("reports/pretrain.json"), "--summary", help="Metrics to write."),
    workers: int = typer.Option(2, help="Processes that render the scenes."),
) -> None:
    start = time.perf_counter()
    with exit_on_user_error():
        p = load_params(params)
        progress = lambda line: typer.echo(line)  # noqa: E731 - one line per 100 iterations
        encoder, summary = pretrain_backbone(
            p.pretrain, p.synthetic.height, p.synthetic.width, workers, progress
        )
        save_backbone_file(out, encoder, p.pretrain.backbone, summary)
        write_json(summary_path, {"pretrain": summary})
    score = f"presence mAP {summary['map']}" if "map" in summary else f"world-class mIoU {summary['miou']}"
    typer.echo(
        f"pretrain {p.pretrain.backbone} ({p.pretrain.task}): {p.pretrain.iters} iterations, {score} on held-out "
        f"scenes, in {time.perf_counter() - start:.0f}s -> {out}"
    )


if __name__ == "__main__":
    app()
