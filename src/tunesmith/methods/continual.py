"""Continual learning runs: experiences in order, one model, the score matrix, versions on disk.

Each experience trains the current model with the shared loop; the strategies plug in through its
hooks (EWC as a loss term, LwF in the loss, replay as extra rows). After every experience the model is
scored on the evaluation set of every experience, and saved as `versions/v<n>/` with what the next
update needs (replay buffer, Fisher information and anchor weights), so `tunesmith update` can go on later.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import torch

from ..engine.hardware import own_accelerate_state, process_state, resolve_precision
from ..engine.loop import Hooks
from ..models.loading import load_tokenizer, model_kind, model_spec, resolve_weights
from ..models.registry import default_lr
from ..recipe import Experience, task_kind
from ..runs import rundir as runs
from ..runs.tracked import tracked_run
from . import supervised
from .base import Context, Plan, tuning_mode
from .continual_regression import Regression
from .continual_strategies import Reservoir, continual_metrics, ewc_penalty, fisher_diagonal, grow_head
from .continual_tasks import MultiLabel, SingleLabel, TokenTags
from .session import train

log = logging.getLogger(__name__)
TASKS = {
    "classification": SingleLabel,
    "multi_label": MultiLabel,
    "token_classification": TokenTags,
    "regression": Regression,
}
VERSIONS_DIR, STATE_FILE = "versions", runs.CONTINUAL_FILE


def experiences_of(recipe) -> list[Experience]:
    """The recipe's experiences; a continual recipe with only `data` has that as its one experience."""
    return list(recipe.experiences or [Experience(name="initial", data=recipe.data)])


class Continual:
    """Not one training run but a model carried across experiences: `run` replaces the session's steps. The task
    kind (single-label, multi-label, entity tags) is a strategy from continual_tasks; the registry names it."""

    def run(
        self, recipe, output_dir, overwrite: bool, resume: bool = False, files: dict | None = None
    ) -> tuple[Path, dict]:
        task = TASKS[task_kind(recipe)]()
        exps = experiences_of(recipe)
        datas = [task.load(e.data, recipe.train.seed) for e in exps]
        for exp, data in zip(exps, datas):
            for warning in data.warnings:
                log.warning(f"{exp.name}: {warning}")
        learner = Learner(recipe, task)  # refuses what the task cannot do before the run directory exists
        with runs.RunDir.open(recipe, output_dir, overwrite, resume, files) as run:
            metrics = _run(learner, exps, datas, run.path, resume)
        return run.path, metrics

    @staticmethod
    def load_predictor(run_dir: Path, columns: dict, **kwargs):
        """The current version's model, which the run keeps in its model/ folder, read as its task's predictor."""
        recipe = _saved_recipe(run_dir)
        return TASKS[task_kind(recipe)]().predictor()(run_dir, columns, **kwargs)


def _saved_recipe(run_dir: Path):
    from ..recipe import load_recipe

    return load_recipe(runs.read_yaml(Path(run_dir) / runs.RECIPE_FILE))


