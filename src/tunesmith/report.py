"""A Markdown report with PNG plots: loss curves, confusion matrix, base vs tuned."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402

from .evaluate import HEADLINE  # noqa: E402


def write_report(run_dir: Path, metrics: dict, labels: list[str]) -> Path:
    plots = run_dir / "plots"
    plots.mkdir(exist_ok=True)
    log = read_log(run_dir)
    loss_plot(log, plots / "loss.png")
    _comparison_plot(metrics, plots / "base_vs_tuned.png")
    _confusion_plot(metrics["tuned"]["confusion_matrix"], labels, plots / "confusion_matrix.png")
    path = run_dir / "report.md"
    path.write_text(_markdown(metrics, labels), encoding="utf-8")
    return path


def read_log(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text(encoding="utf-8").splitlines() if line]


def _markdown(m: dict, labels: list[str]) -> str:
    rows = "\n".join(f"| {k} | {_fmt(m['base'].get(k))} | {m['tuned'][k]:.4f} | {_delta(m, k)} |" for k in HEADLINE)
    per_class = "\n".join(
        f"| {label} | {m['tuned']['per_class'][label]['precision']:.3f} | {m['tuned']['per_class'][label]['recall']:.3f} "
        f"| {m['tuned']['per_class'][label]['f1-score']:.3f} | {int(m['tuned']['per_class'][label]['support'])} |" for label in labels)
    t = m["train"]
    return f"""# tunesmith run report

Model `{m['model']}`, task {m['task']}, method {m['method']}; evaluated on the {m['eval_set']} set ({m['eval_size']} examples).
Base = {m['base'].get('kind', 'linear probe on the frozen base model')}.

## Base vs tuned

| metric | base | tuned | change |
|---|---|---|---|
{rows}

![base vs tuned](plots/base_vs_tuned.png)

## Training

{t['epochs']} epoch(s), best epoch {t['best_epoch']}, {t['runtime_s']:.1f} s, {t['samples_per_s']:.1f} samples/s, precision {t['precision']}, lr {t['lr']}.

![loss](plots/loss.png)

## Per class (tuned)

| label | precision | recall | F1 | support |
|---|---|---|---|---|
{per_class}

![confusion matrix](plots/confusion_matrix.png)
"""


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _delta(m: dict, key: str) -> str:
    base = m["base"].get(key)
    return "n/a" if base is None else f"{m['tuned'][key] - base:+.4f}"


def loss_plot(log: list[dict], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    steps = [r for r in log if "loss" in r]
    ax.plot([r["step"] for r in steps], [r["loss"] for r in steps], label="train loss")
    evals = [r for r in log if "eval" in r]
    ax.plot([r["step"] for r in evals], [r["eval"]["loss"] for r in evals], "o-", label="validation loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.legend()
    save_figure(fig, path)


def _comparison_plot(m: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    x = range(len(HEADLINE))
    ax.bar([i - 0.2 for i in x], [m["base"].get(k, 0) for k in HEADLINE], width=0.4, label="base")
    ax.bar([i + 0.2 for i in x], [m["tuned"][k] for k in HEADLINE], width=0.4, label="tuned")
    ax.set_xticks(list(x), HEADLINE)
    ax.set_ylim(0, 1)
    ax.legend()
    save_figure(fig, path)


def _confusion_plot(matrix: list[list[int]], labels: list[str], path: Path) -> None:
    size = max(4, 0.35 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if len(labels) <= 12:
        for i, row in enumerate(matrix):
            for j, value in enumerate(row):
                ax.text(j, i, str(value), ha="center", va="center", fontsize=8)
    save_figure(fig, path)


def save_figure(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
