"""A classification tree grown as scikit-learn's ``DecisionTreeClassifier`` grows it, numpy only.

What SDMetrics' ``MulticlassDecisionTreeClassifier`` fits: ``criterion="gini"``,
``splitter="best"``, ``max_depth=30``, ``class_weight="balanced"``, every other
parameter at its default (``min_samples_split=2``, ``min_samples_leaf=1``, all
features considered at every node). The same algorithm, step by step:

- Features are float32 (scikit-learn converts ``X`` so); a class's samples
  weigh ``n / (n_classes · n_class)``.
- At a node, for every feature, the candidate splits lie between consecutive
  sorted values that differ by more than ``1e-7`` (in float32, scikit-learn's
  ``FEATURE_THRESHOLD``); the threshold is the midpoint
  ``v[i-1]/2 + v[i]/2`` in float64; rows ``<= threshold`` go left.
- A split's worth is scikit-learn's proxy ``-w_R·gini_R - w_L·gini_L`` (``w``
  the weighted sample counts, ``gini = 1 - Σ count_c² / w²`` over weighted class
  counts); the node takes the best one (even when it improves nothing, as
  scikit-learn does).
- A node is a leaf at ``max_depth``, when it is pure (impurity ≤ machine
  epsilon), or when no feature varies in it; a leaf predicts the class with
  the largest weighted count (the first such class in sorted order on a tie).

Ties: scikit-learn visits the features in a random order at every node (its
``random_state``; SDMetrics leaves it unseeded) and keeps the first of equally
good splits, so a tie between features is broken at random and its trees vary
from run to run. This tree keeps the first feature in column order (and, in
any feature, the lowest threshold, as scikit-learn does), so it is
deterministic: it grows one of the trees scikit-learn can grow. On a tree grown
to purity ties are common (a node of a few rows is split perfectly by many
features), so a score then matches scikit-learn's distribution, not a single
run; with no ties between features (one feature, or equally good features that
split the rows alike) the predictions are identical. scikit-learn sums weights
sample by sample, this tree multiplies integer counts by the class weights, so
two splits whose worth differs by a rounding error (a tie in exact arithmetic)
may also be ordered differently. Those sums also leave some of scikit-learn's
pure nodes with an impurity a few 1e-16 above machine epsilon, which it then
splits further (9 to 13 such nodes in trees of 270 to 740 on the reference
data); both halves of a pure node predict its class, so the predictions are the
same, only the node count differs.

Categorical columns enter as codes: an indicator column of category ``j`` (one
of scikit-learn's one-hot columns, robust-scaled: a higher value for ``j``)
splits a node into "not ``j``" (left) and "``j``" (right), which the codes give
without a dense one-hot matrix.

The tree grows level by level, every node of a level at once, each feature
kept in an order sorted by (node, value), so the work is a few vectorised
passes per feature and level rather than per node.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ClassificationTree", "fit_tree"]

FEATURE_THRESHOLD = np.float32(1e-7)
_FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class ClassificationTree:
    """A fitted tree. Node 0 is the root; ``feature`` is -1 at a leaf.

    ``feature`` indexes the numbers first, then the categorical columns'
    categories block after block (scikit-learn's one-hot columns in order).
    """

    feature: np.ndarray  # (nodes,) int64
    threshold: np.ndarray  # (nodes,) float64, numbers only (NaN for a category split)
    left: np.ndarray  # (nodes,) int64
    right: np.ndarray  # (nodes,) int64
    value: np.ndarray  # (nodes,) int64 class index predicted at the node
    samples: np.ndarray  # (nodes,) int64
    weighted_samples: np.ndarray  # (nodes,) float64
    depth: np.ndarray  # (nodes,) int64
    n_numbers: int
    sizes: tuple[int, ...]

    def predict(self, numbers: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """Class indices for rows given as ``numbers`` (p, m), even with p = 0, and ``codes`` (q, m);
        a code of -1 (a category the training rows lacked) is "not any category"."""
        x = as_float32(numbers)
        node = np.zeros(x.shape[1], dtype=np.int64)
        active = np.arange(x.shape[1])
        while active.size:
            f = self.feature[node[active]]
            inner = f >= 0
            active, f = active[inner], f[inner]
            if not active.size:
                break
            right = _goes_right(x, codes, self.n_numbers, self.sizes, f, self.threshold[node[active]], active)
            node[active] = np.where(right, self.right[node[active]], self.left[node[active]])
        out: np.ndarray = self.value[node]
        return out


def as_float32(numbers: np.ndarray) -> np.ndarray:
    """Float32 values as scikit-learn's tree sees them (clipped to the float32 range,
    where scikit-learn would refuse values beyond it)."""
    out: np.ndarray = np.clip(numbers, -_FLOAT32_MAX, _FLOAT32_MAX).astype(np.float32)
    return out


def _goes_right(
    x: np.ndarray,
    codes: np.ndarray,
    n_numbers: int,
    sizes: tuple[int, ...],
    feature: np.ndarray,
    threshold: np.ndarray,
    rows: np.ndarray,
) -> np.ndarray:
    """Whether each of ``rows`` goes right at a node splitting on ``feature``."""
    right = np.zeros(rows.size, dtype=bool)
    numeric = feature < n_numbers
    if numeric.any():
        values = x[feature[numeric], rows[numeric]].astype(np.float64)
        right[numeric] = ~(values <= threshold[numeric])
    if (~numeric).any():
        offsets = n_numbers + np.concatenate([[0], np.cumsum(sizes)])
        cat = np.flatnonzero(~numeric)
        block = np.searchsorted(offsets, feature[cat], side="right") - 1
        category = feature[cat] - offsets[block]
        right[cat] = codes[block, rows[cat]] == category
    return right


@dataclass
class _Best:
    """The best split found so far for each node of a level."""

    proxy: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray

    @classmethod
    def empty(cls, n: int) -> _Best:
        return cls(np.full(n, -np.inf), np.full(n, -1, dtype=np.int64), np.full(n, np.nan))

    def offer(self, nodes: np.ndarray, proxy: np.ndarray, feature: np.ndarray, threshold: np.ndarray) -> None:
        """Keep a candidate that is strictly better (so earlier features win ties)."""
        better = proxy > self.proxy[nodes]
        nodes = nodes[better]
        self.proxy[nodes] = proxy[better]
        self.feature[nodes] = feature[better]
        self.threshold[nodes] = threshold[better]


def _proxy(left: list[np.ndarray], right: list[np.ndarray]) -> np.ndarray:
    """scikit-learn's Gini ``proxy_impurity_improvement`` from weighted class counts."""
    w_left = np.zeros_like(left[0])
    w_right = np.zeros_like(left[0])
    sq_left = np.zeros_like(left[0])
    sq_right = np.zeros_like(left[0])
    for cl, cr in zip(left, right, strict=True):
        w_left += cl
        w_right += cr
        sq_left += cl * cl
        sq_right += cr * cr
    gini_left = 1.0 - sq_left / (w_left * w_left)
    gini_right = 1.0 - sq_right / (w_right * w_right)
    out: np.ndarray = -w_right * gini_right - w_left * gini_left
    return out


