"""Feedback on a generation run's served answers (`serve --collect`) as its next version, gated like an
encoder's continual update (`tunesmith update --from-feedback`, `tunesmith loop`).

What trains: a corrected answer becomes an SFT row (the conversation as it was sent, then the corrected
answer); an answer rated 4 or 5 becomes one with the served answer (what users liked, reinforced). Lower
ratings train nothing here: they are the rejected side of preference pairs, kept in the store.

How: the new version starts from the current one (its LoRA adapter, or its full weights) and trains on the
rows, with as many rows replayed from the run's original training data (forgetting is the risk of a small
update). A seeded share of the feedback is held out. Versions are compared by answer-token accuracy (the share
of reference answer tokens the model ranks first, teacher-forced: no sampling noise, no generation time):
the new version must beat the current one on all held-out corrections so far, and lose no more than
method.max_forgetting on the original test set. The run then keeps versions/v<n>/ and continual.json as a
continual run does, so `runs versions`, `runs rollback` and a server's live swap work the same way.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from pathlib import Path

from ..data.conversations import load_generation
from ..errors import TunesmithError
from ..recipe import DataSection, Experience
from ..runs import rundir as runs
from .continual import (
    FEEDBACK_PREFIX,
    GATE_FILE,
    STATE_FILE,
    VERSIONS_DIR,
    _claim_update,
    _decision,
    _Experience,
    _make_current,
    _reject,
    _version_folders,
    pooled_heldout,
    read_state,
)

log = logging.getLogger(__name__)
SCORE = "token_accuracy"
LIKED = 4  # ratings from here up train the served answer
ORIGINAL_ROWS = 200  # original test rows the forgetting check reads: its cost per update stays bounded
VALIDATION_SHARE = 0.15  # of the feedback's training rows: picks the kept epoch (the holdout never does)


def is_generation(recipe) -> bool:
    return recipe.task == "generation" and recipe.method.name == "supervised"


def samples_from(rows: list[dict]) -> list[list[dict]]:
    """The SFT samples the feedback rows make (see the module's docstring); rows that make none are skipped."""
    out = []
    for row in rows:
        messages = _messages(row["input"])
        if messages is None:
            continue
        if row["kind"] == "answer" and isinstance(row["value"], str):
            out.append([*messages, {"role": "assistant", "content": row["value"]}])
        elif row["kind"] == "rating" and _liked(row["value"]) and isinstance(row["answer"], str) and row["answer"]:
            out.append([*messages, {"role": "assistant", "content": row["answer"]}])
    return out


def _liked(value) -> bool:
    """A rating of LIKED or more; anything else a store file may hold (it is input too) is not one."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= LIKED


def _messages(value) -> list[dict] | None:
    """A recorded conversation, checked again (a store file is input too): role/content strings, a user turn."""
    if not isinstance(value, list) or not value:
        return None
    for m in value:
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant"):
            return None
        if not isinstance(m.get("content"), str):
            return None
    return [{"role": m["role"], "content": m["content"]} for m in value] if value[-1]["role"] == "user" else None


def update_generation(run_dir: Path, recipe, rows: list[dict], consumed: dict, holdout: float, budget, gate: bool):
    """Train, score and gate the next version of a generation run on its feedback; returns what was decided."""
    samples = samples_from(rows)
    if len(samples) < 2:
        raise TunesmithError(
            f"{len(rows)} feedback row(s) make {len(samples)} training sample(s): a generation run learns from "
            f"corrected answers (`answer`) and answers rated {LIKED} or 5 (`rating`)."
        )
    state, fresh = _versions(run_dir)
    random.Random(recipe.train.seed + len(samples)).shuffle(samples)
    cut = max(1, round(holdout * len(samples)))
    experience = _write_feedback(run_dir, samples[cut:], samples[:cut])
    current = run_dir / VERSIONS_DIR / f"v{state['current']}"
    version = _Version(recipe, current)
    exps = [Experience.model_validate(e) for e in state["experiences"]] + [experience]
    pooled = pooled_heldout(state) if gate else []  # rejected updates' held-out rows: never trained on
    original = load_generation(recipe.data, recipe.train.seed)  # read once: the forgetting check and the replay
    sets = [version.rows(s) for s in _evaluation_sets(run_dir, original, exps + pooled)]
    before = [version.score(r) for r in sets]
    if fresh:  # version 1 is scored now, on the original test set it is gated on
        state["matrix"] = [[before[0]]]
        info = runs.read_json(current / "version.json")
        runs.write_json(current / "version.json", {**info, "accuracies": [before[0]]})
        runs.write_json(run_dir / STATE_FILE, state)
    _claim_update(run_dir)
    try:
        version.learn(samples[cut:], original.train.samples, run_dir)
        scored = [version.score(r) for r in sets]
        row = scored[: len(exps)]  # the matrix: the run's own experiences
        names = [e.name for e in exps + pooled]
        decision = _decision(SCORE, before, scored, [len(r) for r in sets], names, gate, budget, len(exps) - 1)
        log.info(
            f"original test set: {SCORE} {decision['old_before']:.4f} -> {decision['old_after']:.4f}; held-out "
            f"feedback: " + (f"{decision['new_before']:.4f} -> " if gate else "") + f"{decision['new_after']:.4f}"
        )
        if decision["reasons"]:
            return _reject(run_dir, version, experience, row, state, decision, consumed)
        number = 1 + max(int(p.name[1:]) for p in _version_folders(run_dir))
        version.save_version(run_dir / VERSIONS_DIR / f"v{number}", experience.name, row)
        runs.write_json(run_dir / VERSIONS_DIR / f"v{number}" / GATE_FILE, decision)
        state.update(
            current=number,
            experiences=[e.model_dump(mode="json") for e in exps],
            matrix=[r + [None] for r in state["matrix"]] + [row],
            initial=state["initial"] + [None],
            lineage=state["lineage"] + [number],
            **consumed,
        )
        _make_current(run_dir, run_dir / VERSIONS_DIR / f"v{number}")
        runs.write_json(run_dir / STATE_FILE, state)
        metrics = {**runs.read_json(run_dir / runs.METRICS_FILE), "version": number, "gate": decision}
        runs.write_metrics(run_dir, metrics)
        return {**metrics, "continual": {"version": number}}
    finally:
        runs.set_status(run_dir, "finished")


def _versions(run_dir: Path) -> tuple[dict, bool]:
    """(the run's version state, whether it was just made): a generation run's first update makes its trained
    model version 1."""
    if (run_dir / STATE_FILE).exists():
        return read_state(run_dir, ""), False
    folder = _weights_folder(run_dir)
    first = run_dir / VERSIONS_DIR / "v1"

    def fill(partial: Path) -> None:
        partial.mkdir(parents=True)
        shutil.copytree(folder, partial / folder.name)
        runs.write_json(partial / "version.json", {"experience": "initial", "labels": [], "accuracies": [None]})

    runs.swap_in(first, fill)
    recipe = runs.read_yaml(run_dir / runs.RECIPE_FILE)
    state = {
        "current": 1,
        "experiences": [{"name": "initial", "data": recipe["data"]}],
        "matrix": [[None]],  # scored by the update that made it, before training
        "initial": [None],
        "strategy": ["replay"],
        "lineage": [1],
        "task": "generation",
    }
    runs.write_json(run_dir / STATE_FILE, state)
    return state, True


def _weights_folder(run_dir: Path) -> Path:
    for name in (runs.ADAPTER_DIR, runs.MODEL_DIR):
        if (run_dir / name).is_dir():
            return run_dir / name
    raise TunesmithError(f"{run_dir}: no adapter/ or model/ folder; was the run completed?")


def _write_feedback(run_dir: Path, train: list, heldout: list) -> Experience:
    used = [int(p.name) for p in (run_dir / "feedback").glob("*") if p.name.isdigit()]
    folder = run_dir / "feedback" / str(1 + max(used, default=0))
    folder.mkdir(parents=True)
    for name, part in (("train.jsonl", train), ("holdout.jsonl", heldout)):
        runs.write_jsonl(folder / name, [{"messages": m} for m in part])
    section = DataSection.model_validate({"train": str(folder / "train.jsonl"), "test": str(folder / "holdout.jsonl")})
    return Experience(name=f"{FEEDBACK_PREFIX}{folder.name}", data=section)


def _evaluation_sets(run_dir: Path, original, exps: list[Experience]) -> list[list[list[dict]]]:
    """Per experience, the conversations it is scored on: the original test set (its first rows), and each
    feedback update's held-out rows, read from the run's own feedback/<n>/ folder by name."""
    sets = []
    for exp in exps:
        if exp.name.startswith(FEEDBACK_PREFIX) and exp.name[len(FEEDBACK_PREFIX) :].isdigit():
            path = run_dir / "feedback" / exp.name[len(FEEDBACK_PREFIX) :] / "holdout.jsonl"
            lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
            conversations = [_messages_with_answer(line) for line in lines]
            sets.append([c for c in conversations if c])
        else:
            sets.append(original.evaluation.samples[:ORIGINAL_ROWS])
    return sets


def _messages_with_answer(line: str) -> list[dict] | None:
    try:
        messages = json.loads(line).get("messages")
    except (ValueError, AttributeError):
        return None
    head = _messages(messages[:-1]) if isinstance(messages, list) and len(messages) > 1 else None
    answer = messages[-1] if head else None
    if not isinstance(answer, dict) or answer.get("role") != "assistant" or not isinstance(answer.get("content"), str):
        return None
    return [*head, {"role": "assistant", "content": answer["content"]}]


class _Version:
    """The current version loaded to train on: its tokenizer, its weights (adapter trainable), what it saves."""

    def __init__(self, recipe, folder: Path):
        from ..models.loading import load_causal_lm, load_tokenizer, resolve_weights

        self.recipe, self.cfg = recipe, recipe.train
        adapter = folder / runs.ADAPTER_DIR
        self.lora = (adapter / "adapter_config.json").is_file()
        weights = adapter if self.lora else folder / runs.MODEL_DIR
        self.tokenizer = load_tokenizer(str(weights))
        if self.lora:
            from peft import PeftModel

            base = load_causal_lm(resolve_weights(recipe.model.name))
            self.model = PeftModel.from_pretrained(base, str(adapter), is_trainable=True)
        else:
            self.model = load_causal_lm(str(weights))
        self.weights, self.train_stats = str(weights), {}

    def rows(self, samples: list) -> list[dict]:
        from ..tasks.generation.formatting import encode, learnable

        return learnable(encode(self.tokenizer, samples, self.cfg.max_length, self.recipe.method.loss_on))

    def score(self, rows: list[dict]) -> float:
        from ..tasks.generation.generate import answer_token_accuracy

        return answer_token_accuracy(self.model, rows, self.recipe.eval.batch_size, self.tokenizer.pad_token_id)

    def learn(self, feedback: list, original: list, run_dir: Path) -> None:
        """Feedback rows plus as many replayed `original` training rows; the kept epoch is the one with the
        lowest loss on a share of the feedback set aside for it."""
        from ..engine.loop import Hooks
        from ..models.loading import model_spec
        from ..models.registry import default_lr
        from ..tasks.generation.generate import causal_lm_loss, validation_loss
        from .base import Plan
        from .session import train

        rng = random.Random(self.cfg.seed)
        replay = rng.sample(original, min(len(original), len(feedback)))
        val_n = round(VALIDATION_SHARE * len(feedback)) if len(feedback) >= 8 else 0
        rows = self.rows(feedback[val_n:] + replay)
        check = self.rows(feedback[:val_n]) or self.rows(original[:32])
        spec = model_spec(self.recipe.model.name)
        lr = self.cfg.lr or default_lr(spec, "decoder", "lora" if self.lora else "full")
        plan = Plan(self.recipe, "generation", self.tokenizer, self.weights, spec, "decoder", lr, rows)
        bs, pad = self.recipe.eval.batch_size, self.tokenizer.pad_token_id
        hooks = Hooks(
            evaluate=lambda m: validation_loss(m, check, bs, pad), compute_loss=causal_lm_loss, default_metric="loss"
        )
        log.info(f"training on {len(feedback) - val_n} feedback and {len(replay)} replayed sample(s)")
        _, self.model, _, result = train(
            _Experience(self.model, hooks), plan, run_dir, run_dir / runs.LOG_FILE, None, self.cfg.seed
        )
        self.train_stats = {"runtime_s": result.runtime_s, "samples": len(rows), "best_epoch": result.best_epoch}

    def save_version(self, folder: Path, experience: str, row: list) -> None:
        def fill(partial: Path) -> None:
            target = partial / (runs.ADAPTER_DIR if self.lora else runs.MODEL_DIR)
            self.model.save_pretrained(target)
            self.tokenizer.save_pretrained(target)
            runs.write_json(
                partial / "version.json",
                {"experience": experience, "labels": [], "accuracies": row, "train": self.train_stats},
            )

        runs.swap_in(folder, fill)
