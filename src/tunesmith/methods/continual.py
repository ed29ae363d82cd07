"""Continual learning runs: experiences in order, one model, the accuracy matrix, versions on disk.

Each experience trains the current model with the shared loop; the strategies plug in through its
hooks (EWC as a loss term, LwF in the loss, replay as extra rows). After every experience the model is
scored on the evaluation set of every experience, and saved as `versions/v<n>/` with what the next
update needs (replay buffer, Fisher information and anchor weights), so `tunesmith update` can go on later.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import torch
from rich.console import Console

from ..runs import rundir as runs
from ..engine.batching import tokenize
from ..data.classification import load_classification
from ..engine.metrics import evaluate_classifier, predict_proba
from ..engine.hardware import make_accelerator, own_accelerate_state, resolve_precision
from . import supervised
from .continual_strategies import (Reservoir, continual_metrics, distillation_loss, ewc_penalty, fisher_diagonal,
                                grow_head)
from ..models.loading import load_classifier, load_tokenizer, model_kind, model_spec, resolve_weights
from ..recipe import Experience
from ..models.registry import default_lr
from ..engine.loop import Hooks, run_loop
from .base import tuning_mode

console = Console(stderr=True)
VERSIONS_DIR, STATE_FILE = "versions", "continual.json"


def experiences_of(recipe) -> list[Experience]:
    """The recipe's experiences; a continual recipe with only `data` has that as its one experience."""
    return list(recipe.experiences or [Experience(name="initial", data=recipe.data)])


class Continual:
    """Not one training run but a model carried across experiences: `run` replaces the session's steps."""

    def run(self, recipe, output_dir, overwrite: bool, resume: bool = False, files: dict | None = None) -> tuple[Path, dict]:
        from ..errors import TunesmithError
        if resume:
            raise TunesmithError("--resume continues single runs and staged runs; a multi-seed or continual run restarts "
                                 "(continual runs grow by versions instead: `tunesmith update`).")
        exps = experiences_of(recipe)
        datas = [load_classification(e.data, recipe.train.seed) for e in exps]
        for exp, data in zip(exps, datas):
            for warning in data.warnings:
                console.print(f"[yellow]warning:[/] {exp.name}: {warning}")
        return runs.run_in(recipe, output_dir, overwrite, lambda run_dir: _run(recipe, exps, datas, run_dir), files=files)

    @staticmethod
    def load_predictor(run_dir: Path, columns: dict, **kwargs):
        """The current version's classifier, which the run keeps in its model/ folder."""
        return supervised.SupervisedClassifier.load_predictor(run_dir, columns, **kwargs)


def _run(recipe, exps, datas, run_dir: Path) -> dict:
    learner = Learner(recipe)
    union = sorted({label for d in datas for label in d.labels})
    initial = learner.scores_of(load_classifier(learner.weights, union), union, datas)  # b_j: an untrained head
    matrix = []
    for index, (exp, data) in enumerate(zip(exps, datas)):
        console.rule(f"experience {index + 1}/{len(exps)}: {exp.name} ({len(data.train)} examples, labels {data.labels})")
        learner.learn(data, run_dir / runs.LOG_FILE)
        matrix.append(learner.scores(datas))
        console.print(f"after {exp.name}: " + ", ".join(f"{e.name} {a:.4f}" for e, a in zip(exps, matrix[-1])))
        learner.save_version(run_dir / VERSIONS_DIR / f"v{index + 1}", exp.name, matrix[-1])
    state = {"current": len(exps), "experiences": [e.model_dump(mode="json") for e in exps], "matrix": matrix,
             "initial": initial, "strategy": recipe.method.strategy, "lineage": list(range(1, len(exps) + 1))}
    return finish(run_dir, recipe, learner, datas, state)


def finish(run_dir: Path, recipe, learner: "Learner", datas, state: dict) -> dict:
    """metrics.json, report and top-level model for the current version."""
    runs.write_json(run_dir / STATE_FILE, state)
    current = run_dir / VERSIONS_DIR / f"v{state['current']}"
    if (run_dir / runs.MODEL_DIR).exists():
        shutil.rmtree(run_dir / runs.MODEL_DIR)
    shutil.copytree(current / runs.MODEL_DIR, run_dir / runs.MODEL_DIR)
    names = [e["name"] for e in state["experiences"]]
    metrics = {
        "task": "classification", "method": "continual", "model": recipe.model.name, "labels": learner.labels,
        "eval_set": "all experiences' evaluation sets", "eval_size": sum(len(d.evaluation) for d in datas),
        "base": {}, "tuned": learner.overall(datas),
        "continual": {**continual_metrics(state["matrix"], state["initial"]), "experiences": names,
                      "initial": state["initial"], "strategy": state["strategy"], "version": state["current"]},
        "train": {**learner.train_stats, "lr": learner.lr},
    }
    runs.write_metrics(run_dir, metrics)
    from .continual_report import write_continual_report
    write_continual_report(run_dir, metrics)
    c = metrics["continual"]
    console.print(f"average accuracy {c['average_accuracy']:.4f}, BWT {c['bwt']:+.4f}"
                  + (f", FWT {c['fwt']:+.4f}" if c["fwt"] is not None else ""))
    return metrics


