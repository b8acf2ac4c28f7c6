"""The DAG's declarations match the code: each stage depends on every project module it imports.

A stage that imports a module it does not declare would not rerun when that module changes (stale
results); one that declares too much reruns needlessly. This checks the first, statically (imports
inside functions included), by following `uniseg` imports transitively from `stages/<name>.py`.
"""

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())


def _module_file(name: str) -> Path | None:
    base = ROOT / Path(*name.split("."))
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: set[str] = set()
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)
    return {m for m in out if m.split(".")[0] in ("uniseg", "stages")}


def _marker(path: Path) -> bool:
    """A package's __init__.py that holds a docstring and nothing else."""
    body = ast.parse(path.read_text(encoding="utf-8")).body
    return path.name == "__init__.py" and all(isinstance(n, ast.Expr) for n in body)


def project_closure(entry: Path) -> set[Path]:
    """Every project source file reachable by imports from `entry` (packages include their __init__)."""
    seen: set[Path] = set()
    todo = [entry]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imports(path):
            parts = name.split(".")
            for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__, a/b/__init__ too
                f = _module_file(".".join(parts[:i]))
                if f is not None and f not in seen:
                    todo.append(f)
    return seen


def _stage_entries():
    for name, stage in DVC["stages"].items():
        body = stage.get("do", stage)
        yield name, body


@pytest.mark.parametrize("name", [n for n, _ in _stage_entries()])
def test_stage_declares_the_modules_it_imports(name):
    body = dict(_stage_entries())[name]
    entry = ROOT / "stages" / f"{name}.py"
    assert entry.is_file(), f"dvc.yaml stage {name} has no stages/{name}.py"
    deps = [d if isinstance(d, str) else next(iter(d)) for d in body.get("deps", [])]
    undeclared = []
    for path in sorted(project_closure(entry)):
        rel = path.relative_to(ROOT).as_posix()
        if rel in ("uniseg/__init__.py", "uniseg/datasets/__init__.py", "stages/__init__.py") or _marker(
            path
        ):
            continue  # package markers: version and constants, or a docstring alone
        if not any(rel == d or rel.startswith(d.rstrip("/") + "/") for d in deps):
            undeclared.append(rel)
    assert not undeclared, f"stage {name} imports modules not in its deps: {undeclared}"


def test_stage_commands_run_their_own_stage_file():
    for name, body in _stage_entries():
        assert body["cmd"].startswith(f"python -m stages.{name}"), name


def test_every_declared_params_key_exists():
    from uniseg.params import load_params

    params = load_params(ROOT / "params.yaml")
    for name, body in _stage_entries():
        for key in body.get("params", []):
            obj = params
            for part in key.split("."):
                assert hasattr(obj, part), f"stage {name}: params key {key} does not exist"
                obj = getattr(obj, part)


def _library_graph() -> dict[str, set[str]]:
    """Imports between uniseg's own files, those inside functions included."""
    graph = {}
    for path in sorted((ROOT / "uniseg").rglob("*.py")):
        targets = set()
        for name in _imports(path):
            f = _module_file(name)
            if f is not None and f != path:
                targets.add(f.relative_to(ROOT).as_posix())
        graph[path.relative_to(ROOT).as_posix()] = targets
    return graph


def test_the_library_never_imports_stages_or_benchmarks():
    for module, targets in _library_graph().items():
        assert not [t for t in targets if t.startswith(("stages/", "benchmarks/"))], module


def test_the_library_has_no_import_cycles():
    graph = _library_graph()
    state: dict[str, int] = {}

    def visit(node, trail):
        if state.get(node) == 1:
            raise AssertionError("import cycle: " + " -> ".join([*trail[trail.index(node) :], node]))
        if state.get(node) == 2:
            return
        state[node] = 1
        for nxt in graph.get(node, ()):
            visit(nxt, [*trail, node])
        state[node] = 2

    for node in graph:
        visit(node, [])


def test_the_training_stages_depend_on_exactly_the_training_datasets_shards():
    """DVC cannot expand train.datasets into deps: dvc.yaml lists the shards, params validates against
    the same list (uniseg.names.TRAINING_DATASETS), so a training set is never silently missing."""
    from uniseg.names import TRAINING_DATASETS

    for name in ("train", "mine", "relabel", "retrain"):
        deps = [d if isinstance(d, str) else next(iter(d)) for d in DVC["stages"][name]["deps"]]
        shards = [d.split("/")[-1] for d in deps if d.startswith("data/shards")]
        assert shards == list(TRAINING_DATASETS), name
    evaluate = [d if isinstance(d, str) else next(iter(d)) for d in DVC["stages"]["evaluate"]["deps"]]
    assert "data/shards" in evaluate, "evaluation scores every dataset"


