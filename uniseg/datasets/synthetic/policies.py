"""Labelling policies of the synthetic datasets: which class name a dataset gives each world class, and
its visual style. Policies are YAML files (`policies/<name>.yaml`; schema in the README):

    role: train | test
    like: cityscapes            # real dataset whose label space (names and order) the policy uses
    classes: [...]              # instead of `like`: an explicit label space (a new dataset)
    labels: {world class: class name | null}   # null = not labelled (ignore); every world class listed
    labels_from: cityscapes     # instead of `labels`: reuse another policy's labels
    style: {key: value}         # appearance, see world.DEFAULT_STYLE
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from uniseg.datasets.synthetic.world import DEFAULT_STYLE, WORLD_CLASSES
from uniseg.errors import DataError, UserError, choices

POLICY_DIR = Path(__file__).parent / "policies"
KEYS = {"role", "like", "classes", "labels", "labels_from", "style", "negatives"}


@dataclass(frozen=True)
class Policy:
    name: str
    role: str  # train | test
    like: str | None  # the real dataset whose conventions it follows
    classes: list[str]  # label space (class names, in label-space order)
    labels: dict[str, str | None]  # world class -> class name (None = ignore)
    style: dict
    path: Path
    negatives: bool = False  # a test set with negative frames (no road-scene class; void ground truth)


def dataset_names() -> list[str]:
    """Names of the synthetic datasets (the policy files shipped with uniseg)."""
    return sorted(p.stem for p in POLICY_DIR.glob("*.yaml"))


def _policy_path(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise DataError(f"{path}: policy file not found")
        return path
    path = POLICY_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise UserError(f"unknown synthetic dataset {str(name_or_path)!r}; valid: {choices(dataset_names())}")
    return path


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise DataError(f"{path}: malformed YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: a policy must be a mapping with keys {choices(sorted(KEYS))}")
    unknown = set(data) - KEYS
    if unknown:
        raise DataError(f"{path}: unknown key {sorted(unknown)[0]!r}; valid: {choices(sorted(KEYS))}")
    return data


def load_policy(name_or_path: str | Path) -> Policy:
    """Read and validate a policy by dataset name or YAML path; errors name the file and the key."""
    from uniseg import taxonomy

    path = _policy_path(name_or_path)
    data = _read_yaml(path)
    role = data.get("role")
    if role not in ("train", "test"):
        raise DataError(f"{path}: key 'role' must be train or test, got {role!r}")
    if "labels_from" in data:
        labels = load_policy(data["labels_from"]).labels
    elif isinstance(data.get("labels"), dict):
        labels = data["labels"]
    else:
        raise DataError(
            f"{path}: key 'labels' (a mapping world class -> class name) or 'labels_from' is required"
        )
    for world in labels:
        if world not in WORLD_CLASSES:
            raise DataError(f"{path}: labels: unknown world class {world!r}; valid: {choices(WORLD_CLASSES)}")
    missing = [w for w in WORLD_CLASSES if w not in labels]
    if missing:
        raise DataError(
            f"{path}: labels: world class {missing[0]!r} is not mapped (give a class name or null)"
        )
    like = data.get("like")
    if like is not None:
        full = taxonomy.label_space(like)  # unknown names raise with the valid list
    elif isinstance(data.get("classes"), list):
        full = [str(c) for c in data["classes"]]
    else:
        raise DataError(
            f"{path}: key 'like' (a real dataset) or 'classes' (a list of class names) is required"
        )
    for world, name in labels.items():
        if name is not None and name not in full:
            raise DataError(
                f"{path}: labels: {world!r} -> {name!r}: not a class of this label space; valid: {choices(full)}"
            )
    # The label space is the real one, whole: a class the world never draws is still one the dataset's
    # annotators could have used, so its loss pushes that class down everywhere (Null BCE: only there).
    classes = list(full)
    style = data.get("style") or {}
    if not isinstance(style, dict):
        raise DataError(f"{path}: key 'style' must be a mapping")
    for key in style:
        if key not in DEFAULT_STYLE:
            raise DataError(f"{path}: style: unknown key {key!r}; valid: {choices(sorted(DEFAULT_STYLE))}")
    negatives = data.get("negatives", False)
    if not isinstance(negatives, bool) or (negatives and role != "test"):
        raise DataError(f"{path}: key 'negatives' must be true or false, and true only for a test set")
    name = path.stem
    return Policy(name, role, like, classes, dict(labels), {**DEFAULT_STYLE, **style}, path, negatives)
