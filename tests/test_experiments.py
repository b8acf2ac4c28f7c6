"""The experiment driver: the seeds headline (paired summaries from stored per-(world, seed, arm) results),
the resumable runner (fingerprints decide what is recomputed), and the paper grid's table."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from uniseg.experiments.grid import render_table
from uniseg.experiments.headline import collect, summarise, write_headline
from uniseg.report.headline import render

ROOT = Path(__file__).resolve().parents[1]


def _record(
    world,
    seed,
    arm,
    unseen,
    rider=50.0,
    relations=None,
    device="cpu AVX2",
    seen=None,
    union=None,
    headroom=None,
):
    datasets = {"kitti": {"miou": unseen, "iou": {"rider": rider}}, "camvid": {"miou": unseen}}
    seen = unseen + 5 if seen is None else seen
    metrics = {
        "unseen": {**datasets, "mean": unseen},
        "seen": {"cityscapes": {"miou": seen}, "mean": seen},
    }
    if headroom is not None:
        metrics["unseen"]["kitti"]["headroom"] = headroom
        metrics["unseen"]["mean_headroom"] = headroom
    if union is not None:
        metrics["union"] = {
            "cityscapes": {"top1": union, "top1_classes": {"lane marking": union}},
            "mean": union,
        }
    return {
        "world": world,
        "seed": seed,
        "arm": arm,
        "seconds": 60,
        "device": device,
        "metrics": metrics,
        "relations": relations or {},
    }


def test_summary_is_mean_sample_std_and_a_t_interval_for_any_number_of_seeds():
    s = summarise([40.0, 42.0, 44.0])
    assert s["mean"] == 42.0 and s["std"] == 2.0
    assert s["ci95"] == pytest.approx([42 - 4.303 * 2 / 3**0.5, 42 + 4.303 * 2 / 3**0.5], abs=0.01)
    assert summarise([41.0]) == {"mean": 41.0, "std": None, "ci95": None, "per_seed": [41.0]}
    twelve = summarise([float(v % 2) for v in range(12)])  # t(11) = 2.201, not a normal quantile
    half = 2.201 * twelve["std"] / 12**0.5
    assert twelve["ci95"] == pytest.approx([0.5 - half, 0.5 + half], abs=0.01)


def test_paired_differences_are_taken_per_seed_on_unseen_seen_signature_and_readout():
    records = [
        _record(0, 1, "ce", 40.0, rider=30.0, seen=50.0),
        _record(0, 0, "ce", 45.0, rider=35.0, seen=50.0),
        _record(0, 0, "nullbce", 47.0, rider=45.0, seen=51.0),
        _record(0, 1, "nullbce", 41.0, rider=40.0, seen=51.0),
        _record(0, 0, "crbce", 48.0, union=30.0),
        _record(0, 0, "control", 48.5, union=20.0),
    ]
    h = collect(records)
    assert h["arms"]["ce"]["per_seed"] == [45.0, 40.0], "per-arm values in seed order"
    paired = h["paired"]["nullbce_minus_ce"]
    assert paired["per_seed"] == [2.0, 1.0] and paired["mean"] == 1.5
    assert paired["seen"]["per_seed"] == [1.0, 1.0]
    assert paired["signature"]["per_seed"] == [1.0, 0.0], "unseen − seen, per seed"
    assert h["paired"]["crbce_minus_control"]["per_seed"] == [-0.5]
    assert h["paired"]["crbce_minus_control"]["union"]["per_seed"] == [10.0]
    assert "union" not in paired, "no readout stored for these arms"
    assert h["classes"]["nullbce_minus_ce"]["unseen.kitti.rider"]["per_seed"] == [10.0, 10.0]
    assert h["arms"]["crbce"]["seeds"] == [0], "an arm run for some seeds only says which"
    text = render(h)
    assert "| nullbce_minus_ce (2 seeds) | +1.50 [" in text and "+2.0, +1.0" in text


def test_the_headline_says_which_seeds_ran_on_which_device():
    records = [
        _record(0, 0, "ce", 40.0),
        _record(0, 0, "nullbce", 41.0),
        _record(0, 2, "ce", 42.0, device="cuda NVIDIA H200"),
        _record(0, 1, "nullbce", 43.0),
    ]
    del records[3]["device"]  # a result stored before devices were recorded
    h = collect(records)
    assert h["devices"] == {"cpu AVX2": [0], "not recorded": [1], "cuda NVIDIA H200": [2]}
    assert h["arms"]["ce"]["minutes"] == {"cpu AVX2": 1.0, "cuda NVIDIA H200": 1.0}, "costs kept apart"
    assert "Computed on cpu AVX2: seeds 0; not recorded: seeds 1; cuda NVIDIA H200: seeds 2." in render(h)


def test_targets_are_judged_on_the_headline():
    rel = {"precision": 0.9, "recall": 0.5, "paper_recall": 0.5}
    records = [_record(0, s, "ce", 40.0 + s, seen=50.0) for s in range(5)]
    records += [_record(0, s, "ce-cosine", 43.0 + s) for s in range(5)]
    records += [_record(0, s, "nullbce", 42.0 + s + 0.1 * s, seen=50.5) for s in range(5)]
    records += [_record(0, s, "crbce", 45.0, relations=rel, union=30.0 + s) for s in range(5)]
    records += [_record(0, s, "control", 45.2, union=29.0) for s in range(5)]
    records += [_record(1, 0, "ce", 40.0), _record(1, 0, "nullbce", 39.0)]
    rows = collect(records)["targets"]
    assert [(t["world"], t["met"]) for t in rows] == [
        (0, False),
        (0, True),
        (0, True),
        (0, False),
        (1, False),
    ]
    assert rows[0]["target"].startswith("Null BCE − CE (cosine head)")
    assert rows[1]["measured"].startswith("+2.20 [") and "; +1.70 [" in rows[1]["measured"], (
        "and the signature"
    )
    assert rows[2]["measured"].startswith("+3.00 ["), "C-R BCE − control on the union readout"
    assert rows[3]["measured"] == "0.90; 0.50", "precision met, Table A-1 recall not: not met"
    assert "sign" in rows[4]["target"], "world 1 is judged by the default world's sign, and has the other"
    three = [r for r in records if r["seed"] < 3]  # three seeds: an interval above 0, but too few seeds
    assert collect(three)["targets"][1]["met"] is False
    flat = [r for r in records if r["arm"] != "nullbce"]
    flat += [_record(0, s, "nullbce", 42.0 + s + 0.1 * s, seen=52.5 + s) for s in range(5)]
    assert collect(flat)["targets"][1]["met"] is False, "as large a lead on seen as on unseen: no signature"
    assert "| 0 | C-R BCE − control > 0 on the union readout, 95 % interval above 0 |" in render(
        collect(three)
    )
    noisy = [r for r in records if r["arm"] != "crbce"]
    noisy += [
        _record(0, s, "crbce", 45.0, relations=rel, union=29.0 + d) for s, d in enumerate([-1, 1, 3, -2, 2])
    ]
    union = next(t for t in collect(noisy)["targets"] if "union readout" in t["target"])
    assert union["measured"].startswith("+0.60 [") and not union["met"], "a mean ≥ 0 with 0 in its interval"


def test_more_seeds_go_where_an_interval_straddles_its_target():
    from uniseg.experiments.targets import undecided

    records = [_record(0, s, "ce", 40.0 + s, seen=50.0) for s in range(3)]
    records += [_record(0, s, "ce-cosine", 43.0 + s) for s in range(3)]
    records += [_record(0, s, "nullbce", 43.0 + s + 0.5 * (s - 1), seen=50.0) for s in range(3)]
    records += [_record(0, s, "crbce", 45.0, union=30.0 + d) for s, d in enumerate([-1, 2, 1])]
    records += [_record(0, s, "control", 45.2, union=29.0) for s in range(3)]
    h = collect(records)
    # Null BCE − CE cosine: 0.0 ± a spread, its interval holds the bar 0; − CE linear: +3.0 with an interval
    # above 0 and 1.5 but only 3 of its 5 seeds; C-R BCE − control on the union: +0.67 [−3.1, +4.5]
    assert undecided(h, 0) == ["nullbce_minus_ce_cosine", "nullbce_minus_ce", "crbce_minus_control"]
    settled = [r for r in records if r["arm"] not in ("ce-cosine", "crbce")]
    settled += [_record(0, s, "ce-cosine", 30.0 + s) for s in range(3)]
    settled += [_record(0, s, "crbce", 45.0, union=35.0 + 0.1 * s) for s in range(3)]
    assert undecided(collect(settled), 0) == ["nullbce_minus_ce"], "a clear lead and a clear gain are settled"
    five = settled + [
        _record(0, s, a, 40.0 + s + (3.0 if a == "nullbce" else 0), seen=50.0)
        for s in (3, 4)
        for a in ("ce", "nullbce")
    ]
    assert "nullbce_minus_ce" not in undecided(collect(five), 0), "five seeds, interval clear of 0 and 1.5"
    assert undecided(h, 1) == [], "a world without results has nothing to extend"


def test_the_oracle_rule_reads_the_headroom_and_the_oracle_against_its_control():
    def world(headroom, oracle_gain, crbce_gain):
        noise = (-0.1, 0.1, 0.0, 0.05)
        out = [_record(0, s, "control", 50.0, headroom=headroom) for s in range(4)]
        out += [_record(0, s, "oracle", 50.0 + oracle_gain + noise[s]) for s in range(4)]
        return out + [_record(0, s, "crbce", 50.0 + crbce_gain + noise[s]) for s in range(4)]

    assert "cannot show C-R BCE" in collect(world(0.2, 0.0, 0.0))["oracle_rule"]
    assert "does not help even with perfect relations" in collect(world(1.0, 0.0, 0.0))["oracle_rule"]
    assert "mining is the bottleneck" in collect(world(1.0, 0.8, 0.0))["oracle_rule"]
    assert "none of the rule's cases" in collect(world(0.5, 0.0, 0.0))["oracle_rule"]
    assert collect([_record(0, 0, "ce", 40.0)])["oracle_rule"] is None
    assert "The oracle rule: headroom 1.00" in render(collect(world(1.0, 0.0, 0.0)))


def test_the_paired_differences_are_drawn_per_world(tmp_path):
    from PIL import Image

    from uniseg.report.figures import plot_headline

    records = [
        _record(w, s, arm, 40.0 + s + (arm == "nullbce"))
        for w in (0, 1)
        for s in (0, 1)
        for arm in ("ce", "nullbce")
    ]
    assert plot_headline(collect(records), tmp_path / "headline.png")
    assert Image.open(tmp_path / "headline.png").size[0] > Image.open(tmp_path / "headline.png").size[1]
    assert not plot_headline(collect([_record(0, 0, "ce", 40.0)]), tmp_path / "none.png"), "nothing paired"
    assert not (tmp_path / "none.png").exists()


def test_a_second_world_is_kept_apart_and_the_default_world_is_the_top_level():
    records = [
        _record(w, s, a, 40.0 + w + (a == "nullbce"))
        for w in (0, 1)
        for s in (0, 1)
        for a in ("ce", "nullbce")
    ]
    h = collect(records)
    assert set(h["worlds"]) == {"0", "1"} and h["default_world"] == 0
    assert h["arms"]["ce"]["mean"] == 40.0 and h["worlds"]["1"]["arms"]["ce"]["mean"] == 41.0
    assert h["worlds"]["1"]["paired"]["nullbce_minus_ce"]["mean"] == 1.0
    assert "## World 1" in render(h)


def test_relations_are_summarised_per_candidate_rule():
    rel = {
        "candidates": "others",
        "precision": 0.5,
        "recall": 0.25,
        "other_rule": {"candidates": "outside", "precision": 1.0},
    }
    records = [_record(0, s, "crbce", 40.0, relations=rel) for s in (0, 1)]
    h = collect(records)
    assert h["relations"]["others"]["precision"]["mean"] == 0.5
    assert h["relations"]["outside"]["precision"]["mean"] == 1.0


def test_the_headline_is_built_only_from_the_results_kept(tmp_path):
    folder = tmp_path / "seeds" / "world0"
    folder.mkdir(parents=True)
    for s in (0, 1):
        for arm, v in (("ce", 40.0), ("nullbce", 42.0)):
            (folder / f"seed{s}-{arm}.json").write_text(json.dumps(_record(0, s, arm, v + s)))
    h = write_headline(tmp_path / "seeds", tmp_path / "headline.json", keep=lambda r: r["seed"] == 0)
    assert h["arms"]["ce"]["per_seed"] == [40.0]
    assert (tmp_path / "headline.md").is_file()


def test_the_paper_table_reads_metrics_through_one_reader():
    rev = {"name": "CIBM-nullbce", "data": {"metrics": {"reports/metrics.json": {"data": {
        "base": {"unseen": {"kitti": {"miou": 50.0}, "mean": 50.0, "mean_merged": 51.0}}}}}}}  # fmt: skip
    text = render_table([{"experiments": [{"revs": [rev]}]}])
    assert "| CIBM-nullbce | base | 50.0 | 50.0 |" in text and "mean_merged |" not in text


@pytest.fixture(scope="module")
def tiny_project(tmp_path_factory):
    """A copy of the project's code with the tiny profile as params.yaml (its worlds rendered once)."""
    root = tmp_path_factory.mktemp("seeds")
    for name in ("uniseg", "stages", "dvc.yaml", "models/pretrained.pt"):
        src, dst = ROOT / name, root / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dst)
    (root / "params.yaml").write_text((ROOT / "params.tiny.yaml").read_text())
    return root


