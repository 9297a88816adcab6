"""benchmarks/train_answerer.py's bookkeeping for the pooled confidence: which population a question belongs to,
weights under which each population counts the same, and the operating point's balanced accuracy averaged over
populations (so that the largest population does not choose the threshold alone)."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.answerer_data import Example
from benchmarks.train_answerer import population, population_weights, refusal_by_population


def example(qid: str, corpus: str = "squad", kind: str = "answerable") -> Example:
    return Example(
        qid=qid,
        question="q",
        article="a",
        split="validation",
        kind=kind,
        answers=[],
        featurized=None,
        labels=np.zeros(0),
        corpus=corpus,
    )


@pytest.mark.parametrize(
    ("qid", "corpus", "kind", "expected"),
    [
        ("5733be", "squad", "answerable", "squad"),
        ("5733be:para", "rephrased", "adversarial", "rephrased"),
        ("intro:Warsaw:Sigismund", "introductions", "answerable", "introductions"),
        ("5733be", "article", "adversarial", "article squad"),
        ("5733be:para", "article", "answerable", "article rephrased"),
        ("intro:Warsaw:Sigismund", "article", "answerable", "article introductions"),
        ("5733be:para@Warsaw", "article", "offtopic", "article offtopic"),
        ("scifact:12", "scifact", "noinfo", "scifact"),
    ],
)
def test_population(qid: str, corpus: str, kind: str, expected: str) -> None:
    assert population(example(qid, corpus, kind)) == expected


def test_population_weights_count_each_population_the_same() -> None:
    examples = [example(f"{i}") for i in range(9)] + [example("intro:a:b", "introductions")]
    weights = population_weights(examples)
    assert weights.mean() == pytest.approx(1.0)
    assert weights[:9].sum() == pytest.approx(weights[9:].sum())


def test_balanced_accuracy_is_averaged_over_populations() -> None:
    # Population a: 90 answerable, all answered. Population b: 10 unanswerable, none refused at 0.5.
    p = np.array([0.9] * 90 + [0.9] * 10)
    unanswerable = np.array([False] * 90 + [True] * 10)
    group = np.array(["a"] * 90 + ["b"] * 10)
    point = refusal_by_population(p, unanswerable, group, 0.5)
    assert point["balanced_accuracy"] == pytest.approx(0.5)  # (1.0 answered in a + 0.0 refused in b) / 2
    assert point["answerable_answered"] == pytest.approx(1.0) and point["refusal_recall"] == 0.0
