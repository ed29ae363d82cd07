"""Preference losses over (prompt, chosen, rejected) pairs: DPO and ORPO, as TRL defines them.

A pair row holds the chosen conversation (`input_ids`, `labels`: the loss positions are the answer's) and the
rejected one (`rejected_*`); DPO rows also carry the reference model's summed answer log-probabilities
(`ref_chosen`, `ref_rejected`), computed once before training. Both answers of a batch go through the model in one
forward pass, and only answer positions are projected to the vocabulary (as causal_lm_loss does for SFT).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ...engine.batching import collate
from .formatting import encode_sample
from .generate import EVAL_CHUNK, _causal_lm, _token_bounded, _wrapped, with_packing_mask

PAIR_KEYS = ("input_ids", "attention_mask", "labels")


class PairRows(list):
    """Pair rows; `lengths` (what the loop groups batches by and the memory fit sizes them by) counts both
    answers' padded tokens: a pair row trains two sequences."""

    @property
    def lengths(self) -> np.ndarray:
        return np.array([2 * max(len(r["input_ids"]), len(r["rejected_input_ids"])) for r in self], dtype=np.int64)


def encode_pair(tokenizer, prompt: list[dict], chosen: str, rejected: str, max_length: int) -> tuple[dict, bool, bool]:
    """(row, cut: either side was cut at max_length, learnable: both sides keep an answer token). A pair over
    max_length has its prompt shortened as the longer side needs, so both sides answer the same prompt."""
    sides = [[*prompt, {"role": "assistant", "content": answer}] for answer in (chosen, rejected)]
    good, bad = (encode_sample(tokenizer, side, 10**9, "responses")[0] for side in sides)
    longest = max(len(good["input_ids"]), len(bad["input_ids"]))
    if longest > max_length:
        good, bad = (encode_sample(tokenizer, side, max_length, "responses", cut_as=longest)[0] for side in sides)
    learnable = all(any(t != -100 for t in side["labels"][1:]) for side in (good, bad))
    return {**good, **{f"rejected_{k}": bad[k] for k in PAIR_KEYS}}, longest > max_length, learnable


def _both(batch: dict) -> dict:
    """Chosen and rejected stacked into one batch (chosen first), padded to one width."""
    width = max(batch["input_ids"].shape[1], batch["rejected_input_ids"].shape[1])
    fills = {"input_ids": 0, "attention_mask": 0, "labels": -100}
    return {
        k: torch.cat(
            [F.pad(batch[p + k], (0, width - batch[p + k].shape[1]), value=fills[k]) for p in ("", "rejected_")]
        )
        for k in PAIR_KEYS
    }


def sequence_logps(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed answer-token log-probabilities, answer tokens) per sequence of `batch` (B rows of ids and labels)."""
    core = _causal_lm(model)
    inputs = with_packing_mask({k: v for k, v in batch.items() if k in ("input_ids", "attention_mask")}, core)
    decoder, head = getattr(core, "get_decoder", lambda: None)(), core.get_output_embeddings()
    targets = batch["labels"][:, 1:]
    keep = targets != -100
    if decoder is None or head is None or _wrapped(model):  # a data-parallel wrapper's forward must run
        picked_logits = model(**inputs, use_cache=False).logits[:, :-1][keep]
        token_logps = -F.cross_entropy(picked_logits.float(), targets[keep], reduction="none")
    else:
        picked = decoder(**inputs, use_cache=False).last_hidden_state[:, :-1][keep]
        step = len(picked) if torch.is_grad_enabled() else EVAL_CHUNK  # evaluation: vocabulary logits a chunk at a time
        token_logps = torch.cat(
            [
                -F.cross_entropy(head(picked[i : i + step]).float(), targets[keep][i : i + step], reduction="none")
                for i in range(0, len(picked), step)
            ]
        )
    rows = keep.nonzero()[:, 0]
    sums = torch.zeros(len(targets), dtype=token_logps.dtype, device=token_logps.device).index_add(0, rows, token_logps)
    return sums, keep.sum(1)


def pair_logps(model, batch: dict) -> tuple[torch.Tensor, ...]:
    """(chosen sums, rejected sums, chosen tokens, rejected tokens): both answers in one forward pass."""
    sums, counts = sequence_logps(model, _both(batch))
    n = len(batch["input_ids"])
    return sums[:n], sums[n:], counts[:n], counts[n:]


def preference_loss(loss: str, beta: float, batch: dict, logps: tuple) -> tuple[torch.Tensor, dict]:
    """(mean loss, per-pair chosen and rejected rewards) for `loss` dpo or orpo, TRL's definitions."""
    chosen, rejected, n_chosen, n_rejected = logps
    if loss == "dpo":
        good = beta * (chosen - batch["ref_chosen"])
        bad = beta * (rejected - batch["ref_rejected"])
        return -F.logsigmoid(good - bad).mean(), {"chosen": good.detach(), "rejected": bad.detach()}
    # orpo: mean token log-probabilities; log-odds log(p / (1 - p)) with 1 - p from expm1, safe as p nears 1
    mean_good, mean_bad = chosen / n_chosen.clamp(min=1), rejected / n_rejected.clamp(min=1)
    odds = lambda lp: lp - torch.log(-torch.expm1(lp.clamp(max=-1e-6)))  # noqa: E731
    ratio = F.logsigmoid(odds(mean_good) - odds(mean_bad))
    nll = -chosen.sum() / n_chosen.sum().clamp(min=1)  # SFT on the chosen answers, token-weighted
    rewards = {"chosen": beta * mean_good.detach(), "rejected": beta * mean_bad.detach()}
    return nll - beta * ratio.mean(), rewards


