"""The tables the CLI prints: base vs tuned, mean ± std over seeds, the continual accuracy matrix, stage by stage."""

from __future__ import annotations

import logging

from rich.table import Table
from rich.text import Text

from ..engine.metrics import HELDOUT_KEYS, shown_keys
from .app import err, out


def plain(value) -> Text:
    """A cell or title read from a run folder, shown as written: `[/]` in a model name or label is text, not a
    rich markup tag (a stray one would stop the listing). Text that already carries its own style passes."""
    return value if isinstance(value, Text) else Text(str(value))


def print_comparison(metrics: dict) -> None:
    if "per_seed" in metrics:
        table = Table("metric", "base", "tuned", title=f"{metrics['model']}, mean ± std over seeds {metrics['seeds']}")
        for k in shown_keys(metrics["tuned"]):
            table.add_row(
                k,
                f"{metrics['base'][k]:.4f} ± {metrics['base_std'][k]:.4f}",
                f"{metrics['tuned'][k]:.4f} ± {metrics['tuned_std'][k]:.4f}",
            )
        out.print(table)
    elif "continual" in metrics:
        _print_matrix(metrics)
    elif "stages" in metrics:
        columns = {"base": metrics["base"], **{f"after {s['name']}": s["target"] for s in metrics["stages"]}}
        if "direct" in metrics:
            columns["direct (control)"] = metrics["direct"]
        print_metrics(
            columns,
            keys=shown_keys(metrics["stages"][-1]["target"]),
            title=f"{metrics['model']}: the target task, stage by stage",
        )
    elif metrics["task"] == "domain_adaptation":
        print_metrics(
            {"base": metrics["base"], "adapted": metrics["tuned"]},
            keys=HELDOUT_KEYS,
            title=f"{metrics['model']} on held-out domain text ({metrics['corpus']['heldout_blocks']} blocks)",
        )
    else:
        size = (
            f"{metrics['generated']} prompts" if metrics["task"] == "generation" else f"{metrics['eval_size']} examples"
        )
        print_metrics(
            {"base": metrics["base"], "tuned": metrics["tuned"]},
            keys=shown_keys(metrics["tuned"]),
            title=f"{metrics['model']} on the {metrics['eval_set']} set ({size})",
        )
    kind = (metrics.get("base") or {}).get("kind")
    if kind:
        err.print(f"base = the model before fine-tuning, scored as a {kind}.", highlight=False)
    for warning in metrics.get("outcome_warnings") or []:  # the run logged them already: the filter says each once
        logging.getLogger("tunesmith").warning(warning)


def _print_matrix(metrics: dict) -> None:
    c = metrics["continual"]
    columns = {f"after {name}": dict(zip(c["experiences"], row)) for name, row in zip(c["experiences"], c["matrix"])}
    metric = c.get("metric", "accuracy")  # f1, micro-F1 or R² for other tasks: the matrix says which it holds
    table = Table("evaluated on", *columns, title=f"{metrics['model']}: {metric} matrix ({' + '.join(c['strategy'])})")
    for name in c["experiences"]:
        table.add_row(name, *(f"{col[name]:.4f}" if col.get(name) is not None else "-" for col in columns.values()))
    out.print(table)  # the average and BWT: the run's log line just before, not printed twice


def print_metrics(columns: dict[str, dict], title: str | None = None, keys=None) -> None:
    table = Table("metric", *columns, title=title)
    for key in keys or shown_keys(*columns.values()):
        table.add_row(
            key, *(f"{c[key]:.4f}" if isinstance(c.get(key), (int, float)) else "n/a" for c in columns.values())
        )
    out.print(table)
