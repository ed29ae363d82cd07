"""`auto` training settings: epochs, batch size and learning rate from the data, and a micro-batch that fits memory.

Most users never set a hyperparameter, so the defaults decide their result. The rules (each explicit recipe value
wins over them):
- batch: 32 examples per step; 16 under 3,200 training examples, 8 under 400 (small sets need more steps).
- epochs: 3, raised until the run has MIN_STEPS optimizer steps (at most MAX_EPOCHS; early stopping guards
  against overfitting), lowered when 3 passes would exceed MAX_EXAMPLES (CPU time). Generation with free-text
  answers (scored by ROUGE-L, not exact match) is only raised until it has seen MIN_FREE_TEXT_EXAMPLES: an
  instruct model already writes, and more passes over a few hundred answers made its answers shorter
  (docs/why-defaults.md).
  Label-like answers still get MIN_STEPS: the model must learn a label vocabulary.
- batch order: free-text generation trains on plain shuffled batches, not length-grouped ones (TRL's and HF
  Trainer's default): grouped batches scored lower on free text (docs/why-defaults.md). Grouped batches hold
  similar examples (all short answers, or all long essays), so each of a small set's few steps pulls one way.
- lr: the method's rate for batch 32, scaled by sqrt(batch / 32) (Adam's square-root rule). LoRA on decoders
  starts from a rate by model size: small models need a higher one (docs/why-defaults.md).
- hint: supervised classification on an encoder with FEW_SHOT_HINT_PER_CLASS or fewer examples per class is pointed to
  `method: few_shot` (it did better on every 64- and 200-row sample measured); the method itself is kept.
- memory: the peak is estimated from the model's dimensions and the longest training row (calibrated on
  SmolLM2-135M LoRA, where a token of a training batch holds ~2.7 MB of activations in fp32); when the batch
  does not fit the budget, the micro-batch halves and gradient accumulation keeps the effective batch; decoders
  turn on activation checkpointing (about half the activations, ~30% more compute) first on a GPU, where batch
  size is speed, and last on a CPU. When one example does not fit, the run is refused before it starts.
  The budget: 70% of the memory available at start; on a CPU at most the model plus the activations 3 GB hold in
  fp32 (the same tokens under bf16: bigger micro-batches bought at most ~10% there)."""

from __future__ import annotations

import logging
import math
import os

from ..engine.batching import row_lengths
from ..engine.hardware import resolve_precision
from ..errors import TunesmithError

log = logging.getLogger(__name__)
MIN_STEPS = 250
MIN_FREE_TEXT_EXAMPLES = 300  # 3 passes over 100 answers; 20 brand-voice examples get 10 epochs
MAX_EPOCHS = 10
FEW_SHOT_HINT_PER_CLASS = 32  # at most: where few_shot was ahead on every seed measured (docs/why-defaults.md)
MAX_EXAMPLES = {"encoder": 100_000, "decoder": 20_000}
BUDGET_SHARE = 0.7  # of the memory available at start; the rest is for the OS, data and evaluation
CPU_ACTIVATIONS_MB = 3072
# Activations under bf16 autocast against fp32: SmolLM2-135M LoRA kept ~1.6 MB a token in bf16 (peak RSS from
# micro-batch 1 to 8 on support answers) against ~3 MB in fp32; norms and softmax stay fp32, so a bit over half.
HALF_ACTIVATIONS = 0.6
METHODS = ("supervised", "domain_adaptation")  # few_shot and continual keep their own budgets (pairs, experiences)


def lora_rate(params: float) -> float:
    """LoRA learning rate for a decoder of `params` parameters at batch 32."""
    return 1e-3 if params < 5e8 else 5e-4 if params < 3e9 else 2e-4


RESOLVED = ("epochs", "batch_size", "lr", "grad_accum", "gradient_checkpointing", "group_by_length")


def resolve(plan, saved: dict | None = None):
    """Fill the train settings the recipe left unset; shrink the micro-batch to fit memory. Returns the plan.

    `saved`: a resumed run's train section; it continues with the settings it started with, whatever the
    memory or the rules say today (its checkpoint's optimizer state and step count depend on them)."""
    recipe = plan.recipe = plan.recipe.model_copy(deep=True)  # seeds and stages reuse the caller's recipe
    cfg, given = recipe.train, set(recipe.train.model_fields_set)
    original = cfg.batch_size
    reasons = []
    if saved is not None:
        # a value left to auto (unset, None or "auto": a stage's recipe sets every field) takes what was chosen then
        keep = {
            k: saved[k]
            for k in RESOLVED
            if isinstance(saved, dict) and k in saved and (k not in given or getattr(cfg, k) in (None, "auto"))
        }
        try:  # the saved recipe is a file like any other: its values pass the schema before they are used
            checked = type(cfg).model_validate(keep)
        except ValueError:
            raise TunesmithError("--resume: the run's recipe.yaml has invalid train settings; it is damaged.") from None
        for key in keep:
            setattr(cfg, key, getattr(checked, key))
        plan.lr = cfg.lr or plan.lr
    else:
        reasons = plan.train_info.get("auto", []) + _choose(plan, cfg, given)  # prepare may have chosen max_length
    if cfg.packing and plan.loop_cfg is not None:  # packed rows per step scale with the batch
        per = plan.loop_cfg.batch_size / original
        plan.loop_cfg = plan.loop_cfg.model_copy(
            update={
                "batch_size": max(1, round(per * cfg.batch_size)),
                "grad_accum": cfg.grad_accum,
                "epochs": cfg.epochs,
                "gradient_checkpointing": cfg.gradient_checkpointing,
                "group_by_length": cfg.group_by_length,
            }
        )
    else:
        plan.loop_cfg = cfg
    for reason in reasons:
        log.info(f"auto: {reason}")
    plan.train_info["auto"] = reasons
    return plan