def _first_max(groups: np.ndarray, proxy: np.ndarray) -> np.ndarray:
    """Index of the first largest ``proxy`` in each run of equal ``groups`` (sorted)."""
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
    maxima = np.maximum.reduceat(proxy, starts)
    run = np.cumsum(np.r_[False, groups[1:] != groups[:-1]])
    hits = np.flatnonzero(proxy == maxima[run])
    _, first = np.unique(run[hits], return_index=True)
    out: np.ndarray = hits[first]
    return out


def _numeric_splits(
    best: _Best,
    f: int,
    rows: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    node_of: np.ndarray,
    node_counts: np.ndarray,
    class_weight: np.ndarray,
) -> None:
    """Offer each node's best split on number ``f``; ``rows`` grouped by node, sorted by value."""
    v = x[f, rows]
    nodes = node_of[rows]
    valid = np.zeros(rows.size, dtype=bool)
    valid[1:] = (v[1:] > v[:-1] + FEATURE_THRESHOLD) & (nodes[1:] == nodes[:-1])
    at = np.flatnonzero(valid)  # a split before position i: left = node's rows before i
    if not at.size:
        return
    starts = np.flatnonzero(np.r_[True, nodes[1:] != nodes[:-1]])
    start_of = np.zeros(node_counts.shape[0], dtype=np.int64)
    start_of[nodes[starts]] = starts
    cand_nodes = nodes[at]
    first = start_of[cand_nodes]  # the node's first position: left = positions first … at-1
    left, right = [], []
    yr = y[rows]
    for c, weight in enumerate(class_weight):
        cum = np.concatenate([[0], np.cumsum(yr == c)])
        n_left = cum[at] - cum[first]
        left.append(n_left * weight)
        right.append((node_counts[cand_nodes, c] - n_left) * weight)
    proxy = _proxy(left, right)
    pick = _first_max(cand_nodes, proxy)
    threshold = v[at[pick] - 1].astype(np.float64) / 2.0 + v[at[pick]].astype(np.float64) / 2.0
    best.offer(cand_nodes[pick], proxy[pick], np.full(pick.size, f, dtype=np.int64), threshold)


