"""Free-text metrics a recipe asks for (`eval.metrics`), scored alike for the base and the tuned model.

ROUGE-L alone does not say whether a summary is faithful, of the right length, or close in meaning to the
reference, so each of these answers one of those questions:
- rouge: ROUGE-1/2/L F1 with stemming (Google's rouge-score, the reference implementation);
- semantic_similarity: cosine of mean-pooled sentence embeddings of answer and reference, with the encoder the
  project ships (MiniLM-L6, an all-MiniLM sentence-embedding model), BERTScore's idea at one vector per text;
- length_ratio: answer words / reference words, averaged (1.0 = the reference's length; a model that rambles
  or stops short shows here first);
- repetition: share of an answer's word 4-grams that repeat an earlier one (loops of a small model);
- faithfulness: share of the answer's content words and numbers that occur in the prompt (the source of a
  summary); numbers found in an answer but nowhere in its prompt are listed as possible hallucinations.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ...data.support import is_number, supported, words

SIMILARITY_ENCODER = "minilm-l6"
REPEAT_N = 4
MAX_LISTED = 20  # possible hallucinations kept in metrics.json: enough to look at, not the whole test set


def text_metrics(names, answers: list[str], references: list[str], sources: list[str]) -> dict:
    """The metrics `names` asks for, averaged over the answers (sources: each prompt's text)."""
    out = {}
    for name in names:
        if name == "rouge":
            out.update(rouge(answers, references))
        elif name == "semantic_similarity":
            out["semantic_similarity"] = semantic_similarity(answers, references)
        elif name == "length_ratio":
            out["length_ratio"] = _mean(len(words(a)) / max(len(words(r)), 1) for a, r in zip(answers, references))
        elif name == "repetition":
            out["repetition"] = _mean(repetition(a) for a in answers)
        elif name == "faithfulness":
            out.update(faithfulness(answers, sources))
    return out


def rouge(answers: list[str], references: list[str]) -> dict:
    from rouge_score import rouge_scorer

    kinds = ("rouge1", "rouge2", "rougeL")
    scorer = rouge_scorer.RougeScorer(list(kinds), use_stemmer=True)
    scores = [scorer.score(ref, ans) for ans, ref in zip(answers, references)]
    names = {"rouge1": "rouge_1", "rouge2": "rouge_2", "rougeL": "rouge_l"}
    return {names[k]: _mean(s[k].fmeasure for s in scores) for k in kinds}


def repetition(text: str) -> float:
    grams = [tuple(g) for g in _ngrams(words(text), REPEAT_N)]
    return 1 - len(set(grams)) / len(grams) if grams else 0.0


def faithfulness(answers: list[str], sources: list[str]) -> dict:
    """Share of content words and numbers supported by the source, and the numbers that are not."""
    shares, unsupported = [], []
    for i, (answer, source) in enumerate(zip(answers, sources)):
        found = supported(answer, source)
        if not found:
            continue
        shares.append(sum(ok for _, ok in found) / len(found))
        missing = sorted({w for w, ok in found if not ok and is_number(w)})
        if missing and len(unsupported) < MAX_LISTED:
            unsupported.append({"index": i, "numbers": missing})
    return {"faithfulness": _mean(shares), "unsupported_numbers": unsupported}


def semantic_similarity(answers: list[str], references: list[str]) -> float:
    """Mean cosine between each answer's and its reference's mean-pooled MiniLM embedding."""
    a, b = embed(answers), embed(references)
    cos = (a * b).sum(1) / np.clip(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12, None)
    return float(cos.mean()) if len(cos) else float("nan")


def embed(texts: list[str]) -> np.ndarray:
    from ...engine.batching import tokenize
    from ...engine.metrics import forward_batches, mean_pooled

    model, tokenizer = _encoder()
    rows, _ = tokenize(tokenizer, texts, None, max_length=256)
    return forward_batches(model, rows, 32, tokenizer.pad_token_id, "fp32", mean_pooled)


def embedding_width() -> int:
    return int(_encoder()[0].config.hidden_size)


@lru_cache(maxsize=1)
def _encoder():
    """The shipped sentence encoder, loaded once per process (the base and the tuned answers share it)."""
    from transformers import AutoModel

    from ...models.loading import load_tokenizer, resolve_weights

    path = resolve_weights(SIMILARITY_ENCODER)
    return AutoModel.from_pretrained(path).eval(), load_tokenizer(path)


def _ngrams(tokens: list[str], n: int):
    return (tokens[i : i + n] for i in range(len(tokens) - n + 1))


def _mean(values) -> float:
    values = list(values)
    return float(np.mean(values)) if values else float("nan")