def _choose(plan, cfg, given: set) -> list[str]:
    dims = model_dims(plan.weights)
    n = (plan.info.get("data") or {}).get("train_samples") or len(plan.rows)
    labels = _n_labels(plan)
    reasons = []
    if plan.recipe.method.name in METHODS:
        if "batch_size" not in given:
            cfg.batch_size = 32 if n >= 3200 else 16 if n >= 400 else 8
        free_text = plan.task == "generation" and plan.info.get("generation_metric") == "rouge_l"
        if "epochs" not in given:
            cfg.epochs = choose_epochs(n, cfg.batch_size * cfg.grad_accum, plan.kind, free_text)
        if "lr" not in given and cfg.lr is None:
            base = (
                lora_rate(dims["params"]) if plan.kind == "decoder" and plan.info.get("tuning") == "lora" else plan.lr
            )
            plan.lr = cfg.lr = float(f"{base * math.sqrt(cfg.batch_size * cfg.grad_accum / 32):.3g}")
        chosen = [k for k in ("epochs", "batch_size", "lr") if k not in given]
        if chosen:
            reasons.append(
                f"{n:,} examples{f', {labels} labels' if labels else ''} -> "
                + ", ".join(f"{_name(k)} {getattr(cfg, k):g}" for k in chosen)
            )
        if plan.recipe.method.name == "supervised" and plan.kind == "encoder" and labels:  # measured on encoders only
            reasons += few_shot_hint(n, labels)
        if free_text and "group_by_length" not in given:
            cfg.group_by_length = False
            reasons.append("free-text answers -> plain shuffled batches (group_by_length false)")
    fit = fit_memory(plan, cfg, dims)
    return reasons + ([fit] if fit else [])


def choose_epochs(n: int, batch: int, kind: str, free_text: bool = False) -> float:
    steps = math.ceil(n / batch)
    if free_text and n * 3 < MIN_FREE_TEXT_EXAMPLES:
        return float(min(MAX_EPOCHS, math.ceil(MIN_FREE_TEXT_EXAMPLES / n)))
    if not free_text and steps * 3 < MIN_STEPS:
        return float(min(MAX_EPOCHS, math.ceil(MIN_STEPS / steps)))
    if n * 3 > MAX_EXAMPLES[kind]:
        return max(1.0, round(MAX_EXAMPLES[kind] / n * 2) / 2)  # whole or half passes
    return 3.0


def few_shot_hint(n: int, labels: int) -> list[str]:
    """A pointer to `method: few_shot` for sets with few examples per class, where it did better than supervised
    fine-tuning with these defaults (docs/why-defaults.md). Only a hint: the user's method is kept."""
    if n / labels > FEW_SHOT_HINT_PER_CLASS:
        return []
    return [
        f"{n / labels:.0f} examples per class: `method: few_shot` usually does better on a set this small "
        "(contrastive pairs, then a logistic head; docs/few-shot.md)"
    ]


def _n_labels(plan) -> int:
    """Single-label classes in the training data; 0 for other tasks (texts, label lists, scores)."""
    return len(set(plan.label_ids)) if plan.label_ids and isinstance(plan.label_ids[0], int) else 0


def _name(key: str) -> str:
    return {"batch_size": "batch", "epochs": "epochs", "lr": "lr"}[key]


