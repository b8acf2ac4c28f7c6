"""The budget ladder's rule (experiments/ladder.py), on made-up curves: it waits for what it needs, judges
the deciding pair on two seeds, and falls back to the last rung, saying it is not converged."""

from pathlib import Path

import yaml

from uniseg.experiments.ladder import decide, read_curve, write_ladder, write_rung_params

ROOT = Path(__file__).resolve().parents[1]
BUDGETS = (1600, 3200, 6400, 12800)


def _curve(per_arm: dict) -> dict:
    """{arm: {budget: {seed: value}}} from {arm: {seed: [value per budget]}}."""
    return {
        arm: {b: {s: v[i] for s, v in seeds.items() if i < len(v)} for i, b in enumerate(BUDGETS)}
        for arm, seeds in per_arm.items()
    }


def test_the_rule_scans_seed_0_then_confirms_the_deciding_pair_on_seeds_0_and_1():
    rising = [50.0, 53.0, 54.0, 54.2]  # gains 3.0, 1.0, 0.2: the first doubling under 0.5 is 6400 -> 12800
    curve = _curve({"ce": {0: rising}, "ce-cosine": {0: rising}, "nullbce": {0: rising}})
    d = decide(curve)
    assert d["budget"] is None and d["needs"] == [(6400, 1), (12800, 1)]  # seed 1 at the deciding pair
    assert [x["meets"] for x in d["doublings"]] == [False, False, True]
    both = _curve({a: {0: rising, 1: [None, None, 54.1, 54.3]} for a in ("ce", "ce-cosine", "nullbce")})
    for arm in both:  # seed 1 only where it was run
        both[arm] = {b: {s: v for s, v in seeds.items() if v is not None} for b, seeds in both[arm].items()}
    d = decide(both)
    assert d["budget"] == 6400 and d["retrain"] == 2133 and d["converged"] is True


def test_a_pair_that_meets_on_seed_0_but_not_on_the_mean_does_not_decide():
    seed0 = [50.0, 50.3, 51.5, 52.8]  # 1600 -> 3200 meets on seed 0 only
    seed1 = [50.0, 51.2]
    curve = _curve({a: {0: seed0, 1: seed1} for a in ("ce", "ce-cosine", "nullbce")})
    d = decide(curve)
    assert d["doublings"][0]["meets"] is False and d["doublings"][0]["seeds"] == [0, 1]
    assert d["budget"] == 12800 and d["converged"] is False and "not converged" in d["reason"]
    assert "+1.30" in d["reason"]  # the last doubling's gains are said


def test_the_rule_waits_for_seed_0_at_the_next_rung():
    curve = _curve({a: {0: [50.0, 52.0]} for a in ("ce", "ce-cosine", "nullbce")})
    d = decide(curve)
    assert d["budget"] is None and d["needs"] == [(6400, 0)]


def test_a_rung_scores_no_unseen_set_until_asked_and_the_ladder_is_written(tmp_path):
    rung = write_rung_params(ROOT / "params.ladder.yaml", 3200, tmp_path / "p.yaml")
    p = yaml.safe_load(rung.read_text())
    assert p["train"]["iters"] == 3200 and p["retrain"]["iters"] == 1066 and p["evaluate"]["unseen"] == []
    assert p["train"]["amp_cpu"] is True
    later = yaml.safe_load(
        write_rung_params(ROOT / "params.ladder.yaml", 3200, tmp_path / "q.yaml", True).read_text()
    )
    assert later["evaluate"]["unseen"]
    curve = read_curve(tmp_path, "ladder")
    out = write_ladder(tmp_path, "ladder", curve, decide(curve))
    assert out.is_file() and "smallest base budget" in out.read_text()