def _seeds_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "uniseg.experiments", "seeds", "--world", "0", "--seed", "1", *args]


@pytest.mark.slow
def test_seeds_run_on_the_tiny_profile_resume_and_know_what_is_stale(tiny_project, monkeypatch):
    """Every arm of one seed on the tiny profile, two at a time; a second call keeps them; a changed
    evaluation param re-scores only; a changed training param retrains."""
    from uniseg.experiments.seeds import Runner

    monkeypatch.chdir(tiny_project)
    params = yaml.safe_load(Path("params.yaml").read_text())
    runner = Runner(Path("params.yaml"), Path(".seeds"), Path("results"), echo=lambda line: None, threads=1)
    arms = ("ce", "ce-cosine", "crbce", "control", "oracle", "oracle-out", "nullbce")
    done = {job[2]: what for job, what, _ in runner.run_all([(0, 0, a) for a in arms], workers=2)}
    assert done == dict.fromkeys(arms, "ran")
    stored = json.loads(runner.result_path(0, 0, "crbce").read_text())
    assert "kitti" in stored["metrics"]["unseen"] and "precision" in stored["relations"]
    assert "paper_recall" in stored["relations"] and stored["device"].endswith(", 1 threads")
    assert "union" in stored["metrics"] and "mean_headroom" in stored["metrics"]["unseen"]
    assert json.loads(runner.result_path(0, 0, "control").read_text())["relations"]["relations"] == 0
    oracle = json.loads(runner.result_path(0, 0, "oracle").read_text())["relations"]
    assert ["mapillary", "bicyclist", "rider"] in oracle["oracle"]
    assert ["mapillary", "traffic sign (back)", "traffic sign"] not in oracle["oracle"], "reported apart"
    outside = json.loads(runner.result_path(0, 0, "oracle-out").read_text())["relations"]["oracle"]
    assert outside and all(r in oracle["oracle"] for r in outside) and len(outside) < len(oracle["oracle"])
    mined = stored["relations"]["triples"]  # the relations C-R BCE was retrained with, as relabel chose them
    assert len(mined) == stored["relations"]["relations"] and all(len(t) == 4 for t in mined)
    assert runner.run(0, 0, "nullbce") == "kept"
    params["evaluate"]["height"] = 32
    Path("params.yaml").write_text(yaml.safe_dump(params))
    assert runner.status(0, 0, "ce") == "evaluate" and runner.run(0, 0, "ce") == "re-evaluated"
    params["train"]["lr"] = 0.02
    Path("params.yaml").write_text(yaml.safe_dump(params))
    assert runner.status(0, 0, "ce") == "run"
    Path("params.yaml").write_text((ROOT / "params.tiny.yaml").read_text())


