"""report.md of a staged run: one table, stage by stage, of what each stage bought on the target."""

from __future__ import annotations

from pathlib import Path

from ..engine.metrics import HEADLINE_METRIC, shown_keys
from ..runs.report import plt


def write_stage_report(run_dir: Path, m: dict) -> Path:
    keys = [k for k in shown_keys(*(s["target"] for s in m["stages"])) if k in m["tuned"]]
    header = (
        "| after | method | own data (base -> tuned) | "
        + " | ".join(f"target {k}" for k in keys)
        + " | on the target: |"
    )
    rows = [header, "|" + "---|" * (len(keys) + 4)]
    if m["base"]:
        rows.append("| base model | - | - | " + " | ".join(_fmt(m["base"].get(k)) for k in keys) + " | linear probe |")
    for stage in m["stages"]:
        rows.append(
            f"| {stage['name']} | {stage['method']} | {_own(stage['own'])} | "
            + " | ".join(_fmt(stage["target"].get(k)) for k in keys)
            + f" | {stage['target_kind']} |"
        )
    if "direct" in m:
        rows.append(
            "| control: target alone from the base model | - | - | "
            + " | ".join(_fmt(m["direct"].get(k)) for k in keys)
            + " | final model |"
        )
    _plot(m, keys, run_dir / "plots" / "stages.png")
    final = m["stages"][-1]
    text = f"""# tunesmith staged run

Model `{m["model"]}`; {len(m["stages"])} stages, each starting from the previous stage's weights.
Target = the last stage's task ({m.get("eval_set", "?")} set). Intermediate stages are scored on the target with:
{m["target_eval"]}.

{chr(10).join(rows)}

![target metric per stage](plots/stages.png)

Each stage's own report: {", ".join(f"[{s['name']}]({s['dir']}/report.md)" for s in m["stages"])}.
The final model (stage `{final["name"]}`) is in this folder: `tunesmith predict`, `eval` and `chat` use it.
"""
    path = run_dir / "report.md"
    path.write_text(text, encoding="utf-8")
    return path


def _own(own: dict) -> str:
    tuned = own.get("tuned", {})
    key = next((k for k, _ in HEADLINE_METRIC if k in tuned), None)
    if key is None:
        return "-"
    base = own.get("base", {}).get(key)
    return f"{key} {_fmt(base)} -> {_fmt(tuned[key])}" if base is not None else f"{key} {_fmt(tuned[key])}"


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def _plot(m: dict, keys: list[str], path: Path) -> None:
    if not keys:
        return
    key = keys[1] if len(keys) > 1 and keys[0] == "accuracy" else keys[0]
    names = ["base"] + [s["name"] for s in m["stages"]] + (["direct"] if "direct" in m else [])
    values = (
        [m["base"].get(key)]
        + [s["target"].get(key) for s in m["stages"]]
        + ([m["direct"].get(key)] if "direct" in m else [])
    )
    path.parent.mkdir(exist_ok=True)
    fig, ax = plt.subplots(figsize=(max(4, 1.3 * len(names)), 3))
    ax.bar(
        names,
        [v or 0 for v in values],
        color=["#999"] + ["#4a7"] * len(m["stages"]) + (["#c84"] if "direct" in m else []),
    )
    ax.set_ylabel(f"target {key}")
    for i, v in enumerate(values):
        if v is not None:
            ax.text(i, v, f"{v:.3f}", ha="center", va="bottom", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
