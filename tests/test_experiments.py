"""The experiment driver: the seeds headline (summary statistics and the table, from per-(seed, arm)
metrics) and the paper grid's table."""

import pytest

from uniseg.experiments import collect, render, summarise
from uniseg.scores import Metrics


def _metrics(unseen, crbce, precision):
    return Metrics(
        {
            "base": {"unseen": {"mean": unseen}, "cross": {"mean": unseen - 1}},
            "crbce": {"unseen": {"mean": crbce}},
            "relations": {"tau": 0.2, "relations": 10, "precision": precision, "recall": 0.5},
        }
    )


def test_summary_is_mean_sample_std_and_a_t_interval():
    s = summarise([40.0, 42.0, 44.0])
    assert s["mean"] == 42.0 and s["std"] == 2.0
    assert s["ci95"] == pytest.approx([42 - 4.303 * 2 / 3**0.5, 42 + 4.303 * 2 / 3**0.5], abs=0.01)
    assert summarise([41.0]) == {"mean": 41.0, "std": 0.0, "ci95": [41.0, 41.0], "per_seed": [41.0]}


def test_headline_collects_each_model_and_the_relations_of_each_base():
    runs = {
        (0, "ce"): _metrics(30.0, 35.0, 0.1),
        (1, "ce"): _metrics(32.0, 36.0, 0.3),
        (0, "nullbce"): _metrics(33.0, 37.0, 0.4),
        (1, "nullbce"): _metrics(35.0, 39.0, 0.6),
    }
    headline = collect(runs, [0, 1])
    assert "nullbce+ft" not in headline, "the control arm was not run: its row is left out"
    assert headline["ce"]["per_seed"] == [30.0, 32.0]
    assert headline["crbce"]["per_seed"] == [37.0, 39.0], "C-R BCE is retrained from the Null BCE base"
    assert headline["relations"]["nullbce"]["precision"]["mean"] == 0.5
    assert headline["cross"]["nullbce"]["mean"]["per_seed"] == [32.0, 34.0]
    headline["commit"] = "abc1234"
    text = render(headline)
    assert (
        "| nullbce | Null BCE base model | 34.0 |" in text
        and "| nullbce | precision | 0.5 |" in text
        and "abc1234" in text
    )


def test_the_control_arm_is_the_retrain_without_relations():
    runs = {(0, "ce"): _metrics(30.0, 35.0, 0.1), (0, "nullbce"): _metrics(33.0, 37.0, 0.4)}
    runs[(0, "nullbce-tau1")] = _metrics(33.0, 36.0, None)
    headline = collect(runs, [0])
    assert headline["nullbce+ft"]["per_seed"] == [36.0]
    assert headline["crbce"]["per_seed"] == [37.0]
    assert "nullbce-tau1" not in headline["relations"], "its relations are empty by construction"
    assert (
        "| nullbce+ft | Null BCE base + retrain.iters of Null BCE (τ = 1: no relations) | 36.0 |"
        in render(headline)
    )


def test_an_arm_run_for_some_seeds_only_says_which():
    runs = {(s, "nullbce"): _metrics(33.0 + s, 37.0 + s, 0.4) for s in (0, 1)}
    runs[(0, "nullbce-tau1")] = _metrics(33.0, 36.0, None)
    headline = collect(runs, [0, 1])
    assert headline["nullbce+ft"]["per_seed"] == [36.0] and headline["nullbce+ft"]["seeds"] == [0]
    assert "seeds" not in headline["crbce"]
    assert "(τ = 1: no relations) (seed 0 only) | 36.0 |" in render(headline)