def test_the_converged_profile_is_the_ladder_s_at_b_star_and_adopts_the_rung_s_models(tmp_path):
    import pytest

    from uniseg.errors import UserError
    from uniseg.experiments.ladder import adopt_models, write_converged
    from uniseg.experiments.seeds import Runner

    waiting = decide(_curve({a: {0: [50.0, 52.0]} for a in ("ce", "ce-cosine", "nullbce")}))
    with pytest.raises(UserError, match="not fixed B"):
        write_converged(ROOT / "params.ladder.yaml", waiting, tmp_path / "params.converged.yaml", "ladder")
    rising = [50.0, 53.0, 54.0, 54.2]
    never = decide(_curve({a: {0: rising, 1: rising} for a in ("ce", "ce-cosine", "nullbce")}))
    never = {**never, "budget": 12800, "retrain": 4266, "converged": False}
    out = write_converged(ROOT / "params.ladder.yaml", never, tmp_path / "params.converged.yaml", "ladder")
    text = out.read_text()
    assert "B* = 12800" in text and "not converged" in text
    p = yaml.safe_load(text)
    rung = yaml.safe_load(
        write_rung_params(ROOT / "params.ladder.yaml", 12800, tmp_path / "r.yaml").read_text()
    )
    assert p["train"]["iters"] == 12800 and p["retrain"]["iters"] == 4266 and p["evaluate"]["unseen"]
    assert {k: v for k, v in p.items() if k != "evaluate"} == {
        k: v for k, v in rung.items() if k != "evaluate"
    }
    # The rung's kept models land where the converged profile's runner looks for them, with the rung's
    # result (what training them cost).
    rung = Runner(tmp_path / "r.yaml", tmp_path / "rung", tmp_path / "rung-results")
    runner = Runner(out, tmp_path / "converged", tmp_path / "results")
    model = rung._model(0, 1, "nullbce")
    model.parent.mkdir(parents=True)
    model.write_bytes(b"weights")
    model.with_suffix(".fingerprint").write_text("abc")
    rung.result_path(0, 1, "nullbce").parent.mkdir(parents=True)
    rung.result_path(0, 1, "nullbce").write_text('{"seconds": 4800}')
    rung.result_path(0, 1, "ce").write_text('{"seconds": 4700}')  # a result without its model: not adopted
    copied = adopt_models(rung, runner)
    assert (
        runner._model(0, 1, "nullbce") in copied and runner._model(0, 1, "nullbce").read_bytes() == b"weights"
    )
    assert runner.result_path(0, 1, "nullbce").read_text() == '{"seconds": 4800}'
    assert len(copied) == 3 and not runner.result_path(0, 1, "ce").exists()
    assert adopt_models(rung, runner) == [], "nothing copied twice"


def test_once_b_star_is_fixed_the_ladder_stores_and_draws_how_the_unseen_verdict_moves(tmp_path):
    from uniseg.fsio import write_json
    from uniseg.params import load_params
    from uniseg.scores import headline_profile, read_ladder

    means = {"ce": (60.0, 61.0), "ce-cosine": (63.0, 63.2), "nullbce": (62.0, 62.9)}  # seen, unseen
    for budget, shift in ((6400, 0.0), (12800, 0.3)):
        for arm, (seen, unseen) in means.items():
            record = {"world": 0, "seed": 0, "arm": arm, "metrics": {"seen": {"mean": seen + shift}}}
            record["metrics"]["unseen"] = {"mean": unseen + (shift if arm == "nullbce" else 0.0)}
            write_json(tmp_path / f"ladder-b{budget}" / "world0" / f"seed0-{arm}.json", record)
    curve = read_curve(tmp_path, "ladder")
    waiting = {"budget": None}
    assert "unseen" not in yaml.safe_load(write_ladder(tmp_path, "ladder", curve, waiting).read_text())
    fixed = {"budget": 6400, "converged": True}
    ladder_params = load_params(ROOT / "params.ladder.yaml")
    out = write_ladder(tmp_path, "ladder", curve, fixed, headline_profile(ladder_params))
    data = yaml.safe_load(out.read_text())
    assert data["unseen"]["nullbce_minus_ce_cosine"] == {"6400": {"0": -0.3}, "12800": {"0": 0.0}}
    assert data["unseen"]["nullbce_minus_ce"]["12800"] == {"0": 2.2}
    read = read_ladder(ladder_params, out)["unseen"]["nullbce_minus_ce"]
    assert read == {6400: {0: 1.9}, 12800: {0: 2.2}}, "budgets and seeds read back as ints"
    assert (tmp_path / "ladder" / "ladder.png").stat().st_size > 0


def test_the_ladder_refuses_a_bad_profile_before_it_writes_anything(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from uniseg.experiments.__main__ import app

    bad = yaml.safe_load((ROOT / "params.ladder.yaml").read_text())
    bad["train"]["iters"] = "many"
    (tmp_path / "params.bad.yaml").write_text(yaml.safe_dump(bad))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["ladder", "--params", "params.bad.yaml", "--dry-run"])
    assert result.exit_code == 1 and "params.bad.yaml: train.iters" in result.output
    assert not (tmp_path / "reports").exists()


def test_extend_says_what_it_waits_for(tmp_path, monkeypatch):
    """Before the converged profile exists, extend says which command writes it; with the profile but no
    results yet, that `make seeds` comes first."""
    from typer.testing import CliRunner

    from uniseg.experiments.__main__ import app

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["extend", "--dry-run"])
    assert result.exit_code == 1 and "params.converged.yaml: not written yet" in result.output
    assert "experiments converged" in result.output
    (tmp_path / "params.converged.yaml").write_text((ROOT / "params.ladder.yaml").read_text())
    result = CliRunner().invoke(app, ["extend", "--dry-run"])
    assert result.exit_code == 1 and "no current results of world 0" in result.output, result.output


