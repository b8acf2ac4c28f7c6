"""Relation mining (eq. 7), eq. 6 with τ, auto-τ, and the tables' round trips."""

import pandas as pd
import pytest
import torch

from uniseg import IGNORE
from uniseg.errors import DataError
from uniseg.model.segmodel import build_model
from uniseg.relations.mining import (
    accumulate_similarities,
    auto_tau,
    derive_multilabels,
    mine_similarities,
    read_multilabels,
    read_similarity,
    similarity_table,
    write_similarity,
)
from uniseg.relations.scores import score_relations, tau_sweep
from uniseg.report.relations import relations_markdown

SPACES = {"C": ["rider", "road"], "M": ["bicyclist", "road", "marking"]}
UNION = ["bicyclist", "marking", "rider", "road"]


def _table(scores):
    """scores: {(dataset, class): {other: s}} -> similarity table."""
    rows = [(d, c, o, s, 100) for (d, c), row in scores.items() for o, s in row.items()]
    return pd.DataFrame(rows, columns=["dataset", "class", "other", "similarity", "pixels"])


SCORES = {
    ("C", "rider"): {"bicyclist": 0.55, "marking": 0.0, "rider": 0.7, "road": 0.1},
    ("C", "road"): {"bicyclist": 0.0, "marking": 0.45, "rider": 0.0, "road": 0.9},
    ("M", "bicyclist"): {"bicyclist": 0.6, "marking": 0.0, "rider": 0.65, "road": 0.0},
    ("M", "road"): {"bicyclist": 0.0, "marking": 0.3, "rider": 0.0, "road": 0.8},
    ("M", "marking"): {"bicyclist": 0.0, "marking": 0.5, "rider": 0.0, "road": 0.52},
}


def _triples(df):
    return set(df[["dataset", "primary", "secondary"]].itertuples(index=False, name=None))


def test_eq6_needs_both_tau_and_the_own_score():
    got = _triples(derive_multilabels(_table(SCORES), SPACES, tau=0.5))
    # M bicyclist -> rider (0.65 > max(0.5, 0.6)); M marking -> road (0.52 > max(0.5, 0.5)).
    assert got == {("M", "bicyclist", "rider"), ("M", "marking", "road")}
    # C rider -> bicyclist: 0.55 > tau but below its own score 0.7: no secondary (asymmetry).
    assert not _triples(derive_multilabels(_table(SCORES), SPACES, tau=0.66)) & {("M", "marking", "road")}
    assert _triples(derive_multilabels(_table(SCORES), SPACES, tau=0.64)) == {("M", "bicyclist", "rider")}


def test_eq6_ties_are_not_relations_and_own_only_classes_never_are():
    scores = {("M", "bicyclist"): {"bicyclist": 0.6, "rider": 0.6, "road": 0.0, "marking": 0.9}}
    got = _triples(derive_multilabels(_table(scores), SPACES, tau=0.5))
    assert ("M", "bicyclist", "rider") not in got, "strictly greater than s(c)"
    assert ("M", "bicyclist", "marking") not in got, "marking is M's own class only: never secondary"


def test_a_class_whose_own_score_is_highest_gets_no_secondary():
    got = derive_multilabels(
        _table({("C", "road"): {"road": 0.9, "marking": 0.8, "rider": 0, "bicyclist": 0}}), SPACES, 0.1
    )
    assert got.empty


def test_auto_tau_is_the_mean_top_score_of_pairs_whose_best_match_is_another_datasets_class():
    tau, n = auto_tau(_table(SCORES), SPACES)
    # tops outside the own class: M bicyclist -> rider 0.65, M marking -> road 0.52.
    assert n == 2 and tau == pytest.approx((0.65 + 0.52) / 2)


def _brute_force(model, images, labels, k):
    with torch.no_grad():
        feats = model.features(images)
        padded = torch.nn.functional.interpolate(
            model.cosine(feats), size=(32, 64), mode="bilinear", align_corners=False
        )
        cos = padded[..., : labels.shape[1], : labels.shape[2]]
    sums = torch.zeros(k, k, dtype=torch.float64)
    counts = torch.zeros(k, dtype=torch.float64)
    for b in range(labels.shape[0]):
        for y in range(labels.shape[1]):
            for x in range(labels.shape[2]):
                c = int(labels[b, y, x])
                if c == IGNORE:
                    continue
                sums[c] += cos[b, :, y, x].double()
                counts[c] += 1
    return sums, counts


@pytest.mark.parametrize("classifier", ["cosine", "linear"])
def test_mining_equals_a_brute_force_computation(classifier):
    torch.manual_seed(0)
    k = 4
    model = build_model("hrnet_w18_small", classifier, k).eval()
    images = torch.randn(2, 3, 32, 48)
    labels = torch.randint(0, k, (2, 32, 48))
    labels[0, :4] = IGNORE
    labels[labels == 3] = 2  # class 3 has no pixels
    acc = mine_similarities(model, [(images[:1], labels[:1]), (images[1:], labels[1:])], k)
    sums, counts = _brute_force(model, images, labels, k)
    assert torch.allclose(torch.from_numpy(acc["sums"]), sums, atol=1e-6)
    assert torch.equal(torch.from_numpy(acc["pixels"]), counts)
    table = similarity_table({"C": acc}, ["a", "b", "c", "d"], {"C": ["a", "b", "c", "d"]})
    assert set(table["class"]) == {"a", "b", "c"}, "classes without pixels have no rows"
    row = table[(table["class"] == "b") & (table["other"] == "a")].iloc[0]
    assert row["similarity"] == pytest.approx(float(sums[1, 0] / counts[1]))
    assert table["similarity"].between(-1, 1).all()


