"""report.md of a token-classification run: entity F1 base vs tuned, per entity type, the loss curve."""

from __future__ import annotations

from pathlib import Path

from ..engine.metrics import ENTITY_KEYS as KEYS


def write_report(run_dir: Path, metrics: dict) -> None:
    from ..runs.report import loss_plot, read_log, warnings_section

    (run_dir / "plots").mkdir(exist_ok=True)
    loss_plot(read_log(run_dir), run_dir / "plots" / "loss.png", metric="f1")
    base, tuned, t = metrics["base"], metrics["tuned"], metrics["train"]
    rows = "\n".join(
        f"| {k} | {base[k]:.4f} | {tuned[k]:.4f} | {tuned[k] - base[k]:+.4f} |"
        if k in base
        else f"| {k} | n/a | {tuned[k]:.4f} | n/a |"
        for k in KEYS
    )
    base_types = base.get("per_type", {})  # which types fine-tuning improved, beside the tuned figures
    base_f1 = lambda kind: f"{base_types[kind]['f1-score']:.3f}" if kind in base_types else "n/a"  # noqa: E731
    per = "\n".join(
        f"| {kind} | {base_f1(kind)} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1-score']:.3f} | "
        f"{int(v['support'])} |"
        for kind, v in tuned.get("per_type", {}).items()
    )
    start = (
        "\nThe tag head started as the base line's per-token probe (`method.head_init`), not from random numbers."
        if t.get("head_start") == "probe"
        else ""
    )
    (run_dir / "report.md").write_text(
        f"""# tunesmith run report

Model `{metrics["model"]}`, token classification (entity types: {", ".join(metrics["entity_types"])}); evaluated on the
{metrics["eval_set"]} set ({metrics["eval_size"]} sentences), entity-level scores in strict IOB2 mode (seqeval).
Base = {base.get("kind", "none")}.
{warnings_section(metrics)}
## Base vs tuned

| metric | base | tuned | change |
|---|---|---|---|
{rows}

## Per entity type

| type | base F1 | tuned precision | tuned recall | tuned F1 | support |
|---|---|---|---|---|---|
{per}

## Training

{t["epochs"]} epoch(s), best epoch {t["best_epoch"]}, {t["runtime_s"]:.1f} s, {t["samples_per_s"]:.1f}
sentences/s, lr {t["lr"]};
{t["truncated"]} training text(s) longer than train.max_length, trained as overlapping windows of words.{start}

![loss](plots/loss.png)
""",
        encoding="utf-8",
    )