class Learner:
    """The model and what the strategies carry from one experience to the next."""

    def __init__(self, recipe, model_dir: Path | None = None):
        self.recipe, self.method, self.cfg = recipe, recipe.method, recipe.train
        self.weights = str(model_dir) if model_dir else resolve_weights(recipe.model.name)
        self.spec = spec = model_spec(recipe.model.name)
        self.kind = model_kind(resolve_weights(recipe.model.name), spec)
        if tuning_mode(recipe.method, self.kind) != "full":
            from ..errors import TunesmithError
            raise TunesmithError("method continual trains the whole model (the head grows with new classes); "
                                 "remove method.lora / set method.tuning: full.")
        self.tokenizer = load_tokenizer(self.weights)
        self.precision = resolve_precision(self.cfg.precision)
        self.lr = self.cfg.lr or default_lr(spec, self.kind, "full")
        self.model, self.labels = None, []
        self.buffer = Reservoir(self.method.replay_size, self.cfg.seed)
        self.fisher, self.anchor, self.train_stats, self._rows = None, None, {"runtime_s": 0.0, "experiences": 0}, {}
        if model_dir:  # an earlier version: its labels and head, frozen layers as the recipe says
            self.labels = self._saved_labels(model_dir)
            self.model = supervised.build_model(recipe, str(model_dir), spec, self.labels, self.kind)

    # ------------------------------------------------------------------ training

    def learn(self, data, log_path: Path) -> None:
        from accelerate.utils import set_seed
        set_seed(self.cfg.seed + self.train_stats["experiences"])
        n_old = len(self.labels)
        self.labels = self.labels + [label for label in data.labels if label not in self.labels]
        if self.model is None:
            self.model = supervised.build_model(self.recipe, self.weights, self.spec, self.labels, self.kind)
        else:
            grow_head(self.model, self.labels)
        texts, labels = list(data.train.texts), list(data.train.labels)
        if "replay" in self.method.strategy and len(self.buffer):
            replayed = self.buffer.sample(round(self.method.replay_ratio * len(texts)))
            texts += [t for t, _ in replayed]
            labels += [label for _, label in replayed]
            console.print(f"replay: {len(replayed)} past examples mixed in ({len(self.buffer)} in the buffer)")
        rows, _ = tokenize(self.tokenizer, texts, None, self.cfg.max_length)
        index = {label: i for i, label in enumerate(self.labels)}
        ids = [index[label] for label in labels]
        hooks = self._hooks(data, rows, labels, n_old)
        accelerator = make_accelerator(self.cfg, self.precision)
        result = run_loop(self.model, accelerator, rows, ids, self.cfg, self.lr, hooks, self.tokenizer.pad_token_id, log_path)
        self.model = accelerator.unwrap_model(self.model)
        self.train_stats["runtime_s"] += result.runtime_s
        self.train_stats["experiences"] += 1
        if "replay" in self.method.strategy:
            for text, label in zip(data.train.texts, data.train.labels):
                self.buffer.add(text, label)
        if "ewc" in self.method.strategy:
            self._consolidate(data)

    def _hooks(self, data, rows: list[dict], labels: list[str], n_old: int) -> Hooks:
        weights = supervised.class_weight_tensor(self.method.class_weights, self.labels, labels)
        val_rows, _ = tokenize(self.tokenizer, data.validation.texts, None, self.cfg.max_length)
        index = {label: i for i, label in enumerate(self.labels)}
        evaluate = lambda m: evaluate_classifier(  # noqa: E731
            m, val_rows, [index[y] for y in data.validation.labels], self.labels, self.recipe.eval.batch_size,
            self.tokenizer.pad_token_id, self.precision)
        old_logits = self._old_logits(rows, n_old) if "lwf" in self.method.strategy and n_old else None

        def loss(model, batch):
            row_index = batch.pop("row_index", None)
            targets = batch.pop("labels")
            logits = model(**batch).logits.float()
            value = torch.nn.functional.cross_entropy(logits, targets, weight=None if weights is None else weights.to(logits.device))
            if old_logits is not None:
                value = value + self.method.lwf_alpha * distillation_loss(
                    logits, old_logits[row_index[:, 0]].to(logits.device), self.method.lwf_temperature)
            return value

        penalty = None
        if self.fisher is not None and self.method.ewc_lambda:
            penalty = lambda value: value + ewc_penalty(self.model, self.fisher, self.anchor, self.method.ewc_lambda)  # noqa: E731
        return Hooks(evaluate=evaluate, compute_loss=loss, before_backward=penalty)

    def _old_logits(self, rows: list[dict], n_old: int) -> torch.Tensor:
        """LwF: the model's outputs on this experience's rows before it learns them, on the old classes
        (the grown head copied their rows, so these are the previous model's outputs)."""
        probs = predict_proba(self.model, rows, self.recipe.eval.batch_size, self.tokenizer.pad_token_id, self.precision)
        for i, row in enumerate(rows):
            row["row_index"] = [i]
        return torch.log(torch.as_tensor(probs[:, :n_old]).clamp_min(1e-9))  # log-probs work as logits

    def _consolidate(self, data) -> None:
        """EWC: add this experience's Fisher information; the anchor becomes the current weights."""
        from ..engine.batching import collate
        n = min(self.method.ewc_samples, len(data.train))
        rows, _ = tokenize(self.tokenizer, data.train.texts[:n], None, self.cfg.max_length)
        index = {label: i for i, label in enumerate(self.labels)}
        batches = [collate(rows[i:i + 8], self.tokenizer.pad_token_id, [index[y] for y in data.train.labels[i:i + 8]])
                   for i in range(0, n, 8)]
        start = time.perf_counter()
        fresh = fisher_diagonal(self.model, batches)
        console.print(f"ewc: Fisher information from {n} examples in {time.perf_counter() - start:.1f} s")
        if self.fisher:
            for name, old in self.fisher.items():
                fresh[name][: old.shape[0]] += old
        self.fisher = fresh
        self.anchor = {name: p.detach().clone() for name, p in self.model.named_parameters() if name in fresh}

    # ------------------------------------------------------------------ scoring

    def scores(self, datas) -> list[float]:
        return self.scores_of(self.model, self.labels, datas)

    def scores_of(self, model, labels: list[str], datas) -> list[float]:
        """Accuracy on each experience's evaluation set; labels the model does not know count as wrong."""
        out = []
        for data in datas:
            key = id(data.evaluation)
            if key not in self._rows:
                self._rows[key] = tokenize(self.tokenizer, data.evaluation.texts, None, self.cfg.max_length)[0]
            probs = predict_proba(model, self._rows[key], self.recipe.eval.batch_size, self.tokenizer.pad_token_id, self.precision)
            predicted = [labels[i] for i in probs.argmax(-1)]
            out.append(sum(p == y for p, y in zip(predicted, data.evaluation.labels)) / len(predicted))
        return out

    def overall(self, datas) -> dict:
        """The current model's metrics over all evaluation sets together (labels it never saw count as errors)."""
        texts = [t for d in datas for t in d.evaluation.texts]
        gold = [y for d in datas for y in d.evaluation.labels]
        labels = self.labels + sorted(set(gold) - set(self.labels))
        rows, _ = tokenize(self.tokenizer, texts, None, self.cfg.max_length)
        index = {label: i for i, label in enumerate(labels)}
        from ..engine.metrics import classification_metrics
        probs = predict_proba(self.model, rows, self.recipe.eval.batch_size, self.tokenizer.pad_token_id, self.precision)
        return classification_metrics([index[y] for y in gold], probs.argmax(-1).tolist(), labels)

    # ------------------------------------------------------------------ versions on disk

    def save_version(self, folder: Path, experience: str, row: list[float]) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        runs.save_model(folder, self.model, self.tokenizer)
        runs.write_json(folder / "replay.json", {"items": self.buffer.items, "seen": self.buffer.seen})
        if self.fisher is not None:  # safetensors: loading it can never run code
            from safetensors.torch import save_file
            save_file({**{f"fisher.{k}": v.contiguous() for k, v in self.fisher.items()},
                       **{f"anchor.{k}": v.contiguous() for k, v in self.anchor.items()}}, str(folder / EWC_FILE))
        runs.write_json(folder / "version.json", {"experience": experience, "labels": self.labels, "accuracies": row,
                                                  "train": self.train_stats})

    @classmethod
    def load(cls, recipe, folder: Path) -> "Learner":
        learner = cls(recipe, folder / runs.MODEL_DIR)
        saved = runs.read_json(folder / "replay.json")
        learner.buffer = Reservoir(recipe.method.replay_size, recipe.train.seed + 1000, saved.get("items"), saved.get("seen"))
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
            raise TunesmithError(f"{folder / EWC_FILE} cannot be read ({err}); it is damaged. Roll back to an earlier "
                                 "version (`tunesmith runs versions RUN --rollback N`) or retrain.") from None
        split = {part: {k.split(".", 1)[1]: v for k, v in flat.items() if k.startswith(part + ".")} for part in ("fisher", "anchor")}
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
        raise TunesmithError(f"{run_dir / STATE_FILE} is {problem or 'damaged (keys missing)'}; the run's version history "
                             "cannot be read. Restore the file from a copy, or train the run again.")
    return state


