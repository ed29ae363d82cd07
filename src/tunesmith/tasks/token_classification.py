"""What token-classification methods share: words to sub-token rows (the tag on a word's first piece),
entity-level metrics with seqeval (strict IOB2), the per-token probe base line, and the predictor that
returns entities with their text, character offsets and score."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from ..data.inputs import one_or_many
from ..engine.batching import inference_batches, iterate
from ..engine.hardware import resolve_precision
from ..models.loading import load_encoder

log = logging.getLogger(__name__)


def encode(
    tokenizer,
    sentences: list[list[str]],
    tags: list[list[str]] | None,
    labels: list[str],
    max_length: int,
    label_all: bool = False,
) -> tuple[list[dict], list[list[int]], int]:
    """Rows (input_ids, attention_mask, labels with -100 where no loss), each row's first-piece position per
    word (-1 for a word cut by max_length), and how many sentences were cut."""
    index = {label: i for i, label in enumerate(labels)}
    # a table's column: the tokenizer wants lists
    sentences = sentences if isinstance(sentences, list) else list(sentences)
    enc = tokenizer(sentences, is_split_into_words=True, truncation=True, max_length=max_length)
    rows, firsts, cut = [], [], 0
    for n, words in enumerate(sentences):
        word_ids = enc.word_ids(n)
        first = [-1] * len(words)
        row_labels = []
        for pos, w in enumerate(word_ids):
            if w is not None and first[w] < 0:
                first[w] = pos
            keep = w is not None and (first[w] == pos or label_all)
            tag = tags[n][w] if keep and tags is not None else None
            row_labels.append(-100 if tag is None else index[tag])  # None: a word that carries no loss
        cut += any(f < 0 for f in first)
        row = {"input_ids": enc["input_ids"][n], "attention_mask": enc["attention_mask"][n]}
        if tags is not None:
            row["labels"] = row_labels
        rows.append(row)
        firsts.append(first)
    return rows, firsts, cut


def encode_table(
    tokenizer,
    sentences: list[list[str]],
    tags: list[list[str]],
    labels: list[str],
    max_length: int,
    label_all: bool = False,
):
    """`encode`'s rows, word positions and cut count, written once to the token table (memory-mapped, cached on
    disk by the words, tags, labels, tokenizer and max_length) and read back as sequences of the same lists."""
    import datasets

    from ..data.columns import dataset_of
    from ..engine.token_table import CUT, ListColumn, TokenRows, cached_table, list_chunks, table_key

    if not sentences:
        return [], [], 0
    settings = ["token_classification", str(max_length), str(label_all), json.dumps(labels), str(len(sentences))]
    key = table_key(tokenizer, settings, [sentences, tags])
    ints = datasets.List(datasets.Value("int32"))
    features = {"input_ids": ints, "labels": ints, "firsts": ints, CUT: datasets.Value("int32")}

    source = dataset_of({"words": sentences, "tags": tags})
    if source is None:  # lists, or a table's rows joined with windows of words: read by position, never copied
        source = datasets.Dataset.from_dict({"row": np.arange(len(sentences))})

    def batch(columns):
        if "row" in columns:
            columns = {"words": [sentences[i] for i in columns["row"]], "tags": [tags[i] for i in columns["row"]]}
        rows, firsts, _ = encode(tokenizer, columns["words"], columns["tags"], labels, max_length, label_all)
        return {
            "input_ids": [r["input_ids"] for r in rows],
            "labels": [r["labels"] for r in rows],
            "firsts": firsts,
            CUT: [int(any(f < 0 for f in first)) for first in firsts],
        }

    table, path = cached_table(key, source, batch, features)
    rows = TokenRows(list_chunks(table, ["input_ids", "labels"]), mask=True, path=path)
    return rows, ListColumn(list_chunks(table, ["firsts"]), path), int(table.column(CUT).to_numpy().sum())


def per_row(model, rows: list[dict], batch_size: int, pad_id: int, precision: str, fn) -> list:
    """`fn(output, j, i)` for every row i (j: its place in the batch), in input order; rows may differ in length.
    Only what `fn` returns is kept: a row's hidden states are dropped with its batch."""
    import torch

    from ..engine.metrics import autocast

    device = next(model.parameters()).device
    out: list = [None] * len(rows)
    batches = inference_batches([len(r["input_ids"]) for r in rows], batch_size, cpu=device.type == "cpu")
    plain = [{k: v for k, v in r.items() if k != "labels"} for r in rows]
    model.eval()
    with torch.inference_mode():
        for idx, batch in zip(batches, iterate(plain, batches, pad_id)):
            with autocast(device, precision):
                output = model(**{k: v.to(device) for k, v in batch.items()})
            for j, i in enumerate(idx):
                out[i] = fn(output, j, i)
    return out


