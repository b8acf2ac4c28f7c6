"""Stage mine: one deterministic pass of the base model over each training dataset; the mean cosine
similarity s_{i,c} of the pixels of class c of dataset i with every union class weight (eq. 7)."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from uniseg.datasets.layout import read_spaces
from uniseg.errors import DataError, exit_on_user_error
from uniseg.model.evalset import EvalSet, iter_batches, make_eval_loader
from uniseg.params import load_params
from uniseg.relations.mining import mine_similarities, similarity_table, write_similarity
from uniseg.taxonomy import space_to_union_lut

app = typer.Typer(add_completion=False)


@app.command()
def main(
    params: Path = typer.Option(Path("params.yaml"), help="Parameters file."),
    shards: Path = typer.Option(Path("data/shards"), help="Shard root."),
    model_path: Path = typer.Option(Path("models/base.pt"), "--model", help="Base model file."),
    out: Path = typer.Option(Path("data/relations/similarity.parquet"), help="Similarity table to write."),
    device: str = typer.Option("auto", help="auto (cuda when available), cpu or cuda."),
) -> None:
    import torch

    from uniseg.model.segmodel import load_model_file, resolve_device

    start = time.perf_counter()
    with exit_on_user_error():
        p = load_params(params)
        spaces = read_spaces(shards, p.train.datasets)
        device = resolve_device(device)
        model, info = load_model_file(model_path, device)
        for name, space in spaces.items():
            lacking = sorted(set(space) - set(info.classes))
            if lacking:
                raise DataError(
                    f"{model_path}: the base model lacks classes of {name}: {', '.join(lacking)}; retrain it"
                )
        per_dataset = {}
        for name in p.train.datasets:
            lut = torch.from_numpy(space_to_union_lut(spaces[name], info.classes)).long()
            loader = make_eval_loader(EvalSet(shards / name, "train"), p.mine.batch_size, p.mine.workers)
            batches = ((images, lut[labels.long()]) for images, labels, _, _ in iter_batches(loader))
            per_dataset[name] = mine_similarities(model, batches, len(info.classes), device)
        table = similarity_table(per_dataset, info.classes, spaces)
        write_similarity(table, out)
    typer.echo(
        f"mine: {len(table)} similarities over {len(spaces)} datasets in {time.perf_counter() - start:.1f}s -> {out}"
    )


if __name__ == "__main__":
    app()