def update_run(run_dir: Path, experience: Experience, max_forgetting: float | None = None) -> dict:
    """Train version N+1 from the current version on a new experience, with the run's strategy and saved
    state; refuse it (nothing written) when old-data accuracy drops by more than `max_forgetting`."""
    from ..errors import TunesmithError
    from ..recipe import load_recipe
    run_dir = runs.open_finished(run_dir)
    state = read_state(run_dir, "`tunesmith update` needs method: continual.")
    recipe = load_recipe(runs.read_yaml(run_dir / runs.RECIPE_FILE))
    exps = [Experience.model_validate(e) for e in state["experiences"]] + [experience]
    datas = [load_classification(e.data, recipe.train.seed) for e in exps]
    learner = Learner.load(recipe, run_dir / VERSIONS_DIR / f"v{state['current']}")
    before = learner.scores(datas[:-1])
    runs.set_status(run_dir, "running")  # an interrupted update must not pass for a finished run
    try:
        with own_accelerate_state():
            learner.learn(datas[-1], run_dir / runs.LOG_FILE)
        row = learner.scores(datas)
        drop = sum(before) / len(before) - sum(row[:-1]) / len(before)
        console.print(f"old experiences: accuracy {sum(before) / len(before):.4f} -> {sum(row[:-1]) / len(before):.4f}; "
                      f"new ({experience.name}): {row[-1]:.4f}")
        if max_forgetting is not None and drop > max_forgetting:
            raise TunesmithError(
                f"update refused: accuracy on the earlier experiences fell by {drop:.4f} (> --max-forgetting {max_forgetting}). "
                f"Version {state['current']} stays current; try more replay (method.replay_ratio) or a stronger method.ewc_lambda.")
        version = 1 + max(int(p.name[1:]) for p in (run_dir / VERSIONS_DIR).glob("v*"))
        learner.save_version(run_dir / VERSIONS_DIR / f"v{version}", experience.name, row)
        matrix = [r + [None] for r in state["matrix"]] + [row]
        state.update(current=version, experiences=[e.model_dump(mode="json") for e in exps], matrix=matrix,
                     initial=state["initial"] + [None], lineage=state["lineage"] + [version])
        metrics = finish(run_dir, recipe, learner, datas, state)
    finally:
        runs.set_status(run_dir, "finished")
    return metrics