def _category_splits(
    best: _Best,
    feature_offset: int,
    size: int,
    codes: np.ndarray,
    y: np.ndarray,
    rows: np.ndarray,
    node_of: np.ndarray,
    node_counts: np.ndarray,
    class_weight: np.ndarray,
) -> None:
    """Offer each node's best "category j vs the rest" split of one categorical column."""
    n_classes = class_weight.size
    key = node_of[rows] * size + codes[rows]
    pairs, inverse = np.unique(key, return_inverse=True)
    counts = np.bincount(inverse * n_classes + y[rows], minlength=pairs.size * n_classes).reshape(-1, n_classes)
    nodes, category = pairs // size, pairs % size
    n_right = counts.sum(axis=1)
    valid = n_right < node_counts[nodes].sum(axis=1)  # j present (a pair exists) and not alone
    if not valid.any():
        return
    nodes, category, counts = nodes[valid], category[valid], counts[valid]
    left = [(node_counts[nodes, c] - counts[:, c]) * w for c, w in enumerate(class_weight)]
    right = [counts[:, c] * w for c, w in enumerate(class_weight)]
    proxy = _proxy(left, right)
    pick = _first_max(nodes, proxy)
    best.offer(nodes[pick], proxy[pick], feature_offset + category[pick], np.full(pick.size, np.nan))


def fit_tree(
    numbers: np.ndarray,
    codes: np.ndarray,
    sizes: tuple[int, ...],
    y: np.ndarray,
    n_classes: int,
    *,
    max_depth: int,
) -> ClassificationTree:
    """Grow the tree on ``numbers`` (p, n), ``codes`` (q, n) and class indices ``y``
    (0 … ``n_classes``-1), with balanced class weights."""
    x = as_float32(numbers)
    n = y.size
    p = x.shape[0]
    y = y.astype(np.int64)
    present = np.bincount(y, minlength=n_classes)
    k = int((present > 0).sum())
    class_weight = np.where(present > 0, n / (k * np.maximum(present, 1)), 0.0)
    offsets = p + np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)

    feature: list[int] = []
    threshold: list[float] = []
    left: list[int] = []
    right: list[int] = []
    value: list[int] = []
    samples: list[int] = []
    weighted: list[float] = []
    depths: list[int] = []

    def add(counts: np.ndarray, depth: int) -> int:
        weights = counts * class_weight
        feature.append(-1)
        threshold.append(np.nan)
        left.append(-1)
        right.append(-1)
        value.append(int(np.argmax(weights)))
        samples.append(int(counts.sum()))
        weighted.append(float(weights.sum()))
        depths.append(depth)
        return len(feature) - 1

    def splittable(counts: np.ndarray, depth: int) -> bool:
        return depth < max_depth and int(counts.sum()) >= 2 and int((counts > 0).sum()) > 1

    root_counts = np.bincount(y, minlength=n_classes)
    frontier = [add(root_counts, 0)] if n else []
    if not n or not splittable(root_counts, 0):
        frontier = []
    node_of = np.zeros(n, dtype=np.int64)  # each row's node in the frontier, -1 once in a leaf
    order = [np.argsort(x[f], kind="stable") for f in range(p)]
    depth = 0
    while frontier:
        a = len(frontier)
        live = np.flatnonzero(node_of >= 0)
        node_counts = np.bincount(node_of[live] * n_classes + y[live], minlength=a * n_classes).reshape(a, n_classes)
        best = _Best.empty(a)
        for f in range(p):
            _numeric_splits(best, f, order[f], x, y, node_of, node_counts, class_weight)
        for block, size in enumerate(sizes):
            _category_splits(best, int(offsets[block]), size, codes[block], y, live, node_of, node_counts, class_weight)
        split = best.feature >= 0
        # the rows of split nodes: right or left
        rows = live[split[node_of[live]]]
        nodes = node_of[rows]
        goes_right = _goes_right(x, codes, p, sizes, best.feature[nodes], best.threshold[nodes], rows)
        child_counts = np.bincount((nodes * 2 + goes_right) * n_classes + y[rows], minlength=2 * a * n_classes).reshape(
            2 * a, n_classes
        )
        next_frontier: list[int] = []
        child_slot = np.full(2 * a, -1, dtype=np.int64)
        for i, node in enumerate(frontier):
            if not split[i]:
                continue
            feature[node] = int(best.feature[i])
            threshold[node] = float(best.threshold[i])
            for side in (0, 1):
                counts = child_counts[2 * i + side]
                child = add(counts, depth + 1)
                (left if side == 0 else right)[node] = child
                if splittable(counts, depth + 1):
                    child_slot[2 * i + side] = len(next_frontier)
                    next_frontier.append(child)
        new_node_of = np.full(n, -1, dtype=np.int64)
        new_node_of[rows] = child_slot[nodes * 2 + goes_right]
        node_of = new_node_of
        for f in range(p):
            kept = order[f][node_of[order[f]] >= 0]
            order[f] = kept[np.argsort(node_of[kept], kind="stable")]
        frontier = next_frontier
        depth += 1
    return ClassificationTree(
        feature=np.asarray(feature, dtype=np.int64),
        threshold=np.asarray(threshold, dtype=np.float64),
        left=np.asarray(left, dtype=np.int64),
        right=np.asarray(right, dtype=np.int64),
        value=np.asarray(value, dtype=np.int64),
        samples=np.asarray(samples, dtype=np.int64),
        weighted_samples=np.asarray(weighted, dtype=np.float64),
        depth=np.asarray(depths, dtype=np.int64),
        n_numbers=p,
        sizes=tuple(sizes),
    )
