"""The data check for generation data: layout, duplicates, prompt overlap, chat-template round trip,
token lengths, and the samples whose labels would be fully masked (they teach nothing)."""

from __future__ import annotations

import numpy as np

from ..data.chat_table import canonical_texts
from ..errors import TunesmithError
from .common import Report, length_stats, length_warning, normalise, read_splits

ROUND_TRIP_SAMPLES = 200  # rendering is slow-ish; the template behaves the same on every sample of one layout
# lengths and masking are measured on a seeded sample of this many conversations: each is rendered through the
# chat template and tokenized alone (about 1.4 ms on a CPU), so 20,000 took 28 s of every large run's check
CHAT_LENGTH_SAMPLE = 2_000


def check_generation(recipe, name: str, tokenizer, report: Report) -> None:
    from ..data.conversations import read_conversations

    data = recipe.data
    convs = read_splits(data, name, report, lambda path, split: read_conversations(path, data, f"data.{split}"))
    entry: dict = {
        "name": name,
        "task": "generation",
        "splits": {s: {"file": c.source, "format": c.format, "rows": len(c)} for s, c in convs.items()},
    }
    report.datasets.append(entry)
    if "train" not in convs:
        return
    samples = convs["train"].samples
    if convs["train"].unread:
        report.warnings.append(f"{name}: {convs['train'].describe()}.")
    _duplicates(entry, samples, convs, name, report)
    samples = _answer_support(entry, convs["train"], recipe.data.min_answer_support, name, report)
    if tokenizer is None:
        return
    if not _chat_template(tokenizer, recipe, name, report):
        return
    if convs["train"].format != "text":
        _round_trip(entry, tokenizer, samples, name, report)
    _masking(entry, tokenizer, samples, recipe, name, report)


def _answer_support(entry: dict, train, least: float | None, name: str, report: Report) -> list:
    """How many training rows data.min_answer_support will leave out, before a run does; the rows it keeps, which
    the lengths are then measured on (what training reads)."""
    samples = train.samples
    if not least:
        return samples
    from ..data.conversations import supported_samples
    from ..errors import TunesmithError

    try:
        kept = supported_samples(train, least)
    except TunesmithError as err:
        report.errors.append(f"{name}: {err}")
        return samples
    entry["answer_support"] = {"least": least, "rows": len(samples), "left_out": len(samples) - len(kept)}
    report.warnings.append(
        f"{name}: data.min_answer_support={least} leaves out {len(samples) - len(kept)} of {len(samples)} training "
        "rows (their answers' words mostly not in their prompts)."
    )
    return kept


def check_preference(recipe, name: str, tokenizer, report: Report) -> None:
    """Preference pairs: what the generation check reads, on the chosen conversations; lengths and masking on the
    rejected ones too (a pair trains both)."""
    from ..data.conversations import Conversations
    from ..data.preference import read_pairs

    data = recipe.data
    read = read_splits(data, name, report, lambda path, split: read_pairs(path, data, f"data.{split}"))

    def side(pairs, answer: str) -> Conversations:
        samples = [[*p.prompt, {"role": "assistant", "content": getattr(p, answer)}] for p in pairs.pairs]
        return Conversations(samples, "messages", pairs.source)

    convs = {split: side(pairs, "chosen") for split, pairs in read.items()}
    entry: dict = {
        "name": name,
        "task": "generation",
        "splits": {s: {"file": c.source, "format": "preference pairs", "rows": len(c)} for s, c in convs.items()},
    }
    report.datasets.append(entry)
    if "train" not in convs:
        return
    _duplicates(entry, convs["train"].samples, convs, name, report)
    if tokenizer is None:
        return
    if not _chat_template(tokenizer, recipe, name, report):
        return
    _round_trip(entry, tokenizer, convs["train"].samples, name, report)
    _masking(entry, tokenizer, convs["train"].samples, recipe, name, report)
    rejected = side(read["train"], "rejected").samples
    _masking(entry.setdefault("rejected", {}), tokenizer, rejected, recipe, f"{name} (rejected answers)", report)


def _prompt(sample: list[dict]) -> str:
    return "\n".join(m["content"] for m in sample if m["role"] not in ("assistant",))