def test_a_training_stage_shows_its_progress_now_and_then_and_all_of_it_when_it_fails(tmp_path, monkeypatch):
    from uniseg.errors import UserError
    from uniseg.experiments.seeds import Runner

    stages = tmp_path / "stages"
    stages.mkdir()
    (stages / "__init__.py").write_text("")
    (stages / "fake.py").write_text(
        "import sys\n"
        "print('loading the shards', flush=True)\n"
        "for i in range(1, 6):\n"
        "    print(f'ce iteration {i}/5  loss 1.0', flush=True)\n"
        "print('disk full', file=sys.stderr)\n"
        "sys.exit(int(sys.argv[-1]))\n"
    )
    monkeypatch.chdir(tmp_path)
    lines = []
    runner = Runner(Path("params.yaml"), tmp_path / "work", tmp_path / "results", echo=lines.append)
    runner.progress_every = 0.0
    runner._stage("fake", "0", label="world 0 seed 0 ce")
    assert lines == [f"  [world 0 seed 0 ce] ce iteration {i}/5  loss 1.0" for i in range(1, 6)]
    lines.clear()
    runner.progress_every = 3600.0
    runner._stage("fake", "0", label="world 0 seed 0 ce")
    assert lines == ["  [world 0 seed 0 ce] ce iteration 1/5  loss 1.0"], (
        "the first, then one an hour at most"
    )
    lines.clear()
    with pytest.raises(UserError, match=r"(?s)`stages.fake 1` failed:.*loading the shards.*5/5.*disk full"):
        runner._stage("fake", "1")
    assert lines == [], "without a label nothing is echoed"


