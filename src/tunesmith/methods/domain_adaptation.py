"""Domain adaptation: continued pre-training on unlabeled domain text (DAPT) and the task's own texts (TAPT).

Gururangan et al. 2020 ("Don't Stop Pretraining") showed both help downstream tasks in a shifted
domain. Encoders continue their masked-LM objective, decoders their next-token objective, on text
packed into full blocks (no padding compute). Perplexity on held-out domain documents is measured
before and after, so the run shows whether the model really learned the domain.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import torch

from ..data.corpus import budget_documents, hold_out, pack_blocks, read_corpus
from ..engine.loop import Hooks, run_loop
from ..errors import TunesmithError
from ..models.loading import (
    apply_dropout,
    apply_lora,
    load_causal_lm,
    load_tokenizer,
    model_kind,
    model_spec,
    resolve_weights,
)
from ..models.registry import default_lr
from ..recipe import LoraSection
from ..runs import rundir as runs
from .base import Context, Plan, tuning_mode
from .vocab import add_words, candidate_words, extend_vocabulary

log = logging.getLogger(__name__)


class DomainAdaptation:
    """Continued pre-training on domain text: masked-LM (encoders) or next-token (decoders) loss, held-out
    perplexity before and after. `task_texts`: the target task's training texts for TAPT (a staged run
    passes the final stage's)."""

    def __init__(self, task_texts: list[str] | None = None):
        self.task_texts = task_texts

    def prepare(self, recipe) -> Plan:
        method, cfg = recipe.method, recipe.train
        weights, spec = resolve_weights(recipe.model.name), model_spec(recipe.model.name)
        kind = model_kind(weights, spec)
        objective = method.objective if method.objective != "auto" else ("mlm" if kind == "encoder" else "clm")
        docs = read_corpus(method.corpus, method.text_column, "method.corpus") if method.corpus else []
        from_corpus = len(docs)
        if method.task_texts:
            docs += self.task_texts if self.task_texts is not None else _recipe_task_texts(recipe)
        if len(docs) < 2:
            raise TunesmithError(
                "method.corpus (with method.task_texts) holds fewer than 2 documents; domain adaptation needs "
                "some text to train on and at least one document held out to measure perplexity. "
                "Separate documents in .txt files with a blank line."
            )
        train_docs, held_docs = hold_out(docs, method.heldout_fraction or 0.05, cfg.seed)
        # the data check counts method.corpus alone: say where the other documents come from
        log.info(
            f"corpus: {from_corpus} documents from method.corpus"
            + (f" + {len(docs) - from_corpus} task texts" if method.task_texts else "")
            + f"; {len(held_docs)} held out to measure perplexity"
        )
        tokenizer = load_tokenizer(weights)
        words = []
        if method.vocab_extension:  # before the text is tokenized: the new words must be whole tokens in it
            words = candidate_words(
                tokenizer, train_docs, method.vocab_extension, method.vocab_min_pieces, method.vocab_min_count
            )
            add_words(tokenizer, words)
        rows, corpus_stats = _training_rows(recipe, tokenizer, train_docs, objective)
        held = pack_blocks(tokenizer, held_docs, cfg.max_length, objective == "mlm")
        held = _rows(random.Random(cfg.seed).sample(held, min(len(held), method.heldout_max_blocks)), objective)
        loss_fn, eval_loss, eval_rows = _objective(objective, tokenizer, method.mlm_probability, cfg.seed, held)
        mode = tuning_mode(method, kind)
        return Plan(
            recipe,
            "domain_adaptation",
            tokenizer,
            weights,
            spec,
            kind,
            cfg.lr or default_lr(spec, kind, mode),
            rows,
            info={
                "objective": objective,
                "tuning": mode,
                "eval_set": "held-out domain text",
                "corpus": {**corpus_stats, "heldout_documents": len(held_docs), "heldout_blocks": len(held)},
            },
            warnings=None,
            extra={"words": words, "loss": loss_fn, "eval_loss": eval_loss, "eval_rows": eval_rows},
        )

    def build(self, plan: Plan, ctx: Context):
        model, plan.extra["fresh_head"] = _load_lm(plan.weights, plan.info["objective"])
        apply_dropout(model, plan.recipe.train)  # train.dropout / attention_dropout hold for every method
        added = extend_vocabulary(model, plan.tokenizer, plan.extra["words"])
        if plan.recipe.method.vocab_extension:
            log.info(
                f"vocabulary: added {len(added)} domain words" + (f", e.g. {', '.join(added[:8])}" if added else "")
            )
        plan.info["vocabulary"] = {"added": len(added), "words": added}
        return model

    def baseline(self, plan: Plan, ctx: Context, model) -> dict:
        base = self._heldout(plan, model)
        log.info(
            f"base: held-out loss {base['loss']:.4f}, perplexity {base['perplexity']:.2f} "
            f"({plan.info['corpus']['heldout_blocks']} blocks)"
        )
        return base

    def adapt(self, plan: Plan, ctx: Context, model):
        objective, method = plan.info["objective"], plan.recipe.method
        if plan.info["tuning"] == "lora":
            model = apply_lora(
                model, method.lora or LoraSection(), plan.spec, task_type="CAUSAL_LM" if objective == "clm" else None
            )
        if plan.extra["fresh_head"] and plan.info["tuning"] == "full" and method.head_warmup:
            _warm_up_head(
                model,
                ctx.accelerator,
                plan.rows,
                plan.recipe.train,
                plan.lr,
                self.hooks(plan, ctx),
                method.head_warmup,
                plan.pad_id,
                ctx.run_dir,
            )
        return model

    def hooks(self, plan: Plan, ctx: Context) -> Hooks:
        return Hooks(evaluate=lambda m: self._heldout(plan, m), compute_loss=plan.extra["loss"], default_metric="loss")

    def evaluate(self, plan: Plan, ctx: Context, model, result) -> dict:
        tuned = self._heldout(plan, model)
        log.info(f"tuned: held-out loss {tuned['loss']:.4f}, perplexity {tuned['perplexity']:.2f}")
        return tuned

    def save(self, plan: Plan, ctx: Context, model) -> None:
        save_lm(ctx.run_dir, model, plan.tokenizer)

    def report(self, plan: Plan, ctx: Context, metrics: dict) -> None:
        _write_report(ctx.run_dir, metrics)

    @staticmethod
    def load_predictor(run_dir: Path, columns: dict, **kwargs):
        raise TunesmithError(
            f"{run_dir} is a domain-adaptation run: its model/ is a language model adapted to your domain, "
            "not a classifier or a chat model. Use it as the next stage's start (a staged recipe), or as "
            f"model.name: {run_dir / runs.MODEL_DIR} in a new recipe."
        )

    @staticmethod
    def _heldout(plan: Plan, model) -> dict:
        return heldout_loss(
            model, plan.extra["eval_rows"], plan.recipe.eval.batch_size, plan.pad_id, plan.extra["eval_loss"]
        )