def list_versions(run_dir: Path) -> tuple[int, list[dict]]:
    state = read_state(Path(run_dir), "versions exist for method: continual runs.")
    out = []
    for folder in sorted((Path(run_dir) / VERSIONS_DIR).glob("v*"), key=lambda p: int(p.name[1:])):
        info = runs.read_json(folder / "version.json")
        acc = info.get("accuracies", [])
        out.append({"version": int(folder.name[1:]), "experience": info.get("experience"), "labels": len(info.get("labels", [])),
                    "mean_accuracy": sum(acc) / len(acc) if acc else None, "accuracies": acc})
    return state["current"], out


def rollback(run_dir: Path, version: int) -> None:
    """Make an earlier version current: its model goes to the top of the run; later updates start from it."""
    from ..errors import TunesmithError
    run_dir = runs.open_finished(run_dir)
    folder = run_dir / VERSIONS_DIR / f"v{version}"
    if not (folder / runs.MODEL_DIR).is_dir():
        raise TunesmithError(f"{run_dir} has no version {version}; `tunesmith runs versions {run_dir}` lists them.")
    state = read_state(run_dir, "versions exist for method: continual runs.")
    if version not in state["lineage"]:
        raise TunesmithError(f"version {version} was trained on a history that an earlier rollback abandoned; "
                             f"versions on the current history: {state['lineage']}.")
    keep = state["lineage"].index(version) + 1  # the history of that version: its rows and experiences
    state.update(current=version, lineage=state["lineage"][:keep], experiences=state["experiences"][:keep],
                 initial=state["initial"][:keep], matrix=[row[:keep] for row in state["matrix"][:keep]])
    shutil.rmtree(run_dir / runs.MODEL_DIR, ignore_errors=True)
    shutil.copytree(folder / runs.MODEL_DIR, run_dir / runs.MODEL_DIR)
    runs.write_json(run_dir / STATE_FILE, state)
