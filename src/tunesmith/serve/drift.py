"""Is an input far from what the model was trained on? Where the training texts lie in the tuned model's own
embedding space: the centroid of each predicted label over up to 500 of the run's training texts, and the
distance within which 95% of them fall. A served input further than that from its predicted label's centroid
counts as far (tunesmith_far_from_training_total); a rising share says the traffic has moved.

Built when the model loads, from the training files the run's recipe names (and a continual run's later
experiences); a server that cannot read them serves without this signal."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import numpy as np

from ..runs import rundir

log = logging.getLogger(__name__)
SAMPLE = 500
QUANTILE = 0.95


class Reference:
    def __init__(self, centroids: np.ndarray, radius: float):
        self.centroids, self.radius = centroids, radius

    def far(self, probs: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
        """Per input: its cosine distance to its predicted label's training centroid is beyond the radius."""
        return _distance(embeddings, self.centroids[probs.argmax(-1)]) > self.radius

    @classmethod
    def build(cls, predictor, run_dir: Path) -> Reference | None:
        texts = training_texts(run_dir, getattr(predictor, "columns", {}).get("text", "text"))
        if len(texts) < 20:
            return None
        probs, x = predictor.proba_and_embedding(texts)
        picked = probs.argmax(-1)
        centroids = np.stack(
            [x[picked == k].mean(0) if (picked == k).any() else np.zeros(x.shape[1]) for k in range(probs.shape[1])]
        )
        centroids /= np.clip(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12, None)
        radius = float(np.quantile(_distance(x, centroids[picked]), QUANTILE))
        return cls(centroids, radius)


def _distance(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    return 1.0 - (x * centroids).sum(1)


def training_texts(run_dir: Path, column: str) -> list[str]:
    """A seeded sample of the texts the run trained on, read from the files its recipe (and continual state)
    name; [] when they are not readable here."""
    from ..data.readers import read_table

    recipe = rundir.read_yaml(Path(run_dir) / rundir.RECIPE_FILE)
    sections = [recipe.get("data")] + [e.get("data") for e in recipe.get("experiences") or [] if isinstance(e, dict)]
    state = rundir.read_json(Path(run_dir) / rundir.CONTINUAL_FILE)
    sections += [e.get("data") for e in state.get("experiences") or [] if isinstance(e, dict)]
    texts: list[str] = []
    for path in sorted({s.get("train") for s in sections if isinstance(s, dict) and isinstance(s.get("train"), str)}):
        try:
            frame = read_table(path, "train")
        except Exception as err:  # noqa: BLE001  (moved, deleted or unreadable here: the signal is optional)
            log.info(f"drift signal: {path} not read ({err})")
            continue
        if column in frame:
            texts += [t for t in frame[column].tolist() if isinstance(t, str) and t.strip()]
    random.Random(0).shuffle(texts)
    return texts[:SAMPLE]
