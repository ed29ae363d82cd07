"""Few-shot sampling: exactly K per class, reproducible by seed, a clear error when a class has fewer."""

import pytest

from tunesmith.data.classification import Split, sample_per_class
from tunesmith.errors import TunesmithError


def split(counts: dict[str, int]) -> Split:
    texts, labels = [], []
    for label, n in counts.items():
        texts += [f"{label} {i}" for i in range(n)]
        labels += [label] * n
    return Split(texts, labels, source="train.csv")


def test_exactly_k_per_class_and_seeded():
    data = split({"a": 30, "b": 12, "c": 50})
    first = sample_per_class(data, 8, seed=1)
    assert sorted(first.labels) == ["a"] * 8 + ["b"] * 8 + ["c"] * 8
    assert all(t.split()[0] == label for t, label in zip(first.texts, first.labels))
    assert sample_per_class(data, 8, seed=1).texts == first.texts
    assert sample_per_class(data, 8, seed=2).texts != first.texts


def test_class_with_fewer_than_k_is_named():
    with pytest.raises(TunesmithError, match=r"samples_per_class=8.*'b' \(5\)"):
        sample_per_class(split({"a": 30, "b": 5}), 8, seed=0)
