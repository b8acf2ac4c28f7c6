"""The truth about the benchmark's label conflicts, from the policies: which classes two datasets name
differently, which relations mining should recover, which of them the unseen test sets can score, and
which union classes outside a dataset's label space name its pixels.

W_i(c) is the set of world classes that dataset i labels c (`_world_sets`).
"""

from __future__ import annotations

from collections.abc import Sequence

from uniseg.datasets.synthetic.policies import load_policy
from uniseg.datasets.synthetic.world import WORLD_CLASSES


def expected_relations(datasets: Sequence[str]) -> list[tuple[str, str, str, str]]:
    """The ground truth that relation mining should recover, from the policies.

    W_i(c) is the set of world classes that dataset i labels c. Class c of dataset i has the secondary
    class c' (a class of another dataset j, c' != c) when W_i(c) ⊆ W_j(c'): every pixel i calls c, j would
    call c' (e.g. Mapillary's bicyclist -> Cityscapes' rider, Mapillary's curb -> Cityscapes' sidewalk,
    Mapillary's ground animal -> IDD's person). A partial overlap (neither contains the other) is
    "ambiguous"; a c' strictly inside c (the reverse of a relation) is not one. Returns sorted
    (dataset i, primary c, secondary c', kind), kind "relation" or "ambiguous".
    """
    worlds = _world_sets(datasets)
    out: dict[tuple[str, str, str], str] = {}
    for i in datasets:
        for c, wc in worlds[i].items():
            for j in datasets:
                for c2, wc2 in worlds[j].items():
                    if j == i or c2 == c or not (wc & wc2):
                        continue
                    key = (i, c, c2)
                    if wc <= wc2:
                        out[key] = "relation"
                    elif not wc2 <= wc and out.get(key) != "relation":
                        out[key] = "ambiguous"
    return sorted((i, c, c2, kind) for (i, c, c2), kind in out.items())


def _world_sets(datasets: Sequence[str]) -> dict[str, dict[str, set[str]]]:
    """dataset -> class -> W(class), the world classes the dataset's policy names so."""
    policies = {d: load_policy(d) for d in datasets}
    return {
        d: {c: {w for w, n in p.labels.items() if n == c} for c in p.classes} for d, p in policies.items()
    }


def ground_truth_relations(
    datasets: Sequence[str],
) -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str]]]:
    """(truth, equivalent): the relations mining should recover (`expected_relations` of kind "relation")
    and those among them where the primary names exactly the secondary's world classes, W_i(c) = W_j(c')
    — two datasets naming the same pixels differently (IDD's rail track and the others' terrain). Of
    such a pair eq. 6 can give at most one direction (relation_scores.expressible_units)."""
    worlds = _world_sets(datasets)
    truth = [(i, c, c2) for i, c, c2, kind in expected_relations(datasets) if kind == "relation"]
    equivalent = [
        (i, c, c2) for i, c, c2 in truth if any(worlds[j].get(c2) == worlds[i][c] for j in datasets if j != i)
    ]
    return truth, equivalent


def label_conflicts(datasets: Sequence[str]) -> list[dict]:
    """Every world class that two of `datasets` name differently (both label it): the names, and whether
    Null BCE can resolve the conflict — each name lies outside the other dataset's label space, so that
    dataset gives it no gradient — or cannot: a dataset has the other's name in its space and so says
    "not that class" on those pixels."""
    policies = {d: load_policy(d) for d in datasets}
    out = []
    for w in WORLD_CLASSES:
        for a_i, a in enumerate(datasets):
            for b in datasets[a_i + 1 :]:
                na, nb = policies[a].labels[w], policies[b].labels[w]
                if na is None or nb is None or na == nb:
                    continue
                resolvable = na not in policies[b].classes and nb not in policies[a].classes
                out.append(
                    {"world": w, "a": a, "name_a": na, "b": b, "name_b": nb, "null_bce_resolves": resolvable}
                )
    return out


def oracle_relations(train: Sequence[str], unseen: Sequence[str]) -> list[tuple[str, str, str]]:
    """The true relations an unseen test set can score: (dataset i, primary c, secondary c') of the
    ground truth such that some unseen set names every world class of W_i(c) c' — the pixels the relation
    also labels c' are scored as c' there (Mapillary's bicyclist -> rider on KITTI's riders, lane
    marking -> road). What C-R BCE would be trained with if mining were perfect where it can matter."""
    truth, _ = ground_truth_relations(train)
    worlds = _world_sets(train)
    tests = {u: load_policy(u).labels for u in unseen}
    return [
        (i, c, c2)
        for i, c, c2 in truth
        if any(all(labels[w] == c2 for w in worlds[i][c]) for labels in tests.values())
    ]


def scored_secondaries(train: Sequence[str], test: str) -> list[str]:
    """The classes of test set `test` that a true relation can add labels to on pixels the set scores
    (the secondaries of `oracle_relations(train, [test])`): all a relation can move under the restricted
    protocol."""
    return sorted({c2 for _, _, c2 in oracle_relations(train, [test])})


def outside_names(dataset: str, train: Sequence[str]) -> dict[str, list[str]]:
    """{world class: the names the other training datasets give it that lie outside `dataset`'s label
    space} for every world class that has such a name: on `dataset`'s images, the union classes that
    name those pixels although the dataset itself cannot (Cityscapes' lane markings are Mapillary's
    `lane marking - general`, IDD's grass is the others' `terrain`)."""
    policies = {d: load_policy(d) for d in train}
    own = set(policies[dataset].classes)
    out = {}
    for w in WORLD_CLASSES:
        names = sorted({p.labels[w] for d, p in policies.items() if d != dataset} - own - {None})
        if names:
            out[w] = names
    return out