def _run(learner: Learner, exps, datas, run_dir: Path, resume: bool = False) -> dict:
    union = sorted(
        {label for d in datas for label in d.labels}, key=lambda label: (label != "O", label)
    )  # "O" first for tags
    untrained = learner.task.build(learner.recipe, learner.weights, learner.spec, union, learner.kind)
    initial = [
        learner.task.score_model(learner, untrained, union, d.evaluation) for d in datas
    ]  # b_j: an untrained head
    del untrained
    matrix = _versions_done(run_dir, exps) if resume else []
    if matrix:  # --resume: the experiences whose versions were saved are kept; the interrupted one starts again
        log.info(f"--resume: {len(matrix)} of {len(exps)} experiences finished earlier, kept (version v{len(matrix)})")
        learner = Learner.load(learner.recipe, run_dir / VERSIONS_DIR / f"v{len(matrix)}")
    for index, (exp, data) in list(enumerate(zip(exps, datas)))[len(matrix) :]:
        log.info(
            f"experience {index + 1}/{len(exps)}: {exp.name} ({len(data.train)} examples, "
            f"{learner.task.label_word} {data.labels})",
            extra={"rule": True},
        )
        with tracked_run(learner.recipe, run_dir, process_state().is_main_process, f"{index + 1}-{exp.name}") as run:
            learner.learn(data, run_dir / runs.LOG_FILE, earlier=datas[:index])
            matrix.append(learner.scores(datas))
            run.log({f"{learner.task.metric}/{e.name}": score for e, score in zip(exps, matrix[-1])})
        log.info(
            f"after {exp.name} ({learner.task.metric}): "
            + ", ".join(f"{e.name} {a:.4f}" for e, a in zip(exps, matrix[-1]))
        )
        learner.save_version(run_dir / VERSIONS_DIR / f"v{index + 1}", exp.name, matrix[-1])
    state = {
        "current": len(exps),
        "experiences": [e.model_dump(mode="json") for e in exps],
        "matrix": matrix,
        "initial": initial,
        "strategy": learner.method.strategy,
        "lineage": list(range(1, len(exps) + 1)),
    }
    return finish(run_dir, learner.recipe, learner, datas, state)


def _make_current(run_dir: Path, version: Path) -> None:
    """The version's model (or a generation run's LoRA adapter) at the top of the run, copied beside and swapped
    in: a failed copy leaves the old one. A merged/ folder built from an earlier version would be loaded before
    the adapter, so it goes."""
    for name in _weights_in(version):
        runs.swap_in(run_dir / name, lambda folder, name=name: shutil.copytree(version / name, folder))
    if runs.ADAPTER_DIR in _weights_in(version) and (run_dir / runs.MERGED_DIR).is_dir():
        shutil.rmtree(run_dir / runs.MERGED_DIR)
        log.info(f"{run_dir / runs.MERGED_DIR} held an earlier version merged; removed (export --merge rebuilds it)")


def _weights_in(version: Path) -> list[str]:
    return [name for name in (runs.MODEL_DIR, runs.ADAPTER_DIR) if (version / name).is_dir()]


def _versions_done(run_dir: Path, exps) -> list[list[float]]:
    """The score rows of the versions an interrupted run saved, in order, while they match its experiences."""
    rows = []
    for index, exp in enumerate(exps):
        info = runs.read_json(run_dir / VERSIONS_DIR / f"v{index + 1}" / "version.json")
        if info.get("experience") != exp.name or not isinstance(info.get("accuracies"), list):
            break
        rows.append(info["accuracies"])
    return rows


def finish(run_dir: Path, recipe, learner: Learner, datas, state: dict) -> dict:
    """metrics.json, report and top-level model for the current version."""
    _make_current(run_dir, run_dir / VERSIONS_DIR / f"v{state['current']}")
    runs.write_json(run_dir / STATE_FILE, state)
    names = [e["name"] for e in state["experiences"]]
    base, head = learner.base_line(datas)
    if head is not None:  # the base model can answer again: predict and eval --base, the playground
        runs.write_json(run_dir / runs.BASE_HEAD_FILE, head)
    metrics = {
        "task": learner.task.name,
        "method": "continual",
        "model": recipe.model.name,
        "labels": learner.labels,
        "eval_set": "all experiences' evaluation sets",
        "eval_size": sum(len(d.evaluation) for d in datas),
        "base": base,
        "tuned": learner.overall(datas),
        "continual": {
            **continual_metrics(state["matrix"], state["initial"]),
            "metric": learner.task.metric,
            "experiences": names,
            "initial": state["initial"],
            "strategy": state["strategy"],
            "version": state["current"],
        },
        "train": {**learner.train_stats, "lr": learner.lr},
    }
    runs.write_metrics(run_dir, metrics)
    from .continual_report import write_continual_report

    write_continual_report(run_dir, metrics)
    c = metrics["continual"]
    log.info(
        f"average {c['metric']} {c['average_accuracy']:.4f}, BWT {c['bwt']:+.4f}"
        + (f", FWT {c['fwt']:+.4f}" if c["fwt"] is not None else "")
    )
    return metrics


