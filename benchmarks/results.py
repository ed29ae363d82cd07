"""The benchmarks' published figures: one JSON file per benchmark in benchmarks/results/, and the README that is
rendered from them (`python benchmarks/results.py render`), so the README holds only the current figure of each.

A benchmark script calls `publish(...)` with its table when run with `--publish`; that replaces the benchmark's
file (the figures it supersedes stay in git history) and re-renders benchmarks/README.md.

Each file: script, title, command, baseline, cpu, date, commit, tables ([{columns, rows}]) and reading (what the
figures say, in a sentence or two).
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
README = HERE / "README.md"
ORDER = [  # the README's order: the headline comparisons first
    "classification_sst2",
    "speed",
    "defaults",
    "sft_vs_trl",
    "few_shot",
    "few_shot_multilabel",
    "ner",
    "long_documents",
    "multilabel",
    "regression_stsb",
    "recipes_base_vs_tuned",
    "generation_recipes",
    "generation_cases",
    "preference_vs_trl",
    "sweep",
    "staged",
    "continual",
    "head_init",
    "head_init_tags",
    "head_init_regression",
    "auto_cost",
    "memory_sft",
    "sft_micro_batch",
    "bf16_ab",
    "data_check",
    "serve",
    "serve_soak",
    "tracking_overhead",
    "ui_load",
    "closed_loop",
    "closed_loop_chat",
    "scale",
    "scale_generation",
    "hostile_probe",
]
HEAD = """# Benchmarks

Each script runs tunesmith and its baseline side by side in one run and prints both figures and their ratio;
quote ratios and medians, not absolute times (machines are noisy, and each figure names its CPU). This file is
generated from `benchmarks/results/*.json` (`python benchmarks/results.py render`): a script run with
`--publish` replaces its own entry. Older figures live in git history.
"""


def cpu_name() -> str:
    """The CPU's name, core count and the flags that decide precision (AMX: native bf16; AVX512-BF16; AVX2)."""
    from tunesmith.engine.hardware import cpu

    name, flags = cpu()
    isa = "AMX" if "amx_bf16" in flags else "AVX512-BF16, no AMX" if "avx512_bf16" in flags else "AVX2, no AVX512-BF16"
    return f"{os.cpu_count()}-core {name} ({isa})"


def commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def publish(
    name: str,
    *,
    title: str,
    baseline: str,
    tables: list[dict],
    reading: str,
    command: str | None = None,
    script: str | None = None,
) -> Path:
    """Write benchmarks/results/NAME.json for this run (date, commit and CPU filled in) and re-render the README.
    `script`: the script's file where it publishes under another name (one per --task)."""
    entry = {
        "script": script or f"{name}.py",
        "title": title,
        "command": command or "python " + " ".join(sys.argv),
        "baseline": baseline,
        "cpu": cpu_name(),
        "date": datetime.date.today().isoformat(),
        "commit": commit(),
        "tables": tables,
        "reading": reading,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(entry, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    README.write_text(render(), encoding="utf-8")
    return path


def _table(table: dict) -> list[str]:
    cells = lambda row: "| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |"  # noqa: E731
    lines = [f"{table['caption']}", ""] if table.get("caption") else []
    return [*lines, cells(table["columns"]), "|" + "---|" * len(table["columns"]), *map(cells, table["rows"]), ""]


def section(entry: dict) -> list[str]:
    script = entry["script"]
    lines = [f"## `{script}` — {entry['title']}" if script.endswith(".py") else f"## {entry['title']}", ""]
    lines += [
        f"Measured {entry['date']} at commit `{entry['commit']}` on {entry['cpu']}. Baseline: {entry['baseline']}",
        "",
    ]
    if entry.get("command"):
        lines += ["```bash", entry["command"], "```", ""]
    for table in entry["tables"]:
        lines += _table(table)
    if entry.get("reading"):
        lines += [entry["reading"], ""]
    return lines


def render() -> str:
    names = [p.stem for p in RESULTS.glob("*.json")]
    unknown = sorted(set(names) - set(ORDER))
    lines = [HEAD]
    for name in [n for n in ORDER if n in names] + unknown:
        lines += section(json.loads((RESULTS / f"{name}.json").read_text(encoding="utf-8")))
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    if sys.argv[1:] != ["render"]:
        sys.exit("usage: python benchmarks/results.py render")
    README.write_text(render(), encoding="utf-8")
    print(f"wrote {README}")