def test_results_md_shows_the_ladder_only_beside_results_of_the_same_data(tmp_path):
    from uniseg.params import load_params, parse_params
    from uniseg.report.results import ladder_section
    from uniseg.scores import headline_profile, read_ladder

    seen = {"ce": (53.4, 60.8), "ce-cosine": (62.2, 64.8), "nullbce": (60.5, 64.0)}
    curve = {arm: {1600: {0: a}, 3200: {0: b}} for arm, (a, b) in seen.items()}
    made_from = headline_profile(load_params(ROOT / "params.ladder.yaml"))
    out = write_ladder(tmp_path, "ladder", curve, decide(curve), made_from)
    default = load_params(ROOT / "params.yaml")
    ladder = read_ladder(default, out)
    assert ladder["curve"]["ce"] == {1600: {0: 53.4}, 3200: {0: 60.8}}, "budgets and seeds read back as ints"
    text = "\n".join(ladder_section(ladder, "figures/results/ladder.png"))
    assert "B* is not fixed yet: waiting for seed 0 at 3200 and 6400" in text
    assert "| CE (cosine) | 62.2 | 64.8 |" in text and "![budget ladder](figures/results/ladder.png)" in text
    assert "unseen sets as well" not in text, "no unseen table before B* is fixed"
    fixed = {**ladder, "unseen": {"nullbce_minus_ce_cosine": {1600: {0: -0.6}, 3200: {0: 0.04}}}}
    text = "\n".join(ladder_section(fixed, None))
    assert "| Null BCE − CE (cosine) | -0.6 | +0.0 |" in text
    real = parse_params({**default.model_dump(), "data": {**default.data.model_dump(), "source": "real"}})
    assert read_ladder(real, out) is None, "a real-data report never shows the synthetic ladder"
    assert read_ladder(default, tmp_path / "none.json") is None


def test_results_md_sets_the_converged_headline_beside_the_short_one():
    from uniseg.report.results import Converged, results_markdown
    from uniseg.scores import Metrics

    def pair(mean, ci, seeds):
        return {"mean": mean, "ci95": ci, "seeds": seeds, "per_seed": [mean] * len(seeds)}

    short = {
        "worlds": {"0": {"paired": {"nullbce_minus_ce_cosine": pair(-1.78, [-2.47, -1.09], [0, 1, 2, 3, 4])}}}
    }
    converged = {
        "worlds": {
            "0": {
                "paired": {
                    "nullbce_minus_ce_cosine": pair(0.4, [-0.2, 1.0], [0, 1, 2]),
                    "oracle_out_minus_control": pair(0.3, None, [0]),
                }
            }
        }
    }
    markdown = (
        "# Headline over seeds\n\n## Targets\n\n| world | target | measured | met |\n|---|---|---|---|\n"
    )
    metrics = Metrics({"base": {"unseen": {"kitti": {"miou": 40.0}, "mean": 40.0}}})
    c = Converged(converged, markdown, 6400, short, 800, "figures/results/headline_converged.png")
    text = results_markdown(metrics, {"base": "nullbce"}, ["cityscapes"], None, [], "restricted", converged=c)
    assert "## At convergence (B* = 6400 iterations)" in text
    assert "| paired difference | 800 iterations | B* = 6400 iterations |" in text
    row = "| nullbce_minus_ce_cosine | -1.78 [-2.47, -1.09], 5 seeds | +0.40 [-0.20, +1.00], 3 seeds |"
    assert row in text, "the same pair at both budgets, side by side"
    assert "| oracle_out_minus_control | – | +0.30 (one seed) |" in text, "a pair only the converged run has"
    assert "\n### Targets\n" in text and "# Headline over seeds" not in text, (
        "headline.md embedded one level down"
    )
    assert "![paired differences over seeds at convergence](figures/results/headline_converged.png)" in text
    assert "At convergence" not in results_markdown(metrics, {"base": "nullbce"}, ["cityscapes"], None, [])


def test_the_committed_converged_profile_is_what_the_ladders_decision_writes(tmp_path):
    """params.converged.yaml is written, never edited: the committed one equals what `experiments converged`
    writes from the committed ladder's decision (B*, R*, the unseen sets scored)."""
    import json

    from uniseg.experiments.ladder import write_converged
    from uniseg.params import load_params

    decision = json.loads((ROOT / "reports/seeds/ladder/ladder.json").read_text())["decision"]
    written = write_converged(ROOT / "params.ladder.yaml", decision, tmp_path / "p.yaml", "ladder")
    assert written.read_text() == (ROOT / "params.converged.yaml").read_text()
    converged = load_params(ROOT / "params.converged.yaml")
    assert (converged.train.iters, converged.retrain.iters) == (decision["budget"], decision["retrain"])
    assert converged.evaluate.unseen, "the converged profile scores the unseen sets"


def test_restamp_refuses_a_revision_that_is_not_a_commit():
    from typer.testing import CliRunner

    from uniseg.experiments.__main__ import app

    result = CliRunner().invoke(
        app, ["restamp", "--since", "no-such-revision", "--params", "params.ladder.yaml"]
    )
    assert result.exit_code == 1 and "--since no-such-revision: not a commit" in result.output, result.output