class _Experience:
    """One experience as a method of the run skeleton: the learner's current model (its head grown), trained
    with the strategy's hooks; nothing to compare against or adapt first (the matrix scores every version)."""

    def __init__(self, model, hooks: Hooks):
        self.model, self._hooks = model, hooks

    def build(self, plan: Plan, ctx: Context):
        return self.model

    def baseline(self, plan: Plan, ctx: Context, model) -> dict:
        return {}

    def adapt(self, plan: Plan, ctx: Context, model):
        return model

    def hooks(self, plan: Plan, ctx: Context) -> Hooks:
        return self._hooks


class Learner:
    """The model and what the strategies carry from one experience to the next."""

    def __init__(self, recipe, task, model_dir: Path | None = None):
        from ..errors import TunesmithError

        self.recipe, self.method, self.cfg, self.task = recipe, recipe.method, recipe.train, task
        self.weights = str(model_dir) if model_dir else resolve_weights(recipe.model.name)
        self.spec = spec = model_spec(recipe.model.name)
        self.kind = model_kind(resolve_weights(recipe.model.name), spec)
        if tuning_mode(recipe.method, self.kind) != "full":
            raise TunesmithError(
                "method continual trains the whole model (the head grows with new classes); "
                "remove method.lora / set method.tuning: full."
            )
        if task.name == "token_classification" and "lwf" in self.method.strategy:
            raise TunesmithError(
                "method.strategy lwf is for classification and multi-label: on new sentences whose old "
                "entities are tagged O, distilling old tags fights the new labels. Use replay (and ewc)."
            )
        if task.name != "classification" and self.method.class_weights != "none":
            raise TunesmithError(f"method.class_weights is for single-label classification; remove it for {task.name}.")
        self.data_sections = [recipe.data] + [e.data for e in recipe.experiences or []]
        self.tokenizer = load_tokenizer(self.weights)
        self.precision = resolve_precision(self.cfg.precision)
        self.lr = self.cfg.lr or default_lr(spec, self.kind, "full")
        self.model, self.labels, self.files = None, [], {}
        self.buffer = Reservoir(self.method.replay_size, self.cfg.seed)
        self.fisher, self.anchor, self.train_stats = None, None, {"runtime_s": 0.0, "experiences": 0}
        if model_dir:  # an earlier version: its labels and head, frozen layers as the recipe says
            self.labels = self._saved_labels(model_dir)
            self.model = task.build(recipe, str(model_dir), spec, self.labels, self.kind)
            task.restore(Path(model_dir), self.model)

    # ------------------------------------------------------------------ training

    def learn(self, data, log_path: Path, earlier: list = ()) -> None:
        """Train on one experience (`earlier`: the experiences learned before, for what is chosen on all of them)."""
        from accelerate.utils import set_seed

        set_seed(self.cfg.seed + self.train_stats["experiences"])
        n_old = len(self.labels)
        fresh = self.task.examples(self.task.fitted(self, data.train))
        if "naive" not in self.method.strategy:  # naive stays plain sequential fine-tuning, the reference
            fresh = self.task.relabel(self, fresh, data)  # by the old model, before the head grows
        new_labels = [label for label in data.labels if label not in self.labels]
        self.labels = self.labels + new_labels
        first = self.model is None
        if first:
            self.model = self.task.build(self.recipe, self.weights, self.spec, self.labels, self.kind)
        else:
            grow_head(self.model, self.labels)
        examples = list(fresh)
        if "replay" in self.method.strategy and len(self.buffer):
            replayed = self.buffer.sample(round(self.method.replay_ratio * len(examples)))
            examples += self.task.replayed(replayed, new_labels if n_old else [])
            log.info(f"replay: {len(replayed)} past examples mixed in ({len(self.buffer)} in the buffer)")
        rows, ids = self.task.encode(self.tokenizer, examples, self.labels, self.cfg, self.method)
        if first:
            self.task.start_head(self, rows, ids)
        hooks = self._hooks(data, rows, [key for _, key in examples], n_old)
        plan = Plan(self.recipe, self.task.name, self.tokenizer, self.weights, self.spec, self.kind, self.lr, rows, ids)
        # the run skeleton's training step, seeded above (before the head grew); no checkpoint: an interrupted
        # experience starts again from the last saved version
        _, self.model, _, result = train(_Experience(self.model, hooks), plan, log_path.parent, log_path, None, None)
        self.train_stats["runtime_s"] += result.runtime_s
        self.train_stats["experiences"] += 1
        if "replay" in self.method.strategy:
            for example, key in fresh:
                self.buffer.add(example, key)
        if "ewc" in self.method.strategy:
            self._consolidate(data)
        self.files = self.task.after_learning(self, [d.validation for d in earlier] + [data.validation])

    def _hooks(self, data, rows: list[dict], keys: list[str], n_old: int) -> Hooks:
        weights = (
            supervised.class_weight_tensor(self.method.class_weights, self.labels, keys)
            if self.task.name == "classification"
            else None
        )
        evaluate = lambda m: self.task.validation(self, m, data.validation)  # noqa: E731
        old_logits = self._old_logits(rows, n_old) if "lwf" in self.method.strategy and n_old else None

        def loss(model, batch):
            row_index = batch.pop("row_index", None)
            targets = batch.pop("labels")
            logits = model(**batch).logits.float()
            value = self.task.loss(logits, targets, weights)
            if old_logits is not None:
                value = value + self.method.lwf_alpha * self.task.distill(
                    logits, old_logits[row_index[:, 0]].to(logits.device), self.method.lwf_temperature
                )
            return value

        penalty = None
        if self.fisher is not None and self.method.ewc_lambda:
            penalty = lambda value: value + ewc_penalty(self.model, self.fisher, self.anchor, self.method.ewc_lambda)  # noqa: E731
        return Hooks(
            evaluate=evaluate, compute_loss=loss, before_backward=penalty, default_metric=self.task.default_metric
        )

    def _old_logits(self, rows: list[dict], n_old: int) -> torch.Tensor:
        """LwF: the model's outputs on this experience's rows before it learns them, on the old classes
        (the grown head copied their rows, so these are the previous model's outputs)."""
        old = self.task.old_outputs(
            self.model, rows, n_old, self.recipe.eval.batch_size, self.tokenizer.pad_token_id, self.precision
        )
        for i, row in enumerate(rows):
            row["row_index"] = [i]
        return old

    def _consolidate(self, data) -> None:
        """EWC: add this experience's Fisher information; the anchor becomes the current weights."""
        from ..engine.batching import collate

        n = min(self.method.ewc_samples, len(data.train))
        rows, ids = self.task.encode(
            self.tokenizer, self.task.examples(data.train)[:n], self.labels, self.cfg, self.method
        )
        batches = [
            collate(rows[i : i + 8], self.tokenizer.pad_token_id, None if ids is None else ids[i : i + 8])
            for i in range(0, n, 8)
        ]
        start = time.perf_counter()
        fresh = fisher_diagonal(self.model, batches)
        log.info(f"ewc: Fisher information from {n} examples in {time.perf_counter() - start:.1f} s")
        if self.fisher:
            for name, old in self.fisher.items():
                fresh[name][: old.shape[0]] += old
        self.fisher = fresh
        self.anchor = {name: p.detach().clone() for name, p in self.model.named_parameters() if name in fresh}

    # ------------------------------------------------------------------ scoring

    def scores(self, datas) -> list[float]:
        """The task's metric on each experience's evaluation set."""
        return [self.task.score_model(self, self.model, self.labels, d.evaluation) for d in datas]

    def overall(self, datas) -> dict:
        """The current model's metrics over all evaluation sets together (labels it never saw count as errors)."""
        splits = [d.evaluation for d in datas]
        predicted = [
            p
            for s in splits
            for p in self.task.predictions(
                self.model, self.labels, self.tokenizer, s, self.cfg, self.recipe.eval.batch_size, self.precision
            )
        ]
        return self.task.overall(predicted, splits, self.labels)

    def base_line(self, datas) -> tuple[dict, dict | None]:
        """The base model read as a supervised run reads it (a probe on its frozen embeddings; a ridge for scores),
        fitted on every experience's training data and scored on every evaluation set, as the current version is:
        what training the run's versions was worth. The probe comes back as numbers (base_head.json)."""
        import random

        from .head_init import PROBE_ROWS

        if self.recipe.eval.baseline == "none" or self.kind == "decoder":
            return {}, None
        pairs = [pair for d in datas for pair in self.task.examples(self.task.fitted(self, d.train))]
        random.Random(self.cfg.seed).shuffle(pairs)
        seen, first, rest = set(), [], []
        for pair in pairs:  # one example of every class (reservoir key) first, so that each gets weights
            (rest if pair[1] in seen else first).append(pair)
            seen.add(pair[1])
        chosen = first + rest[: max(0, PROBE_ROWS - len(first))]
        return self.task.base_line(self, chosen, datas, resolve_weights(self.recipe.model.name))

    # ------------------------------------------------------------------ versions on disk

    def save_version(self, folder: Path, experience: str, row: list[float]) -> None:
        """Written beside, then renamed: a version folder is whole or absent (a kill or a full disk midway)."""
        runs.swap_in(folder, lambda partial: self._write_version(partial, experience, row))

    def _write_version(self, folder: Path, experience: str, row: list[float]) -> None:
        folder.mkdir(parents=True)
        with self.task.saved_form(self.model) as model:
            runs.save_model(folder, model, self.tokenizer)
        for name, content in self.files.items():  # what the task's predictor reads beside the model (thresholds)
            runs.write_json(folder / runs.MODEL_DIR / name, content)
        runs.write_json(folder / "replay.json", {"items": self.buffer.items, "seen": self.buffer.seen})
        if self.fisher is not None:  # safetensors: loading it can never run code
            from safetensors.torch import save_file

            save_file(
                {
                    **{f"fisher.{k}": v.contiguous() for k, v in self.fisher.items()},
                    **{f"anchor.{k}": v.contiguous() for k, v in self.anchor.items()},
                },
                str(folder / EWC_FILE),
            )
        runs.write_json(
            folder / "version.json",
            {"experience": experience, "labels": self.labels, "accuracies": row, "train": self.train_stats},
        )

    @classmethod
    def load(cls, recipe, folder: Path) -> Learner:
        learner = cls(recipe, TASKS[task_kind(recipe)](), folder / runs.MODEL_DIR)
        saved = runs.read_json(folder / "replay.json")
        learner.buffer = Reservoir(
            recipe.method.replay_size, recipe.train.seed + 1000, saved.get("items"), saved.get("seen")
        )
        learner.fisher, learner.anchor = _load_ewc(folder)
        learner.train_stats = {**runs.read_json(folder / "version.json").get("train", {}), "runtime_s": 0.0}
        return learner

    @staticmethod
    def _saved_labels(model_dir: Path) -> list[str]:
        return runs.read_json(Path(model_dir) / "labels.json")["labels"]


