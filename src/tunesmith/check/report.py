"""The data check as Markdown (terminal and data_check.md) and JSON (data_check.json)."""

from __future__ import annotations

import json
from pathlib import Path

from .common import Report

MD_FILE, JSON_FILE = "data_check.md", "data_check.json"


def to_markdown(report: Report) -> str:
    n_err, n_warn = len(report.errors), len(report.warnings)
    verdict = (
        f"**{n_err} error(s): training would fail or learn nothing.**" if n_err else f"**OK** ({n_warn} warning(s))"
    )
    lines = ["# Data check", "", verdict, ""]
    for title, items in (("Errors", report.errors), ("Warnings", report.warnings)):
        if items:
            lines += [f"## {title}", "", *(f"- {item}" for item in items), ""]
    for entry in report.datasets:
        lines += _dataset(entry)
    return "\n".join(lines)


def _dataset(entry: dict) -> list[str]:
    lines = [f"## {entry['name']} ({entry['task']})", ""]
    if "documents" in entry:
        lines += [
            f"{entry['documents']:,} documents, {entry.get('characters', 0):,} characters, "
            f"{entry.get('duplicates', 0)} duplicate(s). {entry.get('note', '')}",
            "",
        ]
        return lines
    splits = entry.get("splits", {})
    if splits:
        lines += ["| split | file | format | rows | empty text | empty label |", "|---|---|---|---:|---:|---:|"]
        for split, info in splits.items():
            rows = f"{info['rows']:,}" + (
                f" (of {info['rows_in_file']:,} before data.filter)" if "rows_in_file" in info else ""
            )
            lines.append(
                f"| {split} | {info['file']} | {info['format']} | {rows} | {info.get('empty_text', '-')} | "
                f"{info.get('empty_label', '-')} |"
            )
        columns = next(iter(splits.values())).get("columns")
        lines += ["", f"Columns: {', '.join(columns)}" if columns else "", ""]
    if entry.get("labels"):
        names = sorted(set().union(*entry["labels"].values()))
        split_names = list(entry["labels"])
        lines += ["### Labels", "", "| label | " + " | ".join(split_names) + " |", "|---|" + "---:|" * len(split_names)]
        lines += [
            f"| {name} | " + " | ".join(str(entry["labels"][s].get(name, 0)) for s in split_names) + " |"
            for name in names
        ]
        lines += [
            "",
            f"Imbalance (largest / smallest class): "
            f"{str(entry['imbalance']) + 'x' if entry.get('imbalance') else 'n/a'}. Duplicate rows: "
            f"{entry.get('duplicates', 0)}. Texts with conflicting labels: {entry.get('conflicting_texts', 0)}.",
            "",
        ]
    elif "duplicates" in entry:
        lines += [f"Duplicate conversations: {entry['duplicates']}.", ""]
    if "template_round_trip" in entry:
        t = entry["template_round_trip"]
        lines += [
            f"Chat template round trip: {t['checked'] - t['lost_text']} of {t['checked']} conversations keep all "
            f"their text. Samples with every label masked: {entry.get('fully_masked', 0)}.",
            "",
        ]
    if entry.get("overlap_with_train"):
        lines += [
            "### Shared with the training data",
            "",
            "| split | exact | after normalising | rows |",
            "|---|---:|---:|---:|",
        ]
        lines += [
            f"| {s} | {o['exact']} | {o['normalised']} | {o['rows']} |" for s, o in entry["overlap_with_train"].items()
        ]
        lines.append("")
    if entry.get("lengths"):
        lines += _lengths(entry["lengths"])
    return lines


def _lengths(s: dict) -> list[str]:
    top = max(count for _, count in s["histogram"]) or 1
    lines = [
        f"### Token lengths (train{', seeded sample' if s['sampled'] else ''}, {s['count']:,} texts)",
        "",
        "| tokens | texts | |",
        "|---|---:|---|",
    ]
    lines += [f"| {bucket} | {count} | {'█' * round(20 * count / top)} |" for bucket, count in s["histogram"]]
    over = f"{s['truncated']} ({s['truncated_share']:.1%}) exceed max_length={s['max_length']}"
    fate = (
        "and are read in overlapping windows of words"
        if s.get("windowed")
        else f"and lose {s['tokens_cut_mean']} tokens on average"
    )
    lines += [
        "",
        f"Mean {s['mean']}, median {s['p50']}, 95th percentile {s['p95']}, longest {s['max']}. {over} {fate}.",
        "",
    ]
    return lines


def as_files(report: Report) -> dict[str, str]:
    """The report as the two files a run directory (or `data check -o`) keeps: name -> text."""
    return {MD_FILE: to_markdown(report), JSON_FILE: json.dumps(report.as_dict(), indent=2)}


def write(folder: Path, report: Report, overwrite: bool = False) -> None:
    """The report's files in `folder`; an existing file of the same name stays unless `overwrite`."""
    from ..data.writers import claim_output, written_whole

    files = {folder / name: text for name, text in as_files(report).items()}
    for path in files:
        claim_output(path, overwrite)
    for path, text in files.items():
        with written_whole(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
