"""End-to-end smoke test of the real DVC pipeline on a tiny profile, in a temporary git copy.

`dvc repro` -> a second `dvc repro` is a no-op -> `dvc exp run -S loss=ce` -> `dvc metrics diff`
-> `dvc exp run -S relabel.tau=0.6`, asserting which stages ran each time. Also: the committed
dvc.lock is not stale (no code or params dependency modified since it was written).
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PER_DATASET = ("download", "shard")
INPUTS_UNDER_REPORTS = {"reports/headline.md", "reports/headline.json", "reports/seeds/ladder/ladder.json"}


def _env() -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["DVC_NO_ANALYTICS"] = "1"
    env.setdefault("GIT_AUTHOR_NAME", "uniseg-test")
    env.setdefault("GIT_AUTHOR_EMAIL", "test@example.invalid")
    env.setdefault("GIT_COMMITTER_NAME", "uniseg-test")
    env.setdefault("GIT_COMMITTER_EMAIL", "test@example.invalid")
    return env


def _run(args, cwd, timeout=900) -> str:
    proc = subprocess.run(args, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(map(str, args))} failed:\n{out[-4000:]}"
    return out


def _stages_run(output: str) -> set[str]:
    """Stage names (foreach items collapsed to their stage) that DVC says it ran."""
    names = set(re.findall(r"Running stage '([^']+)'", output))
    return {n.split("@")[0] for n in names}


def _copy_tree(dst: Path) -> None:
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for raw in files:
        if not raw:
            continue
        rel = raw.decode()
        src = ROOT / rel
        # Pipeline outputs are left behind; the headline (`make seeds`) and the ladder (`make ladder`) are
        # inputs of report.
        output = rel == "dvc.lock" or rel.startswith(("data/", "models/", "reports/"))
        if not src.is_file() or (output and rel not in INPUTS_UNDER_REPORTS):
            continue
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst / rel)


@pytest.mark.slow
def test_dvc_pipeline_end_to_end(tmp_path):
    work = tmp_path / "repo"
    work.mkdir()
    _copy_tree(work)
    shutil.copy(work / "params.tiny.yaml", work / "params.yaml")
    _run(["git", "init", "-q"], work)
    _run(["git", "add", "-A"], work)
    _run(["git", "commit", "-qm", "tiny"], work)

    first = _run(["dvc", "repro"], work)
    ran = _stages_run(first)
    assert {"download", "shard", "train", "mine", "relabel", "retrain", "evaluate", "report"} <= ran, ran
    metrics = json.loads((work / "reports/metrics.json").read_text())
    assert "miou" in metrics["base"]["unseen"]["kitti"] and "mean" in metrics["crbce"]["unseen"]
    assert (work / "reports/results.md").is_file()

    again = _run(["dvc", "repro"], work)
    assert not _stages_run(again), again

    _run(["git", "add", "-A"], work)
    _run(["git", "commit", "-qm", "baseline"], work)

    ce = _run(["dvc", "exp", "run", "-S", "loss=ce"], work)
    ran = _stages_run(ce)
    assert not ran & set(PER_DATASET), f"changing the loss re-ran data stages: {ran}"
    assert {"train", "mine", "evaluate"} <= ran, ran

    diff = _run(["dvc", "metrics", "diff", "--json"], work)
    assert "base.unseen.kitti.miou" in diff

    tau = _run(["dvc", "exp", "run", "-S", "relabel.tau=0.6"], work)
    ran = _stages_run(tau)
    assert {"relabel", "retrain"} <= ran, ran
    assert not ran & {"download", "shard", "train", "mine"}, f"changing tau re-ran: {ran}"


def test_committed_dvc_lock_is_not_stale():
    """No code or params dependency changed since dvc.lock was written (data outputs may be absent)."""
    assert (ROOT / "dvc.lock").is_file(), "dvc.lock is missing: run `dvc repro` and commit dvc.lock"
    out = _run(["dvc", "status", "--json"], ROOT, timeout=300)
    status = json.loads(out[out.index("{") :]) if "{" in out else {}
    stale = []
    for stage, changes in status.items():
        for change in changes if isinstance(changes, list) else []:
            if not isinstance(change, dict):
                continue
            for path, what in change.get("changed deps", {}).items():
                if (
                    what == "modified"
                    and (ROOT / path).exists()
                    and not path.startswith(("data/", "models/"))
                ):
                    stale.append(f"{stage}: {path}")
            if "changed params" in str(change) or "changed command" in str(change):
                stale.append(f"{stage}: {change}")
    assert not stale, "dvc.lock is stale; run `dvc repro` and commit dvc.lock:\n" + "\n".join(stale)
