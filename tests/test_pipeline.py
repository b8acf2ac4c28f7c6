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
        if rel in ("uniseg/__init__.py", "uniseg/datasets/__init__.py", "stages/__init__.py"):
            continue  # package markers: version and constants only
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