def _recipe_task_texts(recipe) -> list[str]:
    if recipe.data is None:
        raise TunesmithError("method.task_texts is on, but the recipe has no data section whose training texts to use.")
    from ..data.classification import read_split

    return read_split(recipe.data.train, recipe.data.text_column, None, role="data.train").texts


def _load_lm(weights: str, objective: str):
    """(model, whether its LM head is new): sentence-embedding checkpoints often ship without one."""
    if objective == "clm":
        return load_causal_lm(weights), False
    from transformers import AutoModelForMaskedLM
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # sentence-embedding checkpoints ship without the MLM head: it starts fresh
    try:
        model, info = AutoModelForMaskedLM.from_pretrained(weights, output_loading_info=True)
        return model, any(not key.startswith(model.base_model_prefix + ".") for key in info["missing_keys"])
    except (OSError, ValueError) as err:
        raise TunesmithError(f"Could not load '{weights}' as a masked language model: {err}") from None
    finally:
        hf_logging.set_verbosity(verbosity)


def _warm_up_head(model, accelerator, rows, cfg, lr, hooks, share: float, pad_id: int, run_dir: Path) -> None:
    """Train a freshly initialised MLM head alone on a share of the blocks before the body moves.

    A random head sends large, meaningless gradients into the body in the first steps and can erase
    what it knew (the reason for linear-probe-then-fine-tune, Kumar et al. 2022). The tied output
    embeddings stay frozen with the body here; only the head's transform and bias learn.
    """
    from ..recipe import EarlyStopping

    body = getattr(model, model.base_model_prefix)
    body.requires_grad_(False)
    warm = random.Random(cfg.seed).sample(rows, max(1, round(share * len(rows))))
    log.info(f"head warm-up: the new MLM head alone on {len(warm)} blocks")
    warm_cfg = cfg.model_copy(update={"epochs": 1, "warmup_ratio": 0.0, "early_stopping": EarlyStopping(patience=None)})
    run_loop(model, accelerator, warm, None, warm_cfg, 10 * lr, hooks, pad_id, run_dir / runs.LOG_FILE)
    body.requires_grad_(True)