def test_a_resumed_arm_reports_its_whole_training_time(tiny_project, monkeypatch):
    """An arm whose training resumed a checkpoint of an earlier session counts that session's training
    too (the checkpoint's clock), and says how much of it was carried; re-scoring keeps both."""
    import torch

    from uniseg.experiments.seeds import Runner
    from uniseg.train.checkpoints import checkpoint_path

    monkeypatch.chdir(tiny_project)
    runner = Runner(Path("params.yaml"), Path(".seeds"), Path("results"), echo=lambda line: None, threads=1)

    def resumed_training(world, seed, arm):  # what the train stage leaves after resuming an earlier run
        model = runner._model(world, seed, arm)
        model.parent.mkdir(parents=True, exist_ok=True)
        model.write_bytes(b"weights")
        torch.save({"seconds": 1300.0, "carried": 1234.0}, checkpoint_path(model))
        return {}, 0.0

    monkeypatch.setattr(runner, "_train", resumed_training)
    monkeypatch.setattr(runner, "_evaluate", lambda world, seed, arm: {"unseen": {"mean": 50.0}})
    assert runner.run(0, 2, "ce") == "ran"
    record = json.loads(runner.result_path(0, 2, "ce").read_text())
    assert record["seconds_carried"] == 1234 and 1234 <= record["seconds"] < 1234 + 60
    monkeypatch.setattr(runner, "status", lambda world, seed, arm: "evaluate")
    assert runner.run(0, 2, "ce") == "re-evaluated"
    again = json.loads(runner.result_path(0, 2, "ce").read_text())
    assert (again["seconds"], again["seconds_carried"]) == (record["seconds"], 1234)