def model_dims(weights: str) -> dict:
    from transformers import AutoConfig

    c = AutoConfig.from_pretrained(weights)
    c = getattr(c, "text_config", None) or c
    layers, hidden = c.num_hidden_layers, c.hidden_size
    inter = getattr(c, "intermediate_size", None) or 4 * hidden
    vocab = c.vocab_size
    kv = getattr(c, "num_key_value_heads", None) or c.num_attention_heads
    attn = hidden * hidden * 2 + 2 * hidden * (hidden * kv // c.num_attention_heads)
    params = vocab * hidden + layers * (attn + 3 * inter * hidden)
    return {"layers": layers, "hidden": hidden, "inter": inter, "vocab": vocab, "params": params}


def estimate_mb(
    dims: dict, tokens: int, trainable: float, decoder: bool, checkpointing: bool, half: bool = False
) -> float:
    """Peak training memory (MB) for a micro-batch of `tokens` tokens, fp32 weights and AdamW states; `half`: under
    bf16/fp16 autocast, whose matmul outputs (most of what backward keeps) take 2 bytes, not 4."""
    per_token = dims["layers"] * 4 * (16 * dims["hidden"] + 9 * dims["inter"])  # activations kept for backward
    if checkpointing:
        per_token /= 2
    if half:
        per_token *= HALF_ACTIVATIONS
    if decoder:
        per_token += 0.5 * 16 * dims["vocab"]  # logits, softmax and their gradient over labelled positions
    static = dims["params"] * 4 + trainable * 12  # weights; gradients and two Adam moments of what trains
    return (static + tokens * per_token) / 2**20


def available_mb() -> float:
    """Memory this run may use: free accelerator memory on a GPU, else the system's MemAvailable."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.mem_get_info()[0] / 2**20
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES") / 2**20


def fit_memory(plan, cfg, dims: dict) -> str | None:
    """Shrink the micro-batch (and turn on checkpointing for decoders) until the estimate fits; refuse if one
    example does not."""
    import torch

    gpu = torch.cuda.is_available()
    longest = cfg.max_length if cfg.packing else max(row_lengths(plan.rows), default=cfg.max_length)
    decoder = plan.kind == "decoder"
    trainable = dims["params"] * (0.02 if plan.info.get("tuning") == "lora" else 1.0)
    half = resolve_precision(cfg.precision) in ("bf16", "fp16")
    est = lambda micro, c: estimate_mb(dims, micro * longest, trainable, decoder, c, half)  # noqa: E731
    budget, source = memory_budget(cfg, est(0, False), gpu, HALF_ACTIVATIONS if half else 1.0)
    ckpt = cfg.gradient_checkpointing if isinstance(cfg.gradient_checkpointing, bool) else False
    may_checkpoint = decoder and cfg.gradient_checkpointing == "auto"
    micro = cfg.batch_size
    if gpu and may_checkpoint and est(micro, ckpt) > budget:
        ckpt = True  # on a GPU a big batch is speed: recompute activations (~30% more compute) before splitting it
    while micro > 1 and est(micro, ckpt) > budget:
        micro //= 2
    if may_checkpoint and not ckpt and est(micro, ckpt) > budget:
        ckpt = True  # on a CPU small micro-batches cost little, so checkpointing comes last
    cfg.gradient_checkpointing = ckpt
    plan.train_info["memory_estimate_mb"] = round(est(micro, ckpt))
    if est(micro, ckpt) > budget:
        raise TunesmithError(
            f"This run will not fit in memory: one example of {longest} tokens needs about "
            f"{est(1, ckpt) / 1024:.1f} GB "
            f"to train ({dims['params'] / 1e6:.0f}M parameters), and the budget is {budget / 1024:.1f} GB ({source}). "
            "Lower train.max_length, use method.tuning: lora, choose a smaller model, or raise train.memory_budget_gb."
        )
    if micro == cfg.batch_size:
        return (
            (
                f"memory: about {est(micro, ckpt) / 1024:.1f} GB "
                f"estimated{' with activation checkpointing' if ckpt else ''}, "
                f"budget {budget / 1024:.1f} GB ({source})"
            )
            if ckpt or cfg.memory_budget_gb
            else None
        )
    accum = math.ceil(cfg.batch_size / micro)
    message = (
        f"memory: batch {cfg.batch_size} of up to {longest} tokens would need about "
        f"{est(cfg.batch_size, False) / 1024:.1f} GB "
        f"(budget {budget / 1024:.1f} GB, {source}): micro-batch {micro} x {accum * cfg.grad_accum} accumulation steps"
        f"{', activation checkpointing on' if ckpt else ''} ({est(micro, ckpt) / 1024:.1f} GB), same effective batch"
    )
    cfg.batch_size, cfg.grad_accum = micro, accum * cfg.grad_accum
    return message


def memory_budget(cfg, static_mb: float, gpu: bool, activation_scale: float = 1.0) -> tuple[float, str]:
    """(MB, where it comes from). On a CPU a micro-batch holds at most the tokens whose activations take
    CPU_ACTIVATIONS_MB in fp32 (`activation_scale`: bf16 keeps the same tokens in less): past that a CPU step is
    no faster. Measured on SmolLM2 LoRA in bf16, rows of ~500 tokens: micro-batch 2, 4 and 8 ran 1.03, 1.07 and
    1.11x micro-batch 1 at +0, +1.0 and +2.8 GB peak. And a laptop has other work to do."""
    if cfg.memory_budget_gb:
        return cfg.memory_budget_gb * 1024, "train.memory_budget_gb"
    share = BUDGET_SHARE * available_mb()
    cap = CPU_ACTIVATIONS_MB * activation_scale
    if gpu or share <= static_mb + cap:
        return share, f"{BUDGET_SHARE:.0%} of the memory available now"
    return static_mb + cap, f"the model plus {cap / 1024:.1f} GB of activations on a CPU"
