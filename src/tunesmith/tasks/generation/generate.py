"""Batched generation from chat prompts, and the loss a causal LM is trained and validated with."""

from __future__ import annotations

import logging
import math

import torch

from ...engine.batching import collate
from ...log import ROOT
from .formatting import packed_attention_mask, render, stop_token_ids


def split_prompt(messages: list[dict]) -> tuple[list[dict], str]:
    """A conversation -> (everything before the last assistant turn, that turn's text as the reference)."""
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    return messages[:last], messages[last]["content"]


def as_messages(prompt) -> list[dict]:
    """A plain string prompt becomes one user turn; message lists pass through."""
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)


@torch.inference_mode()
def generate(
    model,
    tokenizer,
    prompts: list,
    max_new_tokens: int = 256,
    batch_size: int = 16,
    temperature: float = 0.0,
    top_p: float = 1.0,
    streamer=None,
    decoding=None,
) -> list[str]:
    """Answers to chat prompts (strings or message lists), greedy unless temperature > 0; `decoding`: the
    recipe's DecodingSection (repetition penalty, n-gram block, stop strings, beams), None = none of them."""
    texts = [render(tokenizer, as_messages(p), add_generation_prompt=True) for p in prompts]
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    ids = _fit_context(ids, getattr(model.config, "max_position_embeddings", None), max_new_tokens)
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # similar lengths share a batch: less padding
    answers: list[str] = [""] * len(ids)
    beams = beam_settings(decoding)
    # each prompt holds num_beams sequences (and their caches): fewer prompts per batch, the same memory
    batch_size = max(1, batch_size // beams.get("num_beams", 1))
    model.eval()
    report = _Answered(len(order), batch_size)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        enc = {k: v.to(model.device) for k, v in _left_padded([ids[i] for i in idx], tokenizer.pad_token_id).items()}
        out = model.generate(
            **enc,
            max_new_tokens=max_new_tokens,
            eos_token_id=stop_token_ids(tokenizer),
            pad_token_id=tokenizer.pad_token_id,
            streamer=streamer,
            **_sampling(temperature, top_p),
            **penalties(decoding),
            **beams,
            **_stop_strings(decoding, tokenizer),
        )
        new = out[:, enc["input_ids"].shape[1] :]
        for i, tokens in zip(idx, new):
            text = tokenizer.decode(tokens, skip_special_tokens=True)
            answers[i] = cut_at_stop(text, list(decoding.stop) if decoding else [])[0].strip()
        report(start + len(idx))
    return answers


class _Answered:
    """A log line at every tenth of the prompts answered, when they take several batches: on a CPU a file of
    prompts or a run's evaluation can take minutes, and nothing else says how far it got."""

    def __init__(self, total: int, batch_size: int):
        self.total, self.next = total, max(total // 10, 1) if total > batch_size else total + 1

    def __call__(self, done: int) -> None:
        if done >= self.next:
            logging.getLogger(f"{ROOT}.progress").info(f"answered {done:,} of {self.total:,} prompts")
            self.next = done + max(self.total // 10, 1)


def penalties(decoding) -> dict:
    """model.generate's arguments for the decoding section's penalties; the model's own defaults when off."""
    if decoding is None:
        return {}
    out = {}
    if decoding.repetition_penalty != 1.0:
        out["repetition_penalty"] = decoding.repetition_penalty
    if decoding.no_repeat_ngram_size:
        out["no_repeat_ngram_size"] = decoding.no_repeat_ngram_size
    return out


def beam_settings(decoding) -> dict:
    """model.generate's beam-search arguments; {} for greedy or sampling (one candidate per step)."""
    if decoding is None or decoding.num_beams == 1:
        return {}
    return {"num_beams": decoding.num_beams, "length_penalty": decoding.length_penalty}


def _stop_strings(decoding, tokenizer) -> dict:
    """Stop strings end a row's generation early (each row on its own); the text is cut before them afterwards,
    since generation stops only once the whole string has been written."""
    if decoding is None or not decoding.stop:
        return {}
    return {"stop_strings": list(decoding.stop), "tokenizer": tokenizer}


def cut_at_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    """(text before the first stop string, whether one was found)."""
    hits = [text.index(s) for s in stops if s and s in text]
    return (text[: min(hits)], True) if hits else (text, False)


def _fit_context(ids: list[list[int]], context: int | None, max_new_tokens: int) -> list[list[int]]:
    """Prompts longer than the model's context (less room for the answer) keep their end, where the question
    is: one huge prompt must not make every answer fail (its attention matrix alone can need hundreds of GB)."""
    if not context:
        return ids
    room = max(context - max_new_tokens, context // 2)
    long = [i for i, row in enumerate(ids) if len(row) > room]
    if long:
        logging.getLogger(__name__).warning(
            f"{len(long)} prompt(s) longer than the model's context ({context} tokens, "
            f"{max_new_tokens} kept for the answer) were cut to their last {room} tokens (the longest had "
            f"{max(len(ids[i]) for i in long):,})."
        )
    return [row[-room:] if len(row) > room else row for row in ids]


def _left_padded(rows: list[list[int]], pad_id: int) -> dict:
    """Decoder prompts must end where generation starts: pad on the left."""
    width = max(len(r) for r in rows)
    return {
        "input_ids": torch.tensor([[pad_id] * (width - len(r)) + r for r in rows], dtype=torch.long),
        "attention_mask": torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], dtype=torch.long),
    }


def _sampling(temperature: float, top_p: float) -> dict:
    if temperature > 0:
        return {"do_sample": True, "temperature": temperature, "top_p": top_p}
    # greedy; None overrides sampling defaults in the model's generation_config (no warnings)
    return {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}


def causal_lm_loss(model, batch: dict) -> torch.Tensor:
    """Mean next-token loss over labeled positions, projecting only those positions to the vocabulary.

    The LM head (vocabulary x hidden) is a fifth of a small model's compute; prompts and padding
    carry no loss, so skipping their logits is free speed. Falls back to the model's own loss.
    """
    labels = batch["labels"]
    core = _causal_lm(model)
    inputs = with_packing_mask({k: v for k, v in batch.items() if k != "labels"}, core)
    decoder, head = getattr(core, "get_decoder", lambda: None)(), core.get_output_embeddings()
    # a data-parallel wrapper's own forward must run (it readies the gradient all-reduce; FSDP gathers the shards):
    # the model is called whole, not its decoder and head one by one
    whole = _wrapped(model) or getattr(core.config, "final_logit_softcapping", None)
    if decoder is None or head is None or whole:
        return model(**inputs, labels=labels, use_cache=False).loss
    hidden = decoder(**inputs, use_cache=False).last_hidden_state
    targets = labels[:, 1:]
    keep = targets != -100
    if (
        not torch.is_grad_enabled()
    ):  # evaluation: vocabulary-wide logits a chunk at a time (64 x 1,024 tokens would be GBs)
        picked, wanted = hidden[:, :-1][keep], targets[keep]
        total = sum(
            torch.nn.functional.cross_entropy(
                head(picked[i : i + EVAL_CHUNK]).float(), wanted[i : i + EVAL_CHUNK], reduction="sum"
            )
            for i in range(0, len(wanted), EVAL_CHUNK)
        )
        return total / max(len(wanted), 1)
    logits = head(hidden[:, :-1][keep]).float()
    return torch.nn.functional.cross_entropy(logits, targets[keep])


@torch.no_grad()
def answer_token_accuracy(model, rows: list[dict], batch_size: int, pad_id: int) -> float:
    """Share of labelled (answer) tokens the model ranks first given the reference's earlier tokens: a score in
    [0, 1] with no generation (so cheap and free of sampling noise), higher is better. Continual updates of
    generation runs compare versions by it, on held-out corrections and on the original test set."""
    model.eval()
    core = _causal_lm(model)
    decoder, head = getattr(core, "get_decoder", lambda: None)(), core.get_output_embeddings()
    device = next(model.parameters()).device
    right = total = 0
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]["input_ids"]))
    for chunk in _token_bounded(order, rows, batch_size):
        batch = {k: v.to(device) for k, v in collate([rows[i] for i in chunk], pad_id).items()}
        inputs = with_packing_mask({k: v for k, v in batch.items() if k != "labels"}, core)
        targets = batch["labels"][:, 1:]
        keep = targets != -100
        if not keep.any():
            continue
        if decoder is None or head is None:
            guess = model(**inputs, use_cache=False).logits[:, :-1][keep].argmax(-1)
        else:
            picked = decoder(**inputs, use_cache=False).last_hidden_state[:, :-1][keep]
            guess = torch.cat([head(picked[i : i + EVAL_CHUNK]).argmax(-1) for i in range(0, len(picked), EVAL_CHUNK)])
        right += int((guess == targets[keep]).sum())
        total += int(keep.sum())
    return right / total if total else float("nan")


