"""report.md of a continual run: the score matrix (accuracy, micro-F1 or entity F1) as a heat map and as lines,
and the forgetting figures."""

from __future__ import annotations

from pathlib import Path

from ..runs.report import plt


def write_continual_report(run_dir: Path, m: dict) -> Path:
    c = m["continual"]
    names, matrix, metric = c["experiences"], c["matrix"], c.get("metric", "accuracy")
    plots = run_dir / "plots"
    plots.mkdir(exist_ok=True)
    _heatmap(matrix, names, plots / "accuracy_matrix.png")
    _lines(matrix, names, plots / "accuracy_over_time.png", metric)
    cell = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
    header = "| after \\ on | " + " | ".join(names) + " |\n|" + "---|" * (len(names) + 1)
    rows = "\n".join(f"| {names[i]} | " + " | ".join(cell(v) for v in row) + " |" for i, row in enumerate(matrix))
    initial = "| (before training) | " + " | ".join(cell(v) for v in c["initial"]) + " |"
    fwt = "n/a" if c["fwt"] is None else f"{c['fwt']:+.4f}"
    text = f"""# tunesmith continual run

Model `{m["model"]}`, strategy {" + ".join(c["strategy"])}, version {c["version"]}; labels {", ".join(m["labels"])}.

| average {metric} (last row) | backward transfer (BWT) | forward transfer (FWT) |
|---|---|---|
| {c["average_accuracy"]:.4f} | {c["bwt"]:+.4f} | {fwt} |

BWT is the mean change on earlier experiences' sets between just after learning them and now (negative =
forgotten); FWT the mean gain on an experience's set from the experiences before it, against an untrained head.

## {metric} matrix (row: after training on; column: evaluated on)

{header}
{initial}
{rows}

![accuracy matrix](plots/accuracy_matrix.png)

![accuracy over time](plots/accuracy_over_time.png)

Over all evaluation sets together, the current model: {_overall(m["tuned"])}.
{_base_line(m.get("base"))}"""
    path = run_dir / "report.md"
    path.write_text(text, encoding="utf-8")
    return path


def _base_line(base: dict | None) -> str:
    if not base:
        return ""
    return (
        f"\nThe base model on the same sets: {_overall(base)} (base = the model before fine-tuning, read through a "
        "linear probe, a ridge regression for scores, fitted on every experience's training data).\n"
    )


def _overall(tuned: dict) -> str:
    names = {
        "accuracy": "accuracy",
        "f1_macro": "macro-F1",
        "f1_micro": "micro-F1",
        "f1": "entity F1",
        "r2": "R²",
        "spearman": "Spearman",
    }
    return ", ".join(f"{label} {tuned[key]:.4f}" for key, label in names.items() if key in tuned)


def _heatmap(matrix, names, path: Path) -> None:
    import numpy as np

    values = np.array(
        [[np.nan if v is None else v for v in row] + [np.nan] * (len(names) - len(row)) for row in matrix]
    )
    fig, ax = plt.subplots(figsize=(1.2 * len(names) + 2, 1.0 * len(names) + 1.5))
    image = ax.imshow(values, vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_yticks(range(len(matrix)), names[: len(matrix)])
    ax.set_xlabel("evaluated on")
    ax.set_ylabel("after training on")
    for i, row in enumerate(values):
        for j, v in enumerate(row):
            if not np.isnan(v):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", color="w" if v < 0.6 else "k", fontsize=8)
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _lines(matrix, names, path: Path, metric: str) -> None:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for j, name in enumerate(names):
        points = [(i, row[j]) for i, row in enumerate(matrix) if j < len(row) and row[j] is not None and i >= j]
        if points:
            ax.plot([p[0] + 1 for p in points], [p[1] for p in points], marker="o", label=name)
    ax.set_xticks(range(1, len(matrix) + 1))
    ax.set_xlabel("after experience")
    ax.set_ylabel(metric)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