def test_accumulate_rejects_labels_outside_the_union():
    with pytest.raises(DataError, match="outside the model's 2 classes"):
        accumulate_similarities(
            torch.zeros(1, 2, 1, 2),
            torch.tensor([[[0, 5]]]),
            torch.zeros(2, 2, dtype=torch.float64),
            torch.zeros(2, dtype=torch.float64),
        )


def test_tables_round_trip_with_class_names(tmp_path):
    table = _table(SCORES)
    write_similarity(table, tmp_path / "s.parquet")
    back = read_similarity(tmp_path / "s.parquet")
    pd.testing.assert_frame_equal(back, table)
    assert "rider" in set(back["other"]) and "bicyclist" in set(back["class"])
    with pytest.raises(DataError, match="run the relabel stage"):
        read_multilabels(tmp_path / "missing.parquet")
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 nonsense")
    with pytest.raises(DataError, match="not a readable Parquet file"):
        read_similarity(tmp_path / "bad.parquet")
    table.drop(columns=["pixels"]).to_parquet(tmp_path / "old.parquet")
    with pytest.raises(DataError, match="missing column"):
        read_similarity(tmp_path / "old.parquet")


def test_precision_and_recall():
    s = score_relations(
        [("M", "a", "b"), ("M", "c", "d")], [("M", "a", "b"), ("M", "e", "f"), ("C", "x", "y")]
    )
    assert s["precision"] == 0.5 and s["recall"] == pytest.approx(1 / 3, abs=1e-3)
    assert s["false_positives"] == [("M", "c", "d")]


def test_tau_sweep_scores_eq6_at_each_threshold():
    truth = [("M", "bicyclist", "rider")]
    table = _table(SCORES)
    rows = {r["tau"]: r for r in tau_sweep(table, SPACES, truth, (0.55, 0.0, 0.7, 0.0))}
    assert sorted(rows) == [0.0, 0.55, 0.7], "sorted, duplicates dropped"
    # tau 0: bicyclist -> rider (0.65 > 0.6) and marking -> road (0.52 > 0.5), one of them true.
    assert rows[0.0] == {"tau": 0.0, "mined": 2, "hits": 1, "precision": 0.5, "recall": 1.0}
    assert rows[0.55] == {"tau": 0.55, "mined": 1, "hits": 1, "precision": 1.0, "recall": 1.0}
    assert rows[0.7] == {"tau": 0.7, "mined": 0, "hits": 0, "precision": None, "recall": 0.0}
    multilabels = derive_multilabels(table, SPACES, 0.55)
    md = relations_markdown(
        multilabels, 0.55, "relabel.tau", score_relations([], truth), sweep=list(rows.values())
    )
    assert "| **0.550** | **1** | **1** | **1.00** | **1.00** |" in md
    assert "| 0.700 | 0 | 0 | – | 0.00 |" in md


def test_the_report_says_which_score_decided_each_missed_or_false_relation():
    table = _table(SCORES)
    truth = [("M", "bicyclist", "rider"), ("C", "rider", "bicyclist")]
    multilabels = derive_multilabels(table, SPACES, 0.51)
    score = score_relations(
        multilabels[["dataset", "primary", "secondary"]].itertuples(index=False, name=None), truth
    )
    md = relations_markdown(multilabels, 0.51, "relabel.tau", score, table=table)
    # C rider -> bicyclist: 0.55 > tau but below rider's own 0.7 (the max rule).
    assert "C: rider → bicyclist (s = 0.550 ≤ own 0.700)" in md
    # M marking -> road passes tau 0.51 and its own score 0.5: a false positive with its own score.
    assert "M: marking → road (own 0.500)" in md
    score = score_relations([], [("M", "bicyclist", "rider")])
    assert "M: bicyclist → rider (s = 0.650 ≤ τ)" in relations_markdown(
        derive_multilabels(table, SPACES, 0.7), 0.7, "x", score, table=table
    )


def test_mining_a_few_classes_at_a_time_equals_the_whole_union(monkeypatch):
    """Bounded memory: the cosines reach label resolution MINE_CHUNK classes at a time; the table is the
    same as mining every class at once (the brute force), also when images are resized for the model."""
    import uniseg.relations.mining as relations

    monkeypatch.setattr(relations, "MINE_CHUNK", 3)
    torch.manual_seed(2)
    k = 7
    model = build_model("hrnet_w18_small", "cosine", k).eval()
    images = torch.randn(2, 3, 32, 48)
    labels = torch.randint(0, k, (2, 32, 48))
    labels[1, 5:9] = IGNORE
    acc = mine_similarities(model, [(images, labels)], k)
    sums, counts = _brute_force(model, images, labels, k)
    assert torch.allclose(torch.from_numpy(acc["sums"]), sums, atol=1e-5)
    assert torch.equal(torch.from_numpy(acc["pixels"]), counts)


def test_recall_on_what_a_target_can_fairly_ask_for():
    from uniseg.relations.scores import paper_drawn, reachable_recalls

    truth = [
        ("mapillary", "bicyclist", "rider"),
        ("mapillary", "motorcyclist", "rider"),
        ("mapillary", "curb", "sidewalk"),
        ("idd", "rail track", "terrain"),
    ]
    spaces = {"mapillary": ["bicyclist", "motorcyclist", "curb", "sidewalk"], "idd": ["rail track"]}
    assert paper_drawn(truth) == [("mapillary", "bicyclist", "rider"), ("mapillary", "motorcyclist", "rider")]
    r = reachable_recalls(
        [("mapillary", "bicyclist", "rider"), ("mapillary", "curb", "sidewalk")], truth, spaces
    )
    assert r["paper_recall"] == 0.5 and r["paper_true"] == 2
    assert r["outside_recall"] == round(1 / 3, 3), "curb -> sidewalk is inside Mapillary's own space"