def with_packing_mask(inputs: dict, core) -> dict:
    """Packed rows come with position ids and no attention mask: give them the block-diagonal one."""
    if "position_ids" in inputs and "attention_mask" not in inputs:
        impl = getattr(core.config, "_attn_implementation", "eager")
        dtype = core.get_input_embeddings().weight.dtype
        inputs = {**inputs, "attention_mask": packed_attention_mask(inputs["position_ids"], impl, dtype)}
    return inputs


EVAL_CHUNK = 512  # labelled positions projected to the vocabulary at once in evaluation
EVAL_TOKENS = 16384  # padded tokens per evaluation batch: long rows come in fewer per batch


def _token_bounded(order: list[int], rows: list[dict], batch_size: int):
    """Length-sorted batches of at most batch_size rows and EVAL_TOKENS padded tokens."""
    batch: list[int] = []
    for i in order:
        if batch and (len(batch) >= batch_size or (len(batch) + 1) * len(rows[i]["input_ids"]) > EVAL_TOKENS):
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


def _wrapped(model) -> bool:
    """Whether `model` is a DDP / FSDP / DeepSpeed wrapper (each keeps the model it wraps as `.module`)."""
    return isinstance(getattr(model, "module", None), torch.nn.Module)


def _causal_lm(model):
    model = model.module if _wrapped(model) else model
    return model.get_base_model() if hasattr(model, "get_base_model") else model


@torch.inference_mode()
def validation_loss(
    model, rows: list[dict], batch_size: int, pad_id: int, loss_fn=causal_lm_loss, shifted: bool = True
) -> dict:
    """Token-weighted mean loss and perplexity over labeled tokens. `shifted`: position i is scored
    on token i+1 (causal LM); masked-LM losses score the labeled positions themselves."""
    model.eval()
    total, count = 0.0, 0
    device = next(model.parameters()).device
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]["input_ids"]))
    cap = len(rows[order[-1]]["input_ids"]) if rows else None  # rounded widths, never past the longest row
    for chunk in _token_bounded(order, rows, batch_size):
        batch = collate([rows[i] for i in chunk], pad_id, cap=cap)
        batch = {k: v.to(device) for k, v in batch.items()}
        n = int(((batch["labels"][:, 1:] if shifted else batch["labels"]) != -100).sum())
        if n:
            total += float(loss_fn(model, batch)) * n
            count += n
    loss = total / max(count, 1)
    return {"loss": loss, "perplexity": math.exp(min(loss, 50))}