def training_loss(loss: str, beta: float):
    """The loop's compute_loss for this preference loss."""
    return lambda model, batch: preference_loss(loss, beta, batch, pair_logps(model, batch))[0]


@torch.inference_mode()
def reference_logps(model, rows: list[dict], batch_size: int, pad_id: int) -> None:
    """Fill each row's ref_chosen / ref_rejected with the model's summed answer log-probabilities (DPO's
    reference: the model before training, scored once rather than held as a second copy)."""
    model.eval()
    device = next(model.parameters()).device
    widest = _widest(rows)
    for chunk in _token_bounded(_shortest_first(widest), widest, batch_size):
        batch = _batch([rows[i] for i in chunk], pad_id, device)
        chosen, rejected, _, _ = pair_logps(model, batch)
        for i, c, r in zip(chunk, chosen.tolist(), rejected.tolist()):
            rows[i]["ref_chosen"], rows[i]["ref_rejected"] = c, r


@torch.inference_mode()
def pair_metrics(model, rows: list[dict], batch_size: int, pad_id: int, loss: str, beta: float) -> dict:
    """On held-out pairs: the preference loss; reward accuracy and margin as TRL reports them (the share of pairs
    whose chosen answer gets the higher reward, and the mean reward gap); and preference accuracy, the share whose
    chosen answer has the higher mean token log-probability (what the model itself prefers; defined for the base
    model too, whose DPO rewards are all zero)."""
    model.eval()
    device = next(model.parameters()).device
    total, right, preferred, margins = 0.0, 0, 0, 0.0
    widest = _widest(rows)
    for chunk in _token_bounded(_shortest_first(widest), widest, batch_size):
        batch = _batch([rows[i] for i in chunk], pad_id, device)
        logps = pair_logps(model, batch)
        value, rewards = preference_loss(loss, beta, batch, logps)
        total += float(value) * len(chunk)
        right += int((rewards["chosen"] > rewards["rejected"]).sum())
        margins += float((rewards["chosen"] - rewards["rejected"]).sum())
        chosen, rejected, n_chosen, n_rejected = logps
        preferred += int((chosen / n_chosen.clamp(min=1) > rejected / n_rejected.clamp(min=1)).sum())
    n = max(len(rows), 1)
    return {
        "pair_loss": total / n,
        "reward_accuracy": right / n,
        "reward_margin": margins / n,
        "preference_accuracy": preferred / n,
    }


def _widest(rows: list[dict]) -> list[dict]:
    """Stand-ins whose input_ids length is the wider side of each pair (what _token_bounded sizes batches by)."""
    return [{"input_ids": range(max(len(r["input_ids"]), len(r["rejected_input_ids"])))} for r in rows]


def _shortest_first(rows: list[dict]) -> list[int]:
    return sorted(range(len(rows)), key=lambda i: len(rows[i]["input_ids"]))


def _batch(rows: list[dict], pad_id: int, device) -> dict:
    return {k: v.to(device) for k, v in collate(rows, pad_id).items()}
