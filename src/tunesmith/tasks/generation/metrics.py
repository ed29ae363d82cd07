"""Generation metrics on held-out prompts: exact match on parsed short answers, ROUGE-L on free text."""

from __future__ import annotations

import re
import string

from sklearn.metrics import precision_recall_fscore_support

LABEL_MAX_WORDS = 4  # references this short (and repeated) are labels, not prose


def is_label_like(references: list[str]) -> bool:
    """Short, single-line references drawn from a small set: answers are labels."""
    short = all(len(r.split()) <= LABEL_MAX_WORDS and "\n" not in r.strip() for r in references)
    return short and len(set(references)) <= max(1, len(references) // 2)


def normalize(text: str) -> str:
    return text.strip().strip(string.punctuation + " \"'`").lower()


def parse_label(generation: str, labels: list[str]) -> str:
    """The label a generation names: its first line if that is a label, else the earliest label mentioned.

    Models often wrap the answer ("Intent: track_order."); exact string comparison would call that wrong.
    """
    lines = [line for line in generation.strip().splitlines() if line.strip()]
    first = normalize(lines[0]) if lines else ""
    known = {normalize(label) for label in labels}
    if first in known:
        return first
    text = generation.lower()
    hits = []
    for label in known:
        match = re.search(r"(?<![\w])" + re.escape(label) + r"(?![\w])", text)
        if match:
            hits.append((match.start(), -len(label), label))
    return min(hits)[2] if hits else first


def exact_match(generations: list[str], references: list[str]) -> dict:
    labels = sorted(set(references))
    predicted = [parse_label(g, labels) for g in generations]
    gold = [normalize(r) for r in references]
    accuracy = sum(p == g for p, g in zip(predicted, gold)) / max(len(gold), 1)
    p, r, f1, _ = precision_recall_fscore_support(
        gold, predicted, labels=sorted(set(gold)), average="macro", zero_division=0
    )
    return {
        "exact_match": accuracy,
        "accuracy": accuracy,
        "f1_macro": float(f1),
        "precision_macro": float(p),
        "recall_macro": float(r),
    }


def rouge_l(generations: list[str], references: list[str]) -> dict:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    scores = [scorer.score(ref, gen)["rougeL"].fmeasure for gen, ref in zip(generations, references)]
    return {"rouge_l": sum(scores) / max(len(scores), 1)}


def generation_metrics(
    generations: list[str], references: list[str], kind: str, extra=(), prompts: list | None = None
) -> dict:
    """`kind`: exact_match | rouge_l. ROUGE-L is always reported; exact match when answers are labels; `extra`
    names more metrics (eval.metrics), with `prompts` (message lists) as the sources faithfulness checks against."""
    metrics = {} if "rouge" in extra else rouge_l(generations, references)  # "rouge" scores ROUGE-L with 1 and 2
    if kind == "exact_match":
        metrics.update(exact_match(generations, references))
    if extra:
        from .text_metrics import text_metrics

        sources = [_source_text(p) for p in prompts] if prompts is not None else [""] * len(generations)
        metrics.update(text_metrics(extra, generations, references, sources))
    return metrics


def _source_text(prompt) -> str:
    """What an answer may draw on: every turn's text before it (a document to summarise, a brief)."""
    if isinstance(prompt, str):
        return prompt
    return "\n".join(str(m.get("content", "")) for m in prompt if isinstance(m, dict))


DEFAULT_MAX_NEW_TOKENS = 256
LABEL_MAX_NEW_TOKENS = 32
# Without eval.max_new_tokens, answers stop at this multiple of the training answers' 95th-percentile length (plus
# a few tokens): a base model that rambles on (4.6x the reference on contract summaries) is cut where no trained
# answer would still be writing, and evaluation on a CPU does not pay for the rambling.
ANSWER_CAP_FACTOR = 1.5


def answer_settings(ev, references: list[str], train_p95: int | None = None) -> tuple[str, int]:
    """The generation metric (exact_match for label-like references) and the answer-length limit: the recipe's,
    else from the training answers' 95th-percentile token count `train_p95`, at most DEFAULT_MAX_NEW_TOKENS."""
    kind = ev.generation_metric
    if kind == "auto":
        kind = "exact_match" if is_label_like(references) else "rouge_l"
    if ev.max_new_tokens:
        return kind, ev.max_new_tokens
    if kind == "exact_match":
        return kind, LABEL_MAX_NEW_TOKENS
    if train_p95:
        return kind, min(DEFAULT_MAX_NEW_TOKENS, max(LABEL_MAX_NEW_TOKENS, round(ANSWER_CAP_FACTOR * train_p95) + 8))
    return kind, DEFAULT_MAX_NEW_TOKENS


def answer_p95(rows: list[dict]) -> int | None:
    """95th percentile of the answer tokens (labelled positions) per training row; None without rows."""
    import numpy as np

    counts = [sum(t != -100 for t in r["labels"][1:]) for r in rows]
    return int(np.percentile(counts, 95)) if counts else None