@pytest.mark.slow
def test_a_killed_run_leaves_no_result_and_a_rerun_completes_it(tiny_project):
    result = tiny_project / "reports/seeds/default/world0/seed1-ce.json"
    started = tiny_project / ".seeds/default/world0/seed1/ce.params.yaml"  # written as training starts
    proc = subprocess.Popen(_seeds_command("--arm", "ce"), cwd=tiny_project, start_new_session=True)
    deadline = time.monotonic() + 300
    while not started.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the runner and its stage process, mid-training
    proc.wait()
    assert not result.exists(), "no result from a killed run"
    assert not (result.parent.exists() and any(result.parent.glob(".*"))), "no temporary left behind"
    again = subprocess.run(_seeds_command("--arm", "ce"), cwd=tiny_project, capture_output=True, text=True)
    assert again.returncode == 0 and "ce: ran" in again.stdout, again.stderr[-2000:]
    assert json.loads(result.read_text())["fingerprint"]["train"]


@pytest.mark.slow
def test_two_runners_on_the_same_folders_do_the_work_once(tiny_project):
    runners = [
        subprocess.Popen(
            _seeds_command("--arm", "ce-cosine"), cwd=tiny_project, stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [r.communicate()[0] for r in runners]
    assert [r.returncode for r in runners] == [0, 0]
    said = sorted(
        line.split(": ")[1].split(" in ")[0]
        for out in outputs
        for line in out.splitlines()
        if "seed 1 ce-cosine:" in line
    )
    assert said == ["kept", "ran"], outputs
    json.loads(
        (tiny_project / "reports/seeds/default/world0/seed1-ce-cosine.json").read_text()
    )  # whole and valid


def test_a_report_shows_the_headline_only_for_the_data_and_profile_it_was_made_from(tmp_path):
    from uniseg.params import parse_params
    from uniseg.scores import headline_markdown, headline_profile

    synthetic = parse_params({})
    write_headline(tmp_path / "none", tmp_path / "headline.json", profile=headline_profile(synthetic))
    assert headline_markdown(synthetic, tmp_path / "headline.md").startswith("# Headline over seeds")
    real = parse_params({"data": {"source": "real"}})
    assert headline_markdown(real, tmp_path / "headline.md") is None, (
        "no synthetic headline in a real-data report"
    )
    tiny = parse_params({"synthetic": {"height": 64, "width": 128}})
    assert headline_markdown(tiny, tmp_path / "headline.md") is None


def test_the_negative_frames_are_summarised_and_paired():
    def record(seed, arm, void, abstaining):
        r = _record(0, seed, arm, 50.0)
        r["metrics"]["unseen"]["wilddash2"] = {
            "miou": 40.0,
            "miou_abstain": abstaining,
            "negative_void": void,
            "positive_void": void / 10,
        }
        return r

    records = [record(s, "ce", 10.0 + s, 38.0) for s in range(3)] + [
        record(s, "nullbce", 30.0 + 2 * s, 39.0 + s) for s in range(3)
    ]
    h = collect(records)
    assert h["arms"]["nullbce"]["negative_void"]["per_seed"] == [30.0, 32.0, 34.0]
    assert h["arms"]["ce"]["class_miou"]["mean"] == 40.0 and h["arms"]["ce"]["abstain"]["mean"] == 38.0
    assert h["paired"]["nullbce_minus_ce"]["positive_void"]["per_seed"] == [2.0, 2.1, 2.2]
    assert h["paired"]["nullbce_minus_ce"]["negative_void"]["per_seed"] == [20.0, 21.0, 22.0]
    assert h["arms"]["ce"]["mean"] == 50.0, "WildDash 2 stays out of the unseen mean"
    assert h["paired"]["nullbce_minus_ce"]["abstain"]["per_seed"] == [1.0, 2.0, 3.0]
    row = next(line for line in render(h).splitlines() if line.startswith("| nullbce_minus_ce, paired"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[0] == "nullbce_minus_ce, paired (3 seeds)" and cells[2].startswith("+2.00 ["), cells
    assert cells[3].startswith("+21.00 ["), "the void share in its own column"
    assert cells[4].startswith("+2.10 ["), "the positive frames' void share beside it"


def test_the_full_union_iou_is_summarised_and_paired_where_it_was_measured():
    def record(seed, arm, iou):
        r = _record(0, seed, arm, 50.0, union=60.0)
        r["metrics"]["union"] |= {"mean_iou_full": iou, "mean_iou_full_reachable": iou + 10}
        return r

    h = collect(
        [record(s, "control", 20.0 + s) for s in range(3)] + [record(s, "crbce", 22.0) for s in range(3)]
    )
    assert h["arms"]["control"]["union_iou"]["per_seed"] == [20.0, 21.0, 22.0]
    assert h["paired"]["crbce_minus_control"]["union_iou_reachable"]["per_seed"] == [2.0, 1.0, 0.0]
    text = render(h)
    assert "full-union IoU, reachable cells" in text
    assert "full-union IoU" not in render(collect([_record(0, 0, "ce", 50.0, union=60.0)])), "not measured"


def test_each_profile_has_its_own_results_and_headline():
    """Profiles never overwrite each other: params.yaml is "default" (its headline is the one results.md
    embeds), params.<name>.yaml is <name>, with its results and headline under reports/seeds/<name>/."""
    import typer

    from uniseg.experiments.__main__ import RESULTS, headline_path, profile_name

    assert profile_name(Path("params.yaml")) == "default"
    assert profile_name(Path("params.converged.yaml")) == "converged"
    assert headline_path(Path("params.yaml")) == Path("reports/headline.json")
    assert headline_path(Path("params.converged.yaml")) == RESULTS / "converged" / "headline.json"
    for bad in ("converged.yaml", "params.a.b.yaml", "params..yaml"):
        with pytest.raises(typer.BadParameter, match="params.<name>.yaml"):
            profile_name(Path(bad))


def test_the_oracle_out_arm_keeps_the_oracle_s_relations_to_a_class_outside_the_dataset_s_space():
    """Appendix B's mechanism apart: of the oracle's true relations, those whose secondary the dataset
    cannot name (bicyclist, motorcyclist -> rider; rail track -> terrain), not the in-space supersets."""
    from uniseg.experiments.arms import arm_params, oracle

    params = arm_params(ROOT / "params.yaml", 0, 0, "oracle-out")
    assert oracle(params, "oracle-out") == [
        ("idd", "rail track", "terrain"),
        ("mapillary", "bicyclist", "rider"),
        ("mapillary", "motorcyclist", "rider"),
    ]
    everything = oracle(params)
    assert ("mapillary", "lane marking - general", "road") in everything
    assert set(oracle(params, "oracle-out")) < set(everything)


def test_mined_triples_are_read_back_as_relabel_wrote_them(tmp_path):
    import pandas as pd

    from uniseg.experiments.seeds import _read_triples
    from uniseg.relations.mining import MULTILABEL_COLUMNS, write_multilabels

    rows = [("mapillary", "bicyclist", "rider", 0.41234567), ("idd", "curb", "sidewalk", 0.3)]
    write_multilabels(pd.DataFrame(rows, columns=MULTILABEL_COLUMNS), tmp_path / "m.parquet")
    assert _read_triples(tmp_path / "m.parquet") == [
        ["mapillary", "bicyclist", "rider", 0.4123],
        ["idd", "curb", "sidewalk", 0.3],
    ]


def test_restamp_carries_over_only_results_that_were_current_before_the_change(tmp_path, monkeypatch):
    from uniseg.experiments.seeds import Runner

    runner = Runner(ROOT / "params.yaml", tmp_path / "work", tmp_path / "results", echo=lambda line: None)
    old, new = {"train": "t1", "evaluate": "e1"}, {"train": "t1", "evaluate": "e2"}
    monkeypatch.setattr(
        Runner, "fingerprints", lambda self, w, s, a, code=Path("."): old if code != Path(".") else new
    )
    for arm, stored in (("ce", old), ("ce-cosine", {"train": "t0", "evaluate": "e0"}), ("nullbce", new)):
        path = runner.result_path(0, 0, arm)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"world": 0, "seed": 0, "arm": arm, "fingerprint": stored}))
    stamp = runner._model(0, 0, "ce").with_suffix(".fingerprint")
    stamp.parent.mkdir(parents=True)
    stamp.write_text("t1")
    assert runner.restamp(0, 0, "ce", tmp_path / "before") == "restamped"
    assert json.loads(runner.result_path(0, 0, "ce").read_text())["fingerprint"] == old, "listed, not written"
    assert runner.restamp(0, 0, "ce", tmp_path / "before", write=True) == "restamped"
    assert json.loads(runner.result_path(0, 0, "ce").read_text())["fingerprint"] == new
    assert runner.restamp(0, 0, "ce-cosine", tmp_path / "before", write=True) == "left alone", (
        "stale before too"
    )
    assert runner.restamp(0, 0, "nullbce", tmp_path / "before", write=True) == "current"
