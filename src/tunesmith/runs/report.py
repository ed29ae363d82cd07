"""A Markdown report with PNG plots: loss curves, confusion matrix, base vs tuned."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402

from ..engine.metrics import HEADLINE  # noqa: E402


def write_report(run_dir: Path, metrics: dict, labels: list[str]) -> Path:
    plots = run_dir / "plots"
    plots.mkdir(exist_ok=True)
    log = read_log(run_dir)
    loss_plot(log, plots / "loss.png")
    _comparison_plot(metrics, plots / "base_vs_tuned.png")
    _confusion_plot(metrics["tuned"]["confusion_matrix"], labels, plots / "confusion_matrix.png")
    _confusion_plot(
        metrics["tuned"]["confusion_matrix"], labels, plots / "confusion_matrix_normalized.png", normalize=True
    )
    path = run_dir / "report.md"
    path.write_text(_markdown(metrics, labels), encoding="utf-8")
    return path


def read_log(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text(encoding="utf-8").splitlines() if line]


def _markdown(m: dict, labels: list[str]) -> str:
    rows = "\n".join(f"| {k} | {_fmt(m['base'].get(k))} | {m['tuned'][k]:.4f} | {_delta(m, k)} |" for k in HEADLINE)
    per_class = "\n".join(
        f"| {label} | {m['tuned']['per_class'][label]['precision']:.3f} | "
        f"{m['tuned']['per_class'][label]['recall']:.3f} "
        f"| {m['tuned']['per_class'][label]['f1-score']:.3f} | {int(m['tuned']['per_class'][label]['support'])} |"
        for label in labels
    )
    t = m["train"]
    return f"""# tunesmith run report

Model `{m["model"]}`, task {m["task"]}, method {m["method"]}; evaluated on the {m["eval_set"]} set
({m["eval_size"]} examples).
Base = {m["base"].get("kind", "linear probe on the frozen base model")}. Macro averages run over the labels present
in the evaluation set's references or predictions.
{warnings_section(m)}
## Base vs tuned

| metric | base | tuned | change |
|---|---|---|---|
{rows}

![base vs tuned](plots/base_vs_tuned.png)

## Training

{t["epochs"]} epoch(s), best epoch {t["best_epoch"]}, {t["runtime_s"]:.1f} s, {t["samples_per_s"]:.1f}
samples/s, precision {t["precision"]}, lr {t["lr"]}.

![loss](plots/loss.png)

## Per class (tuned)

| label | precision | recall | F1 | support |
|---|---|---|---|---|
{per_class}

![confusion matrix](plots/confusion_matrix.png) ![confusion matrix, shares](plots/confusion_matrix_normalized.png)
"""


def warnings_section(m: dict) -> str:
    """The outcome warnings (collapse, worse than base), first thing a reader sees after the title."""
    found = m.get("outcome_warnings") or []
    return "" if not found else "\n## Warnings\n\n" + "\n".join(f"- **{w}**" for w in found) + "\n"


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _delta(m: dict, key: str) -> str:
    base = m["base"].get(key)
    return "n/a" if base is None else f"{m['tuned'][key] - base:+.4f}"


def loss_plot(log: list[dict], path: Path, metric: str | None = None) -> None:
    """Training and validation loss by step, the validation metric on a second axis, the kept (best) epoch marked."""
    fig, ax = plt.subplots(figsize=(7, 4))
    steps = [r for r in log if "loss" in r]
    ax.plot([r["step"] for r in steps], [r["loss"] for r in steps], label="train loss", color="tab:blue", alpha=0.8)
    evals = [r for r in log if "eval" in r]
    ax.plot(
        [r["step"] for r in evals],
        [r["eval"].get("loss") for r in evals],
        "o-",
        label="validation loss",
        color="tab:orange",
    )
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    metric = metric or next(
        (
            k
            for k in ("f1_macro", "accuracy", "exact_match", "rouge_l")
            if evals and isinstance(evals[0]["eval"].get(k), (int, float))
        ),
        None,
    )
    if metric:
        twin = ax.twinx()
        twin.plot(
            [r["step"] for r in evals],
            [r["eval"][metric] for r in evals],
            "s--",
            color="tab:green",
            label=f"validation {metric}",
        )
        twin.set_ylabel(f"validation {metric}")
    best = [r for r in evals if r.get("best")]
    if best:
        ax.axvline(
            best[-1]["step"], color="grey", linestyle=":", label=f"kept: epoch {best[-1]['epoch']} (best validation)"
        )
    lines = ax.get_lines() + (twin.get_lines() if metric else [])
    ax.legend(
        lines,
        [line.get_label() for line in lines],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.18),
        ncol=2,
        fontsize=8,
        frameon=False,
    )
    save_figure(fig, path)


def _comparison_plot(m: dict, path: Path) -> None:
    """Base vs tuned per metric, each bar labelled with its value; the axis zooms to the values so a gain
    of 0.007 is visible (and says where it starts)."""
    keys = [k for k in HEADLINE if isinstance(m["tuned"].get(k), (int, float))]
    base = [m["base"].get(k) for k in keys]
    tuned = [m["tuned"][k] for k in keys]
    fig, ax = plt.subplots(figsize=(7, 4))
    x = range(len(keys))
    bars = [
        ax.bar([i - 0.2 for i in x], [b or 0 for b in base], width=0.4, label="base", color="tab:grey"),
        ax.bar([i + 0.2 for i in x], tuned, width=0.4, label="tuned", color="tab:blue"),
    ]
    for group, values in zip(bars, (base, tuned)):
        ax.bar_label(group, labels=["n/a" if v is None else f"{v:.3f}" for v in values], fontsize=8, padding=2)
    shown = [v for v in base + tuned if v is not None]
    low, high = min(shown), max(shown)
    margin = max(0.02, (high - low) * 0.6)
    bottom = 0.0 if low - margin < 0.15 else low - margin
    ax.set_ylim(bottom, min(1.0, high + margin) if high <= 1 else high + margin)
    if bottom > 0:
        ax.set_ylabel(f"score (axis starts at {bottom:.2f})")
    ax.set_xticks(list(x), keys)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, frameon=False)
    save_figure(fig, path)


def _confusion_plot(matrix: list[list[int]], labels: list[str], path: Path, normalize: bool = False) -> None:
    """scikit-learn's display: counts (or shares of each true class) in every cell, and a colour bar."""
    import numpy as np
    from sklearn.metrics import ConfusionMatrixDisplay

    values = np.asarray(matrix, dtype=float)
    if normalize:
        values = values / np.clip(values.sum(1, keepdims=True), 1, None)
    size = max(5, 0.4 * len(labels) + 3)
    fig, ax = plt.subplots(figsize=(size, size))
    display = ConfusionMatrixDisplay(values if normalize else np.asarray(matrix), display_labels=labels)
    display.plot(
        ax=ax,
        cmap="Blues",
        colorbar=True,
        xticks_rotation="vertical",
        include_values=len(labels) <= 30,
        values_format=".2f" if normalize else "d",
    )
    ax.set_title("share of each true class" if normalize else "counts")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    save_figure(fig, path)


def save_figure(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
