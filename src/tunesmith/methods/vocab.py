"""Vocabulary extension for domain adaptation: frequent domain words the tokenizer shreds become one token.

A word like "echocardiography" split into five WordPiece fragments costs five positions and its
meaning has to be rebuilt from pieces in every layer. Adding it as one token whose embedding starts
at the mean of those pieces' embeddings keeps the model's first guess close to what it computed before
(the usual initialisation in the vocabulary-adaptation literature, e.g. AVocaDo, exBERT).
"""

from __future__ import annotations

import re
from collections import Counter

import torch

from ..errors import TunesmithError

_WORD = re.compile(r"[^\W\d_](?:[\w-]*[^\W_])?")


def candidate_words(
    tokenizer, docs: list[str], limit: int, min_pieces: int, min_count: int
) -> list[tuple[str, list[int]]]:
    """The `limit` most frequent words split into >= min_pieces tokens, with their current token ids."""
    normalizer = getattr(getattr(tokenizer, "backend_tokenizer", None), "normalizer", None)
    counts: Counter[str] = Counter()
    for doc in docs:
        counts.update(_WORD.findall(normalizer.normalize_str(doc) if normalizer else doc))
    vocab = tokenizer.get_vocab()
    picked = []
    for word, count in counts.most_common():
        if count < min_count or len(picked) >= limit:
            break
        if word in vocab:
            continue
        ids = tokenizer(word, add_special_tokens=False)["input_ids"]
        if len(ids) >= min_pieces and tokenizer.unk_token_id not in ids:
            picked.append((word, ids))
    return picked


def extend_vocabulary(model, tokenizer, words: list[tuple[str, list[int]]]) -> list[str]:
    """Add the words as whole-word tokens; each new input (and tied output) embedding = mean of its old pieces."""
    if not words:
        return []
    if not _is_wordpiece(tokenizer):
        raise TunesmithError(
            "method.vocab_extension supports WordPiece (BERT-style) tokenizers; byte-level BPE tokenizers of "
            "decoder LLMs "
            "would lose the space before each added word. Set method.vocab_extension: 0 for this model."
        )
    add_words(tokenizer, words)
    # Never shrink: some checkpoints carry more embedding rows than their tokenizer can reach.
    model.resize_token_embeddings(max(len(tokenizer), model.get_input_embeddings().num_embeddings), mean_resizing=False)
    embeddings = model.get_input_embeddings().weight
    with torch.no_grad():
        for word, pieces in words:
            embeddings[tokenizer.convert_tokens_to_ids(word)] = embeddings[pieces].mean(0)
    return [word for word, _ in words]


def _is_wordpiece(tokenizer) -> bool:
    model = getattr(getattr(tokenizer, "backend_tokenizer", None), "model", None)
    return type(model).__name__ == "WordPiece"


def add_words(tokenizer, words: list[tuple[str, list[int]]]) -> None:
    """The tokenizer side alone (training text is tokenized with it before the model exists); adding a word
    twice is a no-op, so extend_vocabulary may follow."""
    from tokenizers import AddedToken

    if words and not _is_wordpiece(tokenizer):
        raise TunesmithError(
            "method.vocab_extension supports WordPiece (BERT-style) tokenizers; byte-level BPE tokenizers of "
            "decoder LLMs "
            "would lose the space before each added word. Set method.vocab_extension: 0 for this model."
        )
    tokenizer.add_tokens([AddedToken(word, single_word=True, normalized=True) for word, _ in words])