def word_scores(
    model, rows: list[dict], firsts: list[list[int]], batch_size: int, pad_id: int, precision: str
) -> list[np.ndarray]:
    """Per sentence, a (words x labels) probability matrix read at each word's first piece (uniform for cut words)."""
    probs = per_row(
        model, rows, batch_size, pad_id, precision, lambda out, j, i: out.logits[j].float().softmax(-1).cpu().numpy()
    )
    return [
        np.stack([p[pos] if pos >= 0 else np.full(p.shape[-1], 1 / p.shape[-1]) for pos in first])
        for p, first in zip(probs, firsts)
    ]


WINDOW_SHARE = 4  # a window shares a quarter of its words with the next: each word gets one with context both sides


def word_windows(tokenizer, words: list[str], max_length: int) -> list[tuple[int, int]]:
    """[start, end) word ranges whose pieces fit max_length with the special tokens, each sharing a quarter of its
    words with the next (a single word longer than that is a window of its own, cut as before)."""
    return windows_of(tokenizer, [words], max_length)[0]


WINDOW_BLOCK = 2_000  # sentences tokenized at once to find their windows


def windows_of(tokenizer, sentences: list[list[str]], max_length: int) -> list[list[tuple[int, int]]]:
    """`word_windows` of each sentence, tokenized a block at a time."""
    budget = max(1, max_length - tokenizer.num_special_tokens_to_add())
    out = []
    for start in range(0, len(sentences), WINDOW_BLOCK):
        block = [list(words) for words in sentences[start : start + WINDOW_BLOCK]]
        enc = tokenizer(block, is_split_into_words=True, add_special_tokens=False, verbose=False)
        for n, words in enumerate(block):
            ids = [w for w in enc.word_ids(n) if w is not None]
            out.append(_windows(np.bincount(ids, minlength=len(words)), budget))
    return out