def _training_rows(recipe, tokenizer, docs: list[str], objective: str) -> tuple[list[dict], dict]:
    """Domain blocks, mixed with general-text blocks at general_ratio, cut to the max_tokens budget."""
    method, cfg = recipe.method, recipe.train
    encoder = objective == "mlm"
    stats = {"documents": len(docs)}
    if method.max_tokens:
        docs = budget_documents(tokenizer, docs, round(method.max_tokens * (1 - method.general_ratio)), cfg.seed)
    blocks = pack_blocks(tokenizer, docs, cfg.max_length, encoder)
    rng = random.Random(cfg.seed)
    stats.update(documents_used=len(docs), domain_blocks=len(blocks), general_blocks=0)
    if method.general_corpus and method.general_ratio:
        general = pack_blocks(
            tokenizer,
            read_corpus(method.general_corpus, method.text_column, "method.general_corpus"),
            cfg.max_length,
            encoder,
        )
        wanted = round(method.general_ratio / (1 - method.general_ratio) * len(blocks))
        picked = [general[rng.randrange(len(general))] for _ in range(wanted)]  # with replacement: small general sets
        blocks += picked
        stats["general_blocks"] = len(picked)
    if method.max_tokens:  # packing can overshoot the budget by part of a block
        keep = max(1, method.max_tokens // cfg.max_length)
        blocks = rng.sample(blocks, min(keep, len(blocks)))
    stats["blocks"], stats["tokens"] = len(blocks), sum(map(len, blocks))
    log.info(
        f"training: {stats['documents']} documents"
        + (
            f" ({stats['documents_used']} within method.max_tokens)"
            if stats["documents_used"] < stats["documents"]
            else ""
        )
        + f" -> {stats['blocks']} blocks of <= {cfg.max_length} tokens "
        f"({stats['tokens']:,} tokens, {stats['general_blocks']} general-text blocks)"
    )
    return _rows(blocks, objective), stats


def _rows(blocks: list[list[int]], objective: str) -> list[dict]:
    if objective == "clm":
        return [{"input_ids": b, "attention_mask": [1] * len(b), "labels": list(b)} for b in blocks]
    return [{"input_ids": b, "attention_mask": [1] * len(b)} for b in blocks]


def _objective(objective: str, tokenizer, probability: float, seed: int, held: list[dict]):
    """(training loss, held-out loss, held-out rows with labels). MLM held-out rows are masked once, with a
    fixed seed, so every evaluation scores the same positions; training masks afresh every batch."""
    if objective == "clm":
        from ..tasks.generation.generate import causal_lm_loss

        return causal_lm_loss, causal_lm_loss, held
    if tokenizer.mask_token is None:
        raise TunesmithError("method.objective mlm needs a tokenizer with a mask token; this model has none (use clm).")
    from transformers import DataCollatorForLanguageModeling

    train_masker = DataCollatorForLanguageModeling(tokenizer, mlm_probability=probability, seed=seed)
    eval_masker = DataCollatorForLanguageModeling(tokenizer, mlm_probability=probability, seed=seed + 1)
    masked = [eval_masker([{"input_ids": r["input_ids"]}]) for r in held]
    eval_rows = [
        {
            "input_ids": m["input_ids"][0].tolist(),
            "attention_mask": r["attention_mask"],
            "labels": m["labels"][0].tolist(),
        }
        for m, r in zip(masked, held)
    ]

    def train_loss(model, batch):
        lengths = batch["attention_mask"].sum(1).tolist()
        masked = train_masker([{"input_ids": ids[:n].tolist()} for ids, n in zip(batch["input_ids"], lengths)])
        return masked_lm_loss(model, {k: v.to(batch["input_ids"].device) for k, v in masked.items()})

    return train_loss, masked_lm_loss, eval_rows


def masked_lm_loss(model, batch: dict) -> torch.Tensor:
    """Loss on masked positions only; only those positions go through the vocabulary projection."""
    core = model.get_base_model() if hasattr(model, "get_base_model") else model
    head, body = getattr(core, "cls", None), getattr(core, core.base_model_prefix, None)
    labels = batch["labels"]
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    if head is None or body is None:
        return model(**inputs, labels=labels).loss
    hidden = body(**inputs).last_hidden_state
    keep = labels != -100
    return torch.nn.functional.cross_entropy(head(hidden[keep]).float(), labels[keep])


@torch.inference_mode()
def heldout_loss(model, rows: list[dict], batch_size: int, pad_id: int, loss_fn) -> dict:
    """Token-weighted mean loss over labeled positions (masked tokens for MLM, next tokens for CLM)."""
    from ..tasks.generation.generate import validation_loss

    return validation_loss(model, rows, batch_size, pad_id, loss_fn, shifted=loss_fn is not masked_lm_loss)


def save_lm(run_dir: Path, model, tokenizer) -> Path:
    """The adapted language model in plain HF format (LoRA merged), ready to start the next stage."""
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    target = run_dir / runs.MODEL_DIR
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


def _write_report(run_dir: Path, m: dict) -> None:
    c, v = m["corpus"], m["vocabulary"]
    lines = [
        f"# Domain adaptation: {m['model']} ({m['objective'].upper()}, {m['tuning']})",
        "",
        f"Corpus: {c['documents']} documents, {c['blocks']} training blocks ({c['tokens']:,} tokens, "
        f"{c['general_blocks']} general-text blocks); {c['heldout_documents']} documents held out "
        f"({c['heldout_blocks']} blocks).",
        "",
        "| model | held-out loss | perplexity |",
        "|---|---|---|",
        f"| base | {m['base']['loss']:.4f} | {m['base']['perplexity']:.2f} |",
        f"| adapted | {m['tuned']['loss']:.4f} | {m['tuned']['perplexity']:.2f} |",
        "",
        f"Vocabulary: {v['added']} words added" + (f" ({', '.join(v['words'][:20])})" if v["words"] else "") + ".",
        "",
        f"Training: {m['train']['epochs']} epoch(s), best epoch {m['train']['best_epoch']}, "
        f"{m['train']['runtime_s']:.1f} s, "
        f"lr {m['train']['lr']}, precision {m['train']['precision']}.",
    ]
    (run_dir / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
