"""Unlabeled text for continued pre-training: read documents, hold some out, pack tokens into blocks."""

from __future__ import annotations

import random
import re
from pathlib import Path

from ..errors import TunesmithError, did_you_mean
from .readers import SUFFIXES, read_table

RAW_SUFFIXES = {".txt", ".md", ".text"}
TABLE_SUFFIXES = set(SUFFIXES) - RAW_SUFFIXES
_PARAGRAPH = re.compile(r"\n\s*\n")


def read_corpus(paths: list[str], text_column: str, role: str) -> list[str]:
    """Documents from raw text files (a blank line separates documents), folders of them, or table files."""
    if not paths:
        raise TunesmithError(
            f"{role}: no files given. List .txt files, folders or .jsonl/.csv files with a '{text_column}' column."
        )
    docs: list[str] = []
    for entry in paths:
        for path in _files(Path(entry), role):
            docs += (
                _raw_documents(path, role)
                if path.suffix.lower() in RAW_SUFFIXES
                else _table_documents(path, text_column, role)
            )
    if not docs:
        raise TunesmithError(f"{role}: the files hold no text ({', '.join(paths)}).")
    return docs


def _files(path: Path, role: str) -> list[Path]:
    if not path.exists():
        raise TunesmithError(
            f"{role}: not found: {path}. Check the path (relative paths resolve against the recipe's folder)."
        )
    if path.is_file():
        return [path]
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in RAW_SUFFIXES | TABLE_SUFFIXES)
    if not files:
        raise TunesmithError(
            f"{role}: the folder {path} holds no text files (.txt, .md, .jsonl, .csv, .tsv, .json, .parquet)."
        )
    return files


def _raw_documents(path: Path, role: str) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise TunesmithError(
            f"{role}: {path} is not UTF-8 text (bad byte at offset {err.start}). Re-save it as UTF-8."
        ) from None
    if "\x00" in text[:4096]:
        raise TunesmithError(f"{role}: {path} looks like a binary file, not text.")
    return [doc.strip() for doc in _PARAGRAPH.split(text) if doc.strip()]


def _table_documents(path: Path, text_column: str, role: str) -> list[str]:
    frame = read_table(path, role)
    if text_column not in frame.columns:
        found = ", ".join(map(str, frame.columns))
        raise TunesmithError(
            f"{path}: no column '{text_column}' (method.text_column). Columns found: {found}."
            f"{did_you_mean(text_column, frame.columns)} Set method.text_column to the text column."
        )
    # Raw text: empty cells are skipped, not errors (corpora are scraped, not curated).
    return [v.strip() for v in frame[text_column].tolist() if isinstance(v, str) and v.strip()]


def hold_out(docs: list[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Seeded document-level split, so no held-out block shares a document with training."""
    if fraction == 0 or len(docs) < 2:
        return docs, []
    order = list(range(len(docs)))
    random.Random(seed).shuffle(order)
    n_held = max(1, round(fraction * len(docs)))
    return [docs[i] for i in order[n_held:]], [docs[i] for i in order[:n_held]]


def pack_blocks(tokenizer, docs: list[str], block_len: int, encoder: bool) -> list[list[int]]:
    """Concatenate documents (separator between them) and cut into full blocks of `block_len` tokens.

    Encoders get [CLS] ... [SEP] around every block, as in BERT pre-training; decoders see raw runs of
    tokens with EOS between documents. The last, partial block is kept only if at least half full.
    """
    ids = tokenizer(docs, add_special_tokens=False, verbose=False)["input_ids"]
    sep = tokenizer.sep_token_id if encoder else tokenizer.eos_token_id
    stream = [token for doc in ids for token in (*doc, sep)]
    inner = block_len - 2 if encoder else block_len
    blocks = [stream[i : i + inner] for i in range(0, len(stream), inner)]
    if blocks and len(blocks[-1]) < inner // 2 and len(blocks) > 1:
        blocks.pop()
    if encoder:
        blocks = [[tokenizer.cls_token_id, *b, tokenizer.sep_token_id] for b in blocks]
    return blocks


def budget_documents(tokenizer, docs: list[str], max_tokens: int, seed: int) -> list[str]:
    """A seeded shuffle of the documents, cut once they hold `max_tokens` tokens.

    Tokenizes only as much as the budget needs: a small budget on a large corpus stays fast.
    """
    order = list(docs)
    random.Random(seed).shuffle(order)
    total, chunk = 0, 256
    for start in range(0, len(order), chunk):
        lengths = map(
            len, tokenizer(order[start : start + chunk], add_special_tokens=False, verbose=False)["input_ids"]
        )
        for offset, length in enumerate(lengths):
            total += length + 1  # + the separator
            if total >= max_tokens:
                return order[: start + offset + 1]
    return order