def _windows(pieces: np.ndarray, budget: int) -> list[tuple[int, int]]:
    windows, start = [], 0
    while True:
        end, used = start, 0
        while end < len(pieces) and (end == start or used + pieces[end] <= budget):
            used, end = used + pieces[end], end + 1
        windows.append((start, end))
        if end >= len(pieces):
            return windows
        start = max(start + 1, end - (end - start) // WINDOW_SHARE)


def split_long(tokenizer, split, firsts, max_length: int):
    """(the split with every sentence that max_length cuts replaced by its overlapping windows of words, tags
    with them; how many were cut; the positions of the sentences that fit). Every entity of a long document then
    trains, as windows tag it in predict. The sentences that fit stay a view of the split's own and the windows
    follow them, read from it when asked for: a table's rows are not read into lists."""
    from dataclasses import replace

    from ..data.columns import take
    from ..data.token_files import Joined, Windows

    fits = _fits(firsts)
    whole, cut = np.flatnonzero(fits), np.flatnonzero(~fits).tolist()
    spans = []
    for start in range(0, len(cut), WINDOW_BLOCK):
        block = cut[start : start + WINDOW_BLOCK]
        found = windows_of(tokenizer, [split.tokens[i] for i in block], max_length)
        spans += [(i, s, e) for i, windows in zip(block, found) for s, e in windows]
    joined = replace(
        split,
        tokens=Joined(take(split.tokens, whole), Windows(split.tokens, spans)),
        tags=Joined(take(split.tags, whole), Windows(split.tags, spans)),
    )
    return joined, len(cut), whole


def _fits(firsts) -> np.ndarray:
    """Per sentence, whether max_length kept all its words (no word position -1); a token table's are read from
    its arrays."""
    chunks = getattr(firsts, "chunks", None)
    if chunks is None:
        return np.fromiter((all(p >= 0 for p in first) for first in firsts), bool, len(firsts))
    parts = []
    for chunk in chunks:
        ((offsets, values),) = chunk.values()
        lost = np.concatenate([[0], np.cumsum(values[offsets[0] : offsets[-1]] < 0)])
        parts.append(lost[offsets[1:] - offsets[0]] == lost[offsets[:-1] - offsets[0]])
    return np.concatenate(parts) if parts else np.zeros(0, bool)


def train_windows(tokenizer, split, rows, firsts, labels: list[str], max_length: int, label_all: bool):
    """(split, rows, word positions) with every sentence max_length cuts training as its windows of words: the
    rows that fit are a view of the token table, and only the windows are tokenized again."""
    from ..data.token_files import Joined
    from ..engine.token_table import RowsView

    split, _, whole = split_long(tokenizer, split, firsts, max_length)
    windows = (split.tokens.parts[1], split.tags.parts[1])
    window_rows, window_firsts, _ = encode_table(tokenizer, *windows, labels, max_length, label_all)
    rows, firsts = Joined(RowsView(rows, whole), window_rows), Joined(RowsView(firsts, whole), window_firsts)
    return split, rows, firsts


def long_sentence_scores(model, tokenizer, sentences, scores, firsts, labels, max_length, batch_size, precision):
    """`scores` (word_scores) with every sentence that max_length cut read again in overlapping windows of whole
    words, each word scored in the window where it sits furthest from an edge. A long document's later words are
    then tagged as its first ones are; read once, they had uniform scores (no entity found, or a spurious one)."""
    cut = [i for i, first in enumerate(firsts) if any(p < 0 for p in first)]
    if not cut:
        return scores
    spans = [(i, s, e) for i in cut for s, e in word_windows(tokenizer, sentences[i], max_length)]
    rows, window_firsts, _ = encode(tokenizer, [list(sentences[i][s:e]) for i, s, e in spans], None, labels, max_length)
    parts = word_scores(model, rows, window_firsts, batch_size, tokenizer.pad_token_id, precision)
    best: dict[tuple[int, int], tuple[int, np.ndarray]] = {}  # (sentence, word) -> (words of context, scores)
    for (i, s, e), part in zip(spans, parts):
        for k, row in enumerate(part):
            room = min(k, e - s - 1 - k)
            if best.get((i, s + k), (-1,))[0] < room:
                best[(i, s + k)] = (room, row)
    out = list(scores)
    for i in cut:
        out[i] = np.stack([best[(i, w)][1] for w in range(len(sentences[i]))])
    return out


def sentence_scores(model, tokenizer, sentences, labels, max_length: int, batch_size: int, precision: str):
    """Per sentence (a list of words), a (words x labels) probability matrix: one read per sentence, the ones
    longer than max_length read again in windows (long_sentence_scores)."""
    rows, firsts, _ = encode(tokenizer, sentences, None, labels, max_length)
    scores = word_scores(model, rows, firsts, batch_size, tokenizer.pad_token_id, precision)
    return long_sentence_scores(model, tokenizer, sentences, scores, firsts, labels, max_length, batch_size, precision)


def ner_metrics(gold: list[list[str]], predicted: list[list[str]], detail: bool = True) -> dict:
    """Entity-level precision/recall/F1 (micro, and per type) in strict IOB2 mode, plus token accuracy."""
    from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
    from seqeval.scheme import IOB2

    kw = {"mode": "strict", "scheme": IOB2, "zero_division": 0}
    gold = list(gold)  # a table's column: seqeval checks for lists
    flat_gold = [t for row in gold for t in row]
    flat_pred = [t for row in predicted for t in row]
    out = {
        "f1": float(f1_score(gold, predicted, **kw)),
        "precision": float(precision_score(gold, predicted, **kw)),
        "recall": float(recall_score(gold, predicted, **kw)),
        "token_accuracy": float(np.mean([a == b for a, b in zip(flat_gold, flat_pred)])) if flat_gold else 0.0,
    }
    if detail:
        report = classification_report(gold, predicted, output_dict=True, **kw)
        out["per_type"] = {k: {m: float(v) for m, v in d.items()} for k, d in report.items() if "avg" not in k}
    return out


def tags_of(probs: list[np.ndarray], labels: list[str]) -> list[list[str]]:
    return [[labels[i] for i in p.argmax(-1)] for p in probs]


def probe_baseline(
    recipe,
    weights: str,
    rows: dict,
    firsts: dict,
    data,
    labels: list[str],
    pad_id: int,
    precision: str,
) -> tuple[dict, tuple[np.ndarray, np.ndarray] | None]:
    """The base model's frozen token embeddings (each word's first piece) with a logistic regression per token,
    scored the same way; and that regression as a tag head's (weight, bias), for a head that starts from it."""
    if recipe.eval.baseline == "none":
        return {}, None
    seed = recipe.train.seed
    encoder, bs = load_encoder(weights), recipe.eval.batch_size
    probe = fit_probe(encoder, rows["train"], firsts["train"], data.train.tags, labels, bs, pad_id, precision, seed)
    tag = lambda vectors: [labels[probe.classes_[k]] for k in probe.predict_proba(vectors).argmax(-1)]  # noqa: E731
    predicted = word_features(encoder, rows["evaluation"], firsts["evaluation"], bs, pad_id, precision, then=tag)
    base = ner_metrics(data.evaluation.tags, predicted)
    log.info(f"base: entity F1 {base['f1']:.4f} (precision {base['precision']:.4f}, recall {base['recall']:.4f})")
    kind = "logistic regression per token on the frozen base model's token embeddings"
    return {"kind": kind, **base}, probe_head(probe, len(labels))


def load_base_predictor(run_dir: Path, columns: dict | None = None, max_length: int = 256):
    """The base model with the per-token probe the run scored it by: the pre-trained body, and base_head.json as its
    tag head. None for a run that kept no probe (eval.baseline: none)."""
    from ..errors import TunesmithError
    from ..models.loading import fill_head, load_token_classifier, load_tokenizer, resolve_weights
    from ..recipe import load_recipe
    from ..runs import rundir

    head = rundir.read_json(run_dir / rundir.BASE_HEAD_FILE)
    if not {"labels", "coef", "intercept"} <= set(head) or not isinstance(head["labels"], list):
        return None
    recipe = load_recipe(rundir.read_yaml(run_dir / rundir.RECIPE_FILE))
    labels, weights = [str(label) for label in head["labels"]], resolve_weights(recipe.model.name)
    model = load_token_classifier(weights, labels)  # the pre-trained body; the probe fills its new head below
    try:  # a run folder comes from anyone: the numbers must be the head's shape, nothing else
        coef, bias = np.asarray(head["coef"], dtype=np.float32), np.asarray(head["intercept"], dtype=np.float32)
        if bias.shape != (len(labels),) or not fill_head(model, coef, bias):
            raise ValueError(f"{len(bias)} biases for {len(labels)} tags")
    except (TypeError, ValueError) as error:
        raise TunesmithError(
            f"{run_dir / rundir.BASE_HEAD_FILE} is not a tag head for this run's model ({error})."
        ) from None
    data = recipe.data if recipe.data is not None else recipe.experiences[0].data
    return TokenPredictor(model, load_tokenizer(weights), max_length=max_length, columns=columns, data=data)


def word_features(encoder, rows, firsts, batch_size: int, pad_id: int, precision: str, keep=None, then=None) -> list:
    """Per sentence, the encoder's last-layer vector at each word's first piece (a word cut by max_length reads
    the first position), or at the words `keep[i]` names: what a tag head sees. `then(vectors)` in their place when
    given (a sentence's tags), so a large set never holds its vectors."""

    def read(out, j: int, i: int):
        first = firsts[i] if keep is None else [firsts[i][k] for k in keep[i]]
        vectors = out.last_hidden_state[j, [max(p, 0) for p in first]].float().cpu().numpy()
        return vectors if then is None else then(vectors)

    return per_row(encoder, rows, batch_size, pad_id, precision, read)


def fitted_head(body, rows, firsts, tags, labels: list[str], batch_size: int, pad_id: int, precision: str, seed: int):
    """A per-token probe fitted on `body`'s word vectors, as a tag head's (weight, bias): where a new tag head
    starts when no base line has fitted one."""
    return probe_head(fit_probe(body, rows, firsts, tags, labels, batch_size, pad_id, precision, seed), len(labels))


PROBE_WORDS = 20_000  # training words the per-token probe is fit on (a seeded sample)
PROBE_SENTENCES = 10_000  # the sentences they are drawn from, at most (a seeded sample of a larger set)


def fit_probe(encoder, rows, firsts, tags, labels: list[str], batch_size: int, pad_id: int, precision: str, seed: int):
    """A logistic regression from word vectors to tags, on at most PROBE_WORDS seeded training words of at most
    PROBE_SENTENCES sentences. Only the sentences that hold a drawn word are read and only those words' vectors
    kept: a million-sentence file costs the probe what a ten-thousand-sentence one does."""
    from sklearn.linear_model import LogisticRegression

    sizes = getattr(firsts, "lengths", None)
    sizes = np.fromiter(map(len, firsts), np.int64, len(firsts)) if sizes is None else np.asarray(sizes)
    among = np.arange(len(sizes))
    if len(among) > PROBE_SENTENCES:
        among = np.sort(np.random.default_rng(seed).permutation(len(among))[:PROBE_SENTENCES])
        log.info(f"tag probe: words drawn from {PROBE_SENTENCES:,} of {len(sizes):,} training sentences")
    sizes, total = sizes[among], int(sizes[among].sum())
    pick = np.random.default_rng(seed).choice(total, min(PROBE_WORDS, total), replace=False)
    ordered = np.sort(pick)
    sentence = np.searchsorted(np.cumsum(sizes), ordered, side="right")  # each drawn word's sentence
    word = ordered - (np.cumsum(sizes) - sizes)[sentence]  # and its place in it
    sentence, starts = np.unique(sentence, return_index=True)
    read, keep = among[sentence], np.split(word, starts[1:])
    index = {label: i for i, label in enumerate(labels)}
    pick_rows = lambda column: [column[int(i)] for i in read]  # noqa: E731
    vectors = word_features(encoder, pick_rows(rows), pick_rows(firsts), batch_size, pad_id, precision, keep)
    y = np.asarray([index[row[k]] for row, ks in zip(pick_rows(tags), keep) for k in ks])
    back = np.searchsorted(ordered, pick)  # the draw's own order, as the probe was always fit
    return LogisticRegression(max_iter=1000, random_state=seed).fit(np.concatenate(vectors)[back], y[back])


def head_numbers(labels: list[str], weight: np.ndarray, bias: np.ndarray) -> dict:
    """A tag head as base_head.json keeps it (plain numbers; load_base_predictor reads it back)."""
    return {"labels": labels, "coef": weight.tolist(), "intercept": bias.tolist()}


def probe_head(probe, n_labels: int) -> tuple[np.ndarray, np.ndarray]:
    """The probe as a softmax head over all `n_labels` tags: scikit-learn keeps one row for two classes, and
    a tag missing from the probe's sample gets no weights and a bias under every other, so it starts unpredicted."""
    coef, intercept = probe.coef_, probe.intercept_
    if len(probe.classes_) == 2:  # softmax over (-z/2, z/2) == sigmoid(z)
        coef, intercept = np.stack([-coef[0], coef[0]]) / 2, np.array([-intercept[0], intercept[0]]) / 2
    weight, bias = np.zeros((n_labels, coef.shape[1])), np.full(n_labels, intercept.min() - 10.0)
    weight[probe.classes_], bias[probe.classes_] = coef, intercept
    return weight, bias


def entities(words: list[tuple[str, int, int]], tags: list[str], probs: np.ndarray, text: str) -> list[dict]:
    """IOB2 tags of words -> entities with type, text, character offsets and mean score of their words."""
    found, current = [], None
    for (_, start, end), tag, p in zip(words, tags, probs):
        kind = tag[2:] if tag != "O" else None
        if current and (tag.startswith("B-") or kind != current["type"]):
            found.append(current)
            current = None
        if kind and (current is None):
            current = {"type": kind, "start": start, "end": end, "scores": [float(p.max())]}
        elif kind:
            current["end"] = end
            current["scores"].append(float(p.max()))
    if current:
        found.append(current)
    return [
        {
            "type": e["type"],
            "text": text[e["start"] : e["end"]],
            "start": e["start"],
            "end": e["end"],
            "score": round(float(np.mean(e["scores"])), 4),
        }
        for e in found
    ]


class TokenPredictor:
    """A finished token-classification run: `predict(texts)` -> entities per text (type, text, start, end, score);
    `predict_tags(word lists)` -> IOB2 tags; `evaluate(file)` -> entity F1."""

    def __init__(
        self,
        model,
        tokenizer,
        max_length: int = 256,
        batch_size: int = 64,
        precision: str = "auto",
        columns=None,
        data=None,
    ):
        self.model, self.tokenizer, self.data = (
            model.eval(),
            tokenizer,
            data,
        )  # data: the run's data section (column names)
        self.columns = columns or {"text": "text", "label": "tags", "pair": None}
        self.labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
        self.max_length, self.batch_size, self.precision = max_length, batch_size, resolve_precision(precision)

    def _scores(self, sentences: list[list[str]]) -> list[np.ndarray]:
        return sentence_scores(
            self.model, self.tokenizer, sentences, self.labels, self.max_length, self.batch_size, self.precision
        )

    def predict_tags(self, sentences: list[list[str]]) -> list[list[str]]:
        return tags_of(self._scores(sentences), self.labels)

    @one_or_many
    def predict(self, texts: list[str]) -> list[list[dict]]:
        from ..data.tokens import words_with_offsets

        if not texts:
            return []
        words = [words_with_offsets(t) for t in texts]
        scores = self._scores([[w for w, _, _ in ws] or [""] for ws in words])
        return [
            entities(ws, tags, p, text) for ws, tags, p, text in zip(words, tags_of(scores, self.labels), scores, texts)
        ]

    def annotate(self, texts: list[str], pairs=None) -> dict[str, list]:
        import json

        return {"entities": [json.dumps(found, ensure_ascii=False) for found in self.predict(texts)]}

    def evaluate(self, path: str | Path, text_column: str | None = None, label_column: str | None = None) -> dict:
        from ..data.token_files import read_tagged

        split = read_tagged(str(path), self.data, "--data")
        return ner_metrics(split.tags, self.predict_tags(split.tokens))
