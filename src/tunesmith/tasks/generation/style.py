"""Brand voice: does the model's copy read like the brand's own, or like a generic assistant?

`eval.style_reference: train` builds a judge from the run's own data: the brand's training responses on one
side, the base model's answers to the same training prompts on the other (what the model wrote before it
learnt the brand). A logistic regression on frozen MiniLM embeddings (the encoder the project ships) tells
them apart; each held-out answer, base and tuned, is then counted as the brand's or not (`style_match`). The
brand's distinctive word n-grams (most over-represented in its copy against the base answers, by smoothed
log-odds) give a second, readable signal: how many of them an answer uses (`brand_ngrams`).

The judge's own 5-fold accuracy on its training texts is reported (`style.judge_accuracy`): near 0.5 it
cannot tell the brand from the base model and its shares mean little.

The judge is kept in the run directory as numbers in JSON (`style_judge.json`: the regression's weights and bias,
the n-grams), never as a pickle, so `tunesmith eval RUN --data FILE` scores new answers with the same judge.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from .text_metrics import embed, words

TOP_NGRAMS = 30
MIN_BRAND_COUNT = 3  # an n-gram the brand used fewer times is chance, not voice


FILE = "style_judge.json"


@dataclass
class StyleJudge:
    weights: np.ndarray  # the logistic regression over MiniLM embeddings: w.x + b > 0 is the brand
    bias: float
    ngrams: list[str]
    judge_accuracy: float
    sizes: dict = field(default_factory=dict)

    def score(self, answers: list[str]) -> dict:
        """style_match: share of answers the judge takes for the brand; brand_ngrams: distinctive n-grams per answer."""
        texts = [a for a in answers if a.strip()]
        if not texts:
            return {"style_match": 0.0, "brand_ngrams": 0.0}
        x = embed(texts)
        if x.shape[1] != len(self.weights):
            raise ValueError(f"{FILE}: {len(self.weights)} weights for {x.shape[1]}-wide embeddings")
        brand = (x @ self.weights + self.bias > 0).astype(int)  # LogisticRegression.predict, as numbers
        grams = set(self.ngrams)
        used = sum(len(grams & set(_grams(a))) for a in texts)
        # both over every answer: an empty one is not the brand's and uses none of its n-grams
        return {"style_match": float(np.sum(brand == 1) / len(answers)), "brand_ngrams": used / len(answers)}

    def describe(self) -> dict:
        """metrics.json's `style`: what the judge learnt from, how well it separates, the n-grams it counts."""
        return {"judge_accuracy": self.judge_accuracy, **self.sizes, "ngrams": self.ngrams}

    def to_json(self) -> dict:
        return {**self.describe(), "weights": [float(w) for w in self.weights], "bias": float(self.bias)}

    @classmethod
    def from_json(cls, data: dict, width: int | None = None) -> StyleJudge:
        """A judge saved by a run (a file: checked as input): a row of weights (as many as the encoder's embeddings
        are wide, when `width` is given), a bias, n-gram strings."""
        try:
            weights = np.asarray(data["weights"], dtype=np.float64)
            bias, accuracy = float(data["bias"]), float(data["judge_accuracy"])
            ngrams = [str(g) for g in data["ngrams"] if isinstance(g, str)][: TOP_NGRAMS * 2]
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{FILE}: not a style judge ({err})") from None
        if (
            weights.ndim != 1
            or not 0 < len(weights) <= 8192
            or not np.isfinite(weights).all()
            or not math.isfinite(bias)
        ):
            raise ValueError(f"{FILE}: expected one row of finite weights and a finite bias")
        if width is not None and len(weights) != width:
            raise ValueError(f"{FILE}: {len(weights)} weights for {width}-wide embeddings")
        return cls(weights, bias, ngrams, accuracy)


def fit_style_judge(brand: list[str], other: list[str], seed: int = 42) -> StyleJudge:
    """A judge of the brand's texts against the other (the base model's) texts on the same prompts."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    brand = [t for t in brand if t.strip()]
    # the base model's empty answers stay: writing nothing is one way of not sounding like the brand
    x = embed(brand + other)
    y = np.array([1] * len(brand) + [0] * len(other))
    classifier = LogisticRegression(max_iter=2000, class_weight="balanced")
    folds = min(5, len(brand), len(other))
    accuracy = (
        float(cross_val_score(classifier, x, y, cv=StratifiedKFold(folds, shuffle=True, random_state=seed)).mean())
        if folds >= 2
        else float("nan")
    )
    classifier.fit(x, y)
    return StyleJudge(
        classifier.coef_[0].astype(np.float64),
        float(classifier.intercept_[0]),
        distinctive_ngrams(brand, other),
        accuracy,
        {"brand_texts": len(brand), "base_texts": len(other)},
    )


def distinctive_ngrams(brand: list[str], other: list[str], top: int = TOP_NGRAMS) -> list[str]:
    """Word 1-2-grams most over-represented in the brand's texts against the others (log-odds, add-one
    smoothing), used at least MIN_BRAND_COUNT times by the brand; single stop words are left out."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    mine = Counter(g for t in brand for g in set(_grams(t)))
    theirs = Counter(g for t in other for g in set(_grams(t)))
    n_mine, n_theirs = max(len(brand), 1), max(len(other), 1)

    def log_odds(gram: str) -> float:
        p = (mine[gram] + 1) / (n_mine + 2)
        q = (theirs[gram] + 1) / (n_theirs + 2)
        return math.log(p / (1 - p)) - math.log(q / (1 - q))

    kept = [g for g, c in mine.items() if c >= MIN_BRAND_COUNT and g not in ENGLISH_STOP_WORDS]
    ranked = sorted(kept, key=lambda g: (-log_odds(g), g))
    return [g for g in ranked[:top] if log_odds(g) > 0]


def _grams(text: str) -> list[str]:
    tokens = words(text)
    return tokens + [f"{a} {b}" for a, b in zip(tokens, tokens[1:])]
