"""The arms of `make seeds` as data: what each trains, from which base, with which params over the
profile's, and which dvc.yaml stages' code decides its model.

Arms (all from params.yaml, with `seed` and `synthetic.seed` = the world set per run):

- `ce`:          softmax CE with a linear head — the paper's multi-dataset baseline;
- `ce-cosine`:   softmax CE with the cosine head — the matched baseline (only the loss differs);
- `nullbce`:     Null BCE with the cosine head; its relations are mined and scored (both candidate rules);
- `crbce`:       that same Null BCE model retrained `retrain.iters` with C-R BCE and the mined relations;
- `control`:     that same Null BCE model retrained as long with no relation (relabel.tau = 1: eq. 6
                 selects nothing, C-R BCE is Null BCE) — what the extra training alone gives;
- `oracle`:      that same Null BCE model retrained as long with the true relations an unseen set can
                 score (`datasets.synthetic.oracle_relations`) instead of the mined ones — C-R BCE with
                 perfect mining where it can matter;
- `oracle-out`:  the oracle restricted to its relations whose secondary lies outside the dataset's own
                 label space (Mapillary's bicyclist, motorcyclist -> rider; IDD's rail track -> terrain):
                 the paper's mechanism (Appendix B, a class a dataset cannot name) apart from the in-space
                 supersets (lane marking -> road, curb -> sidewalk) that also blur the fine classes;
- `crbce-paper`: C-R BCE in the paper's regime (optional): from the pretrained backbone with the base
                 model's schedule and the relations mined from the seed's Null BCE model, whose
                 control is that Null BCE model itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from uniseg.errors import UserError
from uniseg.evaluate.sources import LEFT_OUT_RELATIONS
from uniseg.params import load_params, parse_params

DATASET_STAGES = ("download", "shard")


@dataclass(frozen=True)
class Arm:
    """One arm: its params over the profile's, the arm whose model it retrains (None: trained from the
    backbone), the dvc.yaml stages whose code decides its model and mined relations (their deps include
    the pretrained backbone, hashed by content; the data enter as the shards' content, `data_digest`),
    and whether `make seeds` runs it by default."""

    overrides: dict
    base: str | None
    stages: tuple[str, ...]
    default: bool = True


_MINED = ("train", "mine", "relabel", "retrain")
TABLE = {
    "ce": Arm({"loss": "ce", "model": {"classifier": "linear"}}, None, ("train",)),
    "ce-cosine": Arm({"loss": "ce", "model": {"classifier": "cosine"}}, None, ("train",)),
    "nullbce": Arm({"loss": "nullbce"}, None, ("train", "mine", "relabel")),
    "crbce": Arm({"loss": "nullbce"}, "nullbce", _MINED),
    "control": Arm({"loss": "nullbce", "relabel": {"tau": 1.0}}, "nullbce", _MINED),
    # + the oracle relations themselves (fingerprints)
    "oracle": Arm({"loss": "nullbce"}, "nullbce", ("train", "retrain"), default=False),
    "oracle-out": Arm({"loss": "nullbce"}, "nullbce", ("train", "retrain"), default=False),
    # + retrain = the base schedule from the backbone (arm_params)
    "crbce-paper": Arm({"loss": "nullbce"}, "nullbce", _MINED, default=False),
}
ARMS = tuple(TABLE)
DEFAULT_ARMS = tuple(name for name, arm in TABLE.items() if arm.default)
BASE = {name: arm.base for name, arm in TABLE.items() if arm.base}
ARM_STAGES = {name: arm.stages for name, arm in TABLE.items()}
ORACLES = ("oracle", "oracle-out")  # arms retrained with true relations (`oracle`), not mined ones
# A true relation an unseen set scores only through an unsourced convention cell is left out of the
# oracle and reported apart (as it is of the headroom: evaluate.sources).
ORACLE_LEFT_OUT = LEFT_OUT_RELATIONS


def _deep_update(base: dict, update: dict) -> dict:
    out = dict(base)
    for k, v in update.items():
        out[k] = _deep_update(out.get(k, {}), v) if isinstance(v, dict) else v
    return out


def arm_params(params_file: Path, world: int, seed: int, arm: str) -> dict:
    """The params of one run, as a validated mapping (written to the run's own params file)."""
    base = load_params(params_file).model_dump()
    update = {"seed": seed, "synthetic": {"seed": world}, **TABLE[arm].overrides}
    if arm == "crbce-paper":
        t = base["train"]
        update["retrain"] = {
            "init": "imagenet",
            "iters": t["iters"],
            "lr": t["lr"],
            "optimizer": t["optimizer"],
        }
    data = _deep_update(base, update)
    if data["data"]["source"] != "synthetic":
        raise UserError(
            f"{params_file}: data.source is {data['data']['source']!r}; make seeds runs the synthetic benchmark"
        )
    return parse_params(data, str(params_file)).model_dump()


def oracle(params: dict, arm: str = "oracle") -> list[tuple[str, str, str]]:
    """The relations an oracle arm (`ORACLES`) retrains with, for a run's params (sorted triples):
    `oracle` the true relations an unseen set scores but `ORACLE_LEFT_OUT`, `oracle-out` those of them
    whose secondary is outside the dataset's label space."""
    from uniseg.datasets.synthetic import oracle_relations
    from uniseg.datasets.synthetic.policies import load_policy

    found = oracle_relations(params["train"]["datasets"], params["evaluate"]["unseen"])
    kept = [r for r in found if r not in ORACLE_LEFT_OUT]
    if arm == "oracle-out":
        kept = [(d, c, c2) for d, c, c2 in kept if c2 not in load_policy(d).classes]
    return sorted(kept)