EWC_FILE = "ewc.safetensors"


def _load_ewc(folder: Path) -> tuple[dict | None, dict | None]:
    """The saved Fisher values and anchor weights (safetensors; runs from before hold ewc.pt, read weights-only)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from ..engine.checkpoint import load_tensors_file
    from ..errors import TunesmithError

    if (folder / EWC_FILE).is_file():
        try:
            flat = load_file(str(folder / EWC_FILE))
        except (SafetensorError, OSError) as err:
            raise TunesmithError(
                f"{folder / EWC_FILE} cannot be read ({err}); it is damaged. Roll back to an earlier "
                "version (`tunesmith runs versions RUN --rollback N`) or retrain."
            ) from None
        split = {
            part: {k.split(".", 1)[1]: v for k, v in flat.items() if k.startswith(part + ".")}
            for part in ("fisher", "anchor")
        }
        return split["fisher"], split["anchor"]
    if (folder / "ewc.pt").is_file():
        ewc = load_tensors_file(folder / "ewc.pt", "Retrain the run, or roll back to an earlier version.")
        if not isinstance(ewc, dict) or not {"fisher", "anchor"} <= set(ewc):
            raise TunesmithError(f"{folder / 'ewc.pt'} does not hold EWC state (fisher, anchor); it is damaged.")
        return ewc["fisher"], ewc["anchor"]
    return None, None


# ---------------------------------------------------------------------- later updates of a finished run


def read_state(run_dir: Path, why: str) -> dict:
    """continual.json, or an error that says whether it is missing (not a continual run) or damaged."""
    from ..errors import TunesmithError

    problem = runs.json_problem(run_dir / STATE_FILE)
    if problem == "missing":
        raise TunesmithError(f"{run_dir} is not a continual run (no {STATE_FILE}); {why}")
    state = runs.read_json(run_dir / STATE_FILE)
    if problem or not {"current", "experiences", "matrix", "lineage", "initial"} <= set(state):
        raise TunesmithError(
            f"{run_dir / STATE_FILE} is {problem or 'damaged (keys missing)'}; the run's version history "
            "cannot be read. Restore the file from a copy, or train the run again."
        )
    return state


def updatable(run_dir: Path) -> tuple[Path, dict]:
    """(run directory, its version state) of a finished continual run, or the error that says why not."""
    run_dir = runs.open_finished(run_dir)
    return run_dir, read_state(run_dir, "`tunesmith update` needs method: continual.")


def update_run(
    run_dir: Path,
    experience: Experience,
    max_forgetting: float | None = None,
    gate: bool = False,
    consumed: dict | None = None,
) -> dict:
    """Train version N+1 from the current version on a new experience, with the run's strategy and saved state.

    Refused (nothing written) when old-data accuracy drops by more than `max_forgetting`. With `gate` (updates
    from feedback), the new version must also score above the current one on the new experience's evaluation
    set (the held-out feedback); a version that fails is kept as a rejected candidate (versions/rejected-<n>/,
    with gate.json saying why) and the current version stays. `consumed`: state to record however it ends
    (which feedback was used). The returned metrics carry the decision under "gate"."""
    from ..errors import TunesmithError
    from ..recipe import load_recipe

    run_dir, state = updatable(run_dir)
    recipe = load_recipe(runs.read_yaml(run_dir / runs.RECIPE_FILE))
    exps = [Experience.model_validate(e) for e in state["experiences"]] + [experience]
    pooled = pooled_heldout(state) if gate else []
    learner = Learner.load(recipe, run_dir / VERSIONS_DIR / f"v{state['current']}")
    datas = [learner.task.load(e.data, recipe.train.seed) for e in exps]
    extra = [learner.task.load(e.data, recipe.train.seed) for e in pooled]
    before = learner.scores(datas + extra if gate else datas[:-1])  # gated: the current version on the new data too
    _claim_update(run_dir)
    try:
        with own_accelerate_state():
            learner.learn(datas[-1], run_dir / runs.LOG_FILE, earlier=datas[:-1])
        scored = learner.scores(datas + extra)
        row = scored[: len(datas)]  # the matrix: the run's own experiences
        sizes = [len(d.evaluation) for d in datas + extra]
        names = [e.name for e in exps + pooled]
        decision = _decision(learner.task.metric, before, scored, sizes, names, gate, max_forgetting, len(exps) - 1)
        log.info(
            f"old experiences: {learner.task.metric} {decision['old_before']:.4f} -> {decision['old_after']:.4f}; "
            f"new ({experience.name}): "
            + (f"{decision['new_before']:.4f} -> " if gate else "")
            + f"{decision['new_after']:.4f}"
        )
        if decision["reasons"] and not gate:
            raise TunesmithError(
                f"update refused: {decision['reasons'][0]}. Version {state['current']} stays current; try more "
                "replay (method.replay_ratio) or a stronger method.ewc_lambda."
            )
        if decision["reasons"]:
            return _reject(run_dir, learner, experience, row, state, decision, consumed)
        version = 1 + max(int(p.name[1:]) for p in _version_folders(run_dir))
        learner.save_version(run_dir / VERSIONS_DIR / f"v{version}", experience.name, row)
        if gate:
            runs.write_json(run_dir / VERSIONS_DIR / f"v{version}" / GATE_FILE, decision)
        matrix = [r + [None] for r in state["matrix"]] + [row]
        state.update(
            current=version,
            experiences=[e.model_dump(mode="json") for e in exps],
            matrix=matrix,
            initial=state["initial"] + [None],
            lineage=state["lineage"] + [version],
            **(consumed or {}),
        )
        metrics = finish(run_dir, recipe, learner, datas, state)
        metrics["gate"] = decision
    finally:
        runs.set_status(run_dir, "finished")
    return metrics


GATE_FILE = "gate.json"
KEEP_REJECTED = 3  # rejected candidates kept on disk (each is a whole model): the newest few


FEEDBACK_PREFIX = "feedback-"  # experiences made from served feedback (methods/continual_feedback.py)


def _decision(
    metric: str, before: list, row: list, sizes: list, names: list, gate: bool, max_forgetting, new: int | None = None
) -> dict:
    """Both numbers a promotion rests on, and why not where it fails. `new`: the index of the new experience
    (default: the last); with `gate`, sets after it are earlier updates' held-out feedback, scored only.

    Forgetting is measured on the experiences that did not come from feedback (the original data; all earlier
    experiences for a plain update). With `gate`, "new" is every held-out feedback row so far, the new
    update's and the earlier ones', promoted or not (never trained on): one update's holdout alone is a few
    dozen rows, and a gate on so few would promote or refuse by chance."""
    count = len(row)
    new = count - 1 if new is None else new
    if gate:
        feedback = [i for i in range(count) if names[i].startswith(FEEDBACK_PREFIX) or i == new]
        original = [i for i in range(count) if i not in feedback] or [i for i in range(count) if i != new]
    else:
        feedback, original = [new], [i for i in range(count) if i != new]
    old_before, old_after = _weighted(before, original, sizes), _weighted(row, original, sizes)
    new_before = _weighted(before, feedback, sizes) if gate else None
    new_after = _weighted(row, feedback, sizes)
    drop, reasons = old_before - old_after, []
    if max_forgetting is not None and drop > max_forgetting:
        reasons.append(
            f"{metric} on the data it knew before fell by {drop:.4f} ({old_before:.4f} -> {old_after:.4f}), more "
            f"than the forgetting budget {max_forgetting}"
        )
    if gate and not new_after > new_before:
        reasons.append(
            f"{metric} on the held-out feedback ({sum(sizes[i] for i in feedback)} rows) is {new_after:.4f}, not "
            f"above the current version's {new_before:.4f}"
        )
    return {
        "metric": metric,
        "old_before": old_before,
        "old_after": old_after,
        "forgetting": drop,
        "max_forgetting": max_forgetting,
        "new_before": new_before,
        "new_after": new_after,
        "heldout_rows": sum(sizes[i] for i in feedback),
        "promoted": not reasons,
        "reasons": reasons,
    }


def pooled_heldout(state: dict) -> list[Experience]:
    """The held-out feedback of rejected updates (continual.json's `heldout`), whose feedback folders still exist."""
    out = []
    for raw in state.get("heldout", []):
        try:
            exp = Experience.model_validate(raw)
        except ValueError:  # a hand-edited state: skip what cannot be read, the gate still has the rest
            continue
        if exp.name.startswith(FEEDBACK_PREFIX) and exp.data.test and Path(exp.data.test).is_file():
            out.append(exp)
    return out


def _weighted(scores: list, picked: list[int], sizes: list[int]) -> float:
    """The score over the picked evaluation sets together (each weighs by its rows)."""
    total = sum(sizes[i] for i in picked)
    return sum(scores[i] * sizes[i] for i in picked) / total if total else float("nan")


def _reject(run_dir: Path, learner, experience, row, state: dict, decision: dict, consumed: dict | None) -> dict:
    """Keep the candidate beside the versions (for a look), record why, and leave the current version as it is."""
    rejected = sorted(
        (p for p in (run_dir / VERSIONS_DIR).glob("rejected-*") if p.name[9:].isdigit()), key=lambda p: int(p.name[9:])
    )
    number = 1 + (int(rejected[-1].name[9:]) if rejected else 0)
    folder = run_dir / VERSIONS_DIR / f"rejected-{number}"
    learner.save_version(folder, experience.name, row)
    runs.write_json(folder / GATE_FILE, {**decision, "experience": experience.model_dump(mode="json")})
    for old in rejected[: max(0, len(rejected) + 1 - KEEP_REJECTED)]:
        shutil.rmtree(old)
    state.update(consumed or {})
    state["rejected"] = state.get("rejected", []) + [{"candidate": folder.name, "reasons": decision["reasons"]}]
    # its holdout was never trained on by any version: later gates read it too
    state["heldout"] = state.get("heldout", []) + [experience.model_dump(mode="json")]
    runs.write_json(run_dir / STATE_FILE, state)
    log.warning(f"version not promoted ({'; '.join(decision['reasons'])}); version {state['current']} stays current")
    return {"gate": decision, "continual": {"version": state["current"]}, "candidate": str(folder)}


def _claim_update(run_dir: Path) -> None:
    """One update at a time. The run stays finished meanwhile: its current version is untouched until the new one is
    whole (saved beside, then renamed), so serving and predict go on, and a killed update leaves nothing to repair."""
    from ..errors import TunesmithError

    other = runs.read_json(run_dir / runs.RUN_FILE).get("updating")
    if runs.process_alive(other):
        raise TunesmithError(
            f"{run_dir}: another `tunesmith update` is running (process {other.get('pid')}); wait for it to end."
        )
    runs.set_status(run_dir, "finished", updating=runs.this_process())


def list_versions(run_dir: Path) -> tuple[int, list[dict]]:
    state = read_state(Path(run_dir), "versions exist for method: continual runs.")
    out = []
    for folder in _version_folders(Path(run_dir)):
        info = runs.read_json(folder / "version.json")
        acc = info.get("accuracies", [])
        out.append(
            {
                "version": int(folder.name[1:]),
                "experience": info.get("experience"),
                "labels": len(info.get("labels", [])),
                "mean_accuracy": sum(scored) / len(scored) if (scored := [a for a in acc if a is not None]) else None,
                "accuracies": acc,
            }
        )
    return state["current"], out


def _version_folders(run_dir: Path) -> list[Path]:
    """The saved versions, in order: v<number> folders with their version.json (never a partial or foreign folder)."""
    found = [p for p in (run_dir / VERSIONS_DIR).glob("v*") if p.name[1:].isdigit() and (p / "version.json").is_file()]
    return sorted(found, key=lambda p: int(p.name[1:]))


def rollback(run_dir: Path, version: int) -> None:
    """Make an earlier version current: its model goes to the top of the run; later updates start from it."""
    from ..errors import TunesmithError

    run_dir = runs.open_finished(run_dir)
    folder = run_dir / VERSIONS_DIR / f"v{version}"
    if not _weights_in(folder):
        raise TunesmithError(f"{run_dir} has no version {version}; `tunesmith runs versions {run_dir}` lists them.")
    state = read_state(run_dir, "versions exist for method: continual runs.")
    if version not in state["lineage"]:
        raise TunesmithError(
            f"version {version} was trained on a history that an earlier rollback abandoned; "
            f"versions on the current history: {state['lineage']}."
        )
    keep = state["lineage"].index(version) + 1  # the history of that version: its rows and experiences
    state.update(
        current=version,
        lineage=state["lineage"][:keep],
        experiences=state["experiences"][:keep],
        initial=state["initial"][:keep],
        matrix=[row[:keep] for row in state["matrix"][:keep]],
    )
    _make_current(run_dir, folder)
    runs.write_json(run_dir / STATE_FILE, state)