def _code_deps(stage: str) -> set[Path]:
    """The code files of a stage's deps in dvc.yaml (folders expanded)."""
    from uniseg import identity

    deps = [d if isinstance(d, str) else next(iter(d)) for d in DVC["stages"][stage]["deps"]]
    return set(identity.code_files([d for d in deps if d.startswith(("uniseg/", "stages/"))], ROOT))


@pytest.mark.parametrize("stage", ["train", "retrain"])
def test_the_training_stages_deps_are_the_declared_identity_of_a_model(stage):
    """One declaration of what decides a model (uniseg/identity.py), used by the checkpoint and the seeds'
    fingerprints: dvc.yaml's deps of the training stages are exactly it, over every backbone family."""
    from uniseg import identity
    from uniseg.names import BACKBONES

    declared = {
        f for name in BACKBONES for f in identity.code_files(identity.training_code(stage, name), ROOT)
    }
    declared |= set(identity.code_files(identity.NOT_IDENTITY, ROOT))
    families = {p.stem for p in (ROOT / identity.BACKBONES).glob("*.py")} - {"__init__"}
    assert families == {identity.family(name) for name in BACKBONES}, (
        "a family module without names, or names without one"
    )
    deps = _code_deps(stage)
    rel = lambda files: sorted(f.relative_to(ROOT).as_posix() for f in files)  # noqa: E731
    assert not deps - declared, f"{stage}: in dvc.yaml, not in uniseg/identity.py: {rel(deps - declared)}"
    assert not declared - deps, f"{stage}: in uniseg/identity.py, not in dvc.yaml: {rel(declared - deps)}"


def test_a_model_identity_covers_its_own_backbone_family_only():
    from uniseg import identity

    code = identity.training_code("train", "hrnet_w18_small")
    assert "uniseg/model/backbones/hrnet.py" in code
    assert not [
        c
        for c in code
        if c.startswith(identity.BACKBONES + "/") and c not in identity.backbone_code("hrnet_w18")
    ]


def test_adding_a_backbone_family_leaves_every_stored_result_current(tmp_path):
    """The seeds' fingerprints of an HRNet arm (every stage it runs) ignore other families' modules and the
    names a param may take; they follow the model's own family."""
    import shutil

    from uniseg.experiments.fingerprints import fingerprint
    from uniseg.params import load_params

    for part in ("uniseg", "stages", "dvc.yaml", "models/pretrained.pt"):
        copy = shutil.copytree if (ROOT / part).is_dir() else shutil.copy
        (tmp_path / part).parent.mkdir(parents=True, exist_ok=True)
        copy(ROOT / part, tmp_path / part)
    params = load_params(ROOT / "params.yaml").model_dump()
    stages = ("train", "mine", "relabel", "retrain", "evaluate")
    before = fingerprint(stages, params, "data", tmp_path)
    (tmp_path / "uniseg/model/backbones/newnet.py").write_text("NAMES = ('newnet_a',)\n")
    with open(tmp_path / "uniseg/names.py", "a") as f:
        f.write("# a new backbone's names\n")
    assert fingerprint(stages, params, "data", tmp_path) == before
    with open(tmp_path / "uniseg/model/backbones/hrnet.py", "a") as f:
        f.write("# the family's own module\n")
    assert fingerprint(stages, params, "data", tmp_path) != before


# The pipeline's steps, bottom up: a module imports its own step and those below it, never one above.
STEPS = [
    (
        "uniseg/__init__.py",
        "uniseg/errors.py",
        "uniseg/fsio.py",
        "uniseg/names.py",
        "uniseg/params.py",
        "uniseg/identity.py",
        "uniseg/colours.py",
        "uniseg/plotting.py",
        "uniseg/metrics.py",
        "uniseg/scores.py",
    ),
    ("uniseg/taxonomy/",),
    ("uniseg/datasets/",),
    ("uniseg/shards/",),
    ("uniseg/model/",),
    ("uniseg/train/",),
    ("uniseg/relations/",),
    ("uniseg/evaluate/",),
    ("uniseg/predict/",),
    ("uniseg/report/",),
    ("uniseg/experiments/", "uniseg/cli.py"),
]


def _step(module: str) -> int:
    found = [i for i, prefixes in enumerate(STEPS) if module.startswith(prefixes)]
    assert found, f"{module} belongs to no step of tests/test_pipeline.py STEPS: place it"
    return found[0]


def test_no_module_imports_a_later_step_of_the_pipeline():
    upward = [
        f"{module} -> {target}"
        for module, targets in _library_graph().items()
        for target in targets
        if _step(target) > _step(module)
    ]
    assert not upward, "imports up the pipeline:\n" + "\n".join(sorted(upward))