def _duplicates(entry, samples, convs, name, report) -> None:
    """Duplicate training conversations and held-out prompts seen in training, compared by 64-bit hashes (a
    large file's texts are not held at once)."""
    keys = np.fromiter(map(hash, canonical_texts(samples)), dtype=np.int64, count=len(samples))
    entry["duplicates"] = len(keys) - len(np.unique(keys))
    if entry["duplicates"]:
        report.warnings.append(f"{name}: {entry['duplicates']} duplicate training conversation(s).")
    exact, loose = _prompt_hashes(samples)
    entry["overlap_with_train"] = {}
    for split, conv in convs.items():
        if split == "train":
            continue
        prompts, normalised = _prompt_hashes(conv.samples)
        same, similar = int(np.isin(prompts, exact).sum()), int(np.isin(normalised, loose).sum())
        entry["overlap_with_train"][split] = {"exact": same, "normalised": similar, "rows": len(prompts)}
        if similar:
            report.warnings.append(
                f"{name}: {similar} of {len(prompts)} {split} prompt(s) also appear in training data "
                f"({same} exactly); scores on them overstate what the model learned."
            )


def _prompt_hashes(samples) -> tuple[np.ndarray, np.ndarray]:
    """(a hash of each sample's prompt, of it with case and spacing normalised)."""
    pairs = ((hash(p), hash(normalise(p))) for p in map(_prompt, samples))
    both = np.fromiter(pairs, dtype=np.dtype((np.int64, 2)), count=len(samples))
    return both[:, 0], both[:, 1]


def _round_trip(entry, tokenizer, samples, name, report) -> None:
    """Every message's text must come out of the rendered template, in order: templates that drop a
    system message or reorder turns would otherwise train on something else than the data."""
    from ..tasks.generation.formatting import render

    checked = samples[:ROUND_TRIP_SAMPLES]
    lost = 0
    for sample in checked:
        try:
            text = render(tokenizer, sample)
        except TunesmithError as err:
            report.errors.append(f"{name}: {err}")
            return
        pos = 0
        for message in sample:
            found = text.find(message["content"].strip(), pos)
            if found < 0:
                lost += 1
                break
            pos = found
    entry["template_round_trip"] = {"checked": len(checked), "lost_text": lost}
    if lost:
        report.warnings.append(
            f"{name}: in {lost} of {len(checked)} conversations the chat template drops or reorders "
            "message text (often a system message the template does not support)."
        )


def _masking(entry, tokenizer, samples, recipe, name, report) -> None:
    from ..tasks.generation.formatting import auto_length, encode_sample

    loss_on = getattr(recipe.method, "loss_on", "responses")  # preference pairs learn from the answers
    try:
        max_length = auto_length(recipe, tokenizer, samples)[0].train.max_length  # what training will use
    except TunesmithError as err:
        report.errors.append(f"{name}: {err}")
        return
    picked = samples
    if len(samples) > CHAT_LENGTH_SAMPLE:
        rng = np.random.default_rng(recipe.train.seed)
        picked = [samples[i] for i in rng.choice(len(samples), CHAT_LENGTH_SAMPLE, replace=False)]
    lengths, masked = [], 0
    for sample in picked:
        try:
            row, _ = encode_sample(tokenizer, sample, 10**9, loss_on)  # uncut: the true length
        except TunesmithError as err:
            report.errors.append(f"{name}: {err}")
            return
        lengths.append(len(row["input_ids"]))
        if len(row["input_ids"]) > max_length:  # cut as training cuts it: the prompt gives way first
            row, _ = encode_sample(tokenizer, sample, max_length, loss_on)
        masked += all(label == -100 for label in row["labels"][1:])
    entry["lengths"] = length_stats(np.array(lengths), max_length, len(picked) < len(samples))
    entry["fully_masked"] = masked
    length_warning(entry["lengths"], name, report)
    if masked == len(picked):
        report.errors.append(
            f"{name}: all {masked} training samples have no response token within train.max_length="
            f"{max_length}: nothing to learn. Raise train.max_length, check the response column, or set "
            "method.loss_on=all."
        )
    elif masked:
        report.warnings.append(
            f"{name}: {masked} of {len(picked)} training samples have no response token within "
            f"train.max_length={max_length}; they are dropped."
        )


def _chat_template(tokenizer, recipe, name: str, report: Report) -> bool:
    """Give the tokenizer the template training will render with (model.chat_template); False, with the error in
    the report, where that template cannot be used."""
    from ..tasks.generation.formatting import ensure_chat_template

    try:
        if ensure_chat_template(tokenizer, recipe.model.chat_template) and recipe.model.chat_template == "auto":
            report.warnings.append(f"{name}: the model has no chat template; tunesmith's default one will be used.")
    except TunesmithError as err:
        report.errors.append(f"{name}: {err}")
        return False
    return True
