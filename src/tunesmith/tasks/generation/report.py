"""report.md for generation runs: base vs tuned metrics, loss curves, sample answers side by side."""

from __future__ import annotations

from pathlib import Path

from ...engine.metrics import GENERATION_KEYS
from ...runs.report import loss_plot, read_log, warnings_section

SHOWN_SAMPLES = 8


def write_generation_report(run_dir: Path, metrics: dict, samples: list[dict]) -> Path:
    plots = run_dir / "plots"
    plots.mkdir(exist_ok=True)
    loss_plot(read_log(run_dir), plots / "loss.png")
    path = run_dir / "report.md"
    path.write_text(_markdown(metrics, samples), encoding="utf-8")
    return path


def _metric_row(key: str, base: float | None, tuned: float) -> str:
    if base is None:  # eval.baseline: none, or a metric the base side has no figure for
        return f"| {key} | — | {tuned:.4f} | — |"
    return f"| {key} | {base:.4f} | {tuned:.4f} | {tuned - base:+.4f} |"


def _cell(text: str | None, limit: int = 300) -> str:
    if text is None:
        return "—"
    text = " ".join(text.split())
    text = text if len(text) <= limit else text[:limit] + " …"
    return text.replace("|", "\\|")


def _prompt_text(prompt) -> str:
    return " / ".join(f"{m['role']}: {m['content']}" for m in prompt if m["role"] != "system")


def _markdown(m: dict, samples: list[dict]) -> str:
    rows = "\n".join(_metric_row(k, m["base"].get(k), m["tuned"][k]) for k in GENERATION_KEYS if k in m["tuned"])
    table = "\n".join(
        f"| {_cell(_prompt_text(s['prompt']))} | {_cell(s['reference'])} | {_cell(s['base'])} | {_cell(s['tuned'])} |"
        for s in samples[:SHOWN_SAMPLES]
    )
    t, d = m["train"], m["data"]
    return f"""# tunesmith run report

Model `{m["model"]}`, task generation ({d["format"]}), {m["tuning"]} fine-tuning; evaluated on the {m["eval_set"]} set
({m["eval_size"]} samples for loss, {m["generated"]} generated answers, metric: {m["generation_metric"]}).
{warnings_section(m)}
## Base vs tuned

| metric | base | tuned | change |
|---|---|---|---|
{rows}

## Training

{t["epochs"]} epoch(s), best epoch {t["best_epoch"]}, {t["runtime_s"]:.1f} s, {t["tokens_per_s"]:.0f} tokens/s,
packing {"on" if t["packing"] else "off"}, precision {t["precision"]}, lr {t["lr"]}. {d["train_samples"]}
training samples,
{d["truncated"]} cut at max_length, {d["fully_masked"]} dropped (no response token left).

![loss](plots/loss.png)

## Sample answers (all in generations.jsonl)

| prompt | reference | base | tuned |
|---|---|---|---|
{table}
"""
