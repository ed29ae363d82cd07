"""What the dashboard reads from a folder of runs: a row per run (cached on the files' change times, so a
page over hundreds of runs reads only the runs that changed), and one run's whole page.

Every run the browser names goes through `run_path`: a name of plain segments, resolved strictly inside the
folder the dashboard was given, holding a run.json. Nothing else under or outside it is ever read."""

from __future__ import annotations

import json
import re
from pathlib import Path

from ..engine.metrics import headline
from ..errors import TunesmithError
from ..runs import rundir
from ..runs.compare import section_name

SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+=@-]{0,200}$")  # no "..", no leading dot, no separators
MAX_LOG_BYTES = 20_000_000  # a train_log.jsonl larger than this is read from its end only
MAX_GENERATIONS = 50


class NotFound(TunesmithError):
    """A name that is not a run inside the dashboard's folder (or tries to leave it)."""


def run_path(root: Path, name: str) -> Path:
    parts = name.split("/")
    if len(parts) > 4 or not all(SEGMENT.match(p) for p in parts):
        raise NotFound(f"no run named {name!r}")
    path = root.joinpath(*parts)
    try:
        inside = path.resolve(strict=True).is_relative_to(root.resolve())
    except (OSError, RuntimeError):
        inside = False
    if not inside or not (path / rundir.RUN_FILE).is_file():  # a symlink out of the folder is refused too
        raise NotFound(f"no run named {name!r}")
    return path


class Index:
    """The runs directly under `root` (as `tunesmith runs list` shows them), one summary row each."""

    def __init__(self, root: Path):
        self.root, self._rows = root, {}

    def rows(self) -> list[dict]:
        found = sorted(p.parent for p in self.root.glob("*/" + rundir.RUN_FILE) if SEGMENT.match(p.parent.name))
        rows = [self._row(path) for path in found]
        names = {p.name for p in found}
        self._rows = {k: v for k, v in self._rows.items() if k in names}  # forget deleted runs
        return rows

    def _row(self, path: Path) -> dict:
        key = tuple(_stamp(path / name) for name in (rundir.RUN_FILE, rundir.METRICS_FILE, rundir.RECIPE_FILE))
        cached = self._rows.get(path.name)
        if cached and cached[0] == key and cached[1]["status"] != "running":
            return cached[1]
        row = summary(path)
        self._rows[path.name] = (key, row)
        return row


def _stamp(path: Path) -> tuple[int, int]:
    try:
        stat = path.stat()
        return stat.st_mtime_ns, stat.st_size
    except OSError:
        return 0, 0


def summary(path: Path) -> dict:
    """One run's row: never fails on a damaged file (the row says so instead)."""
    status = rundir.read_status(path)
    info = rundir.read_json(path / rundir.RUN_FILE)
    try:
        recipe = rundir.read_yaml(path / rundir.RECIPE_FILE)
    except TunesmithError:
        recipe, status = {}, "damaged"
    metrics = rundir.read_json(path / rundir.METRICS_FILE) if status == "finished" else {}
    train = metrics.get("train") if isinstance(metrics.get("train"), dict) else {}
    data = recipe.get("data") if isinstance(recipe.get("data"), dict) else {}
    row = {
        "name": path.name,
        "status": status,
        "task": metrics.get("task") or recipe.get("task") or "classification",
        "method": section_name(recipe.get("method"), "supervised"),
        "model": section_name(recipe.get("model"), ""),
        "data": Path(str(data.get("train") or data.get("path") or "")).name,
        "headline": headline(metrics) if metrics else "",
        "runtime_s": train.get("runtime_s"),
        "updated": info.get("updated", ""),
        "error": str(info.get("error", ""))[:300],
        "kind": _kind(recipe, metrics),
    }
    if status == "running":
        row["step"] = last_step(path)
    return row


def _kind(recipe: dict, metrics: dict) -> str:
    """What the run page has to show: single, seeds, stages or continual."""
    if metrics.get("continual") or section_name(recipe.get("method"), "") == "continual":
        return "continual"
    if recipe.get("stages"):
        return "stages"
    if (recipe.get("train") or {}).get("seeds", 1) not in (1, None):
        return "seeds"
    return "single"


def read_log(path: Path) -> list[dict]:
    """train_log.jsonl as records; lines cut short (a run writing right now) or not JSON objects are skipped."""
    log = path / rundir.LOG_FILE
    if not log.is_file():
        return []
    with log.open("rb") as handle:
        size = handle.seek(0, 2)
        handle.seek(max(0, size - MAX_LOG_BYTES))
        text = handle.read().decode("utf-8", errors="replace")
    records = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            records.append(record)
    return records


def last_step(path: Path) -> int:
    """The step of the log's last whole line, from its end only (the table asks for it on every refresh)."""
    log = path / rundir.LOG_FILE
    try:
        with log.open("rb") as handle:
            handle.seek(max(0, handle.seek(0, 2) - 4096))
            lines = handle.read().decode("utf-8", errors="replace").splitlines()
    except OSError:
        return 0
    for line in reversed(lines):
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            return record["step"]
    return 0


def joined(records: list[dict]) -> list[dict]:
    """One log with several trainings in it (a continual run's experiences, appended one after another) as
    one sequence: where the step count starts again, later steps and epochs are shifted past the earlier ones."""
    out, step_offset, epoch_offset, last_step, last_epoch = [], 0, 0, 0, 0
    for record in records:
        if record["step"] + step_offset < last_step:  # a new training began
            step_offset, epoch_offset = last_step, last_epoch
        shifted = {**record, "step": record["step"] + step_offset}
        if isinstance(record.get("epoch"), int):
            shifted["epoch"] = record["epoch"] + epoch_offset
            last_epoch = max(last_epoch, shifted["epoch"])
        last_step = max(last_step, shifted["step"])
        out.append(shifted)
    return out


def run_log(path: Path) -> list[dict]:
    """The run's training log; a staged run's is its stages' logs in order (each stage is its own run)."""
    if (path / rundir.LOG_FILE).is_file() or not (path / "stages").is_dir():
        return joined(read_log(path))
    stages = sorted((p for p in (path / "stages").iterdir() if p.is_dir()), key=lambda p: _stage_number(p.name))
    return joined([r for stage in stages for r in read_log(stage)])


def _stage_number(name: str) -> int:
    head = name.split("-", 1)[0]
    return int(head) if head.isdigit() else 0


def curves(records: list[dict]) -> dict:
    """Loss per step, validation metrics per epoch (at the step the epoch ended), and the kept epoch."""
    steps = [r for r in records if _number(r.get("loss"))]
    evals = [r for r in records if isinstance(r.get("eval"), dict)]
    keys = sorted({k for r in evals for k, v in r["eval"].items() if _number(v)})
    return {
        "train": {"step": [r["step"] for r in steps], "loss": [r["loss"] for r in steps]},
        "eval": {
            "step": [r["step"] for r in evals],
            "epoch": [r.get("epoch") for r in evals],
            "kept": [bool(r.get("best")) for r in evals],
            **{k: [r["eval"].get(k) if _number(r["eval"].get(k)) else None for r in evals] for k in keys},
        },
    }


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def detail(root: Path, name: str) -> dict:
    """Everything the run page shows, from the run's own files."""
    path = run_path(root, name)
    row = summary(path)
    metrics = rundir.read_json(path / rundir.METRICS_FILE)
    try:
        recipe_text = (path / rundir.RECIPE_FILE).read_text(encoding="utf-8")[:200_000]
    except (OSError, UnicodeDecodeError):
        recipe_text = ""
    children = sorted(
        str(p.parent.relative_to(root))
        for pattern in ("seed-*/" + rundir.RUN_FILE, "stages/*/" + rundir.RUN_FILE, "direct/" + rundir.RUN_FILE)
        for p in path.glob(pattern)
    )
    return {
        **row,
        "name": name,
        "recipe_text": recipe_text,
        "metrics": metrics,
        "curves": curves(run_log(path)),
        "data_check": rundir.read_json(path / "data_check.json"),
        "continual": rundir.read_json(path / rundir.CONTINUAL_FILE),
        "generations": _generations(path),
        "plots": sorted(p.name for p in (path / "plots").glob("*.png")) if (path / "plots").is_dir() else [],
        "children": children,
    }


def _generations(path: Path) -> list[dict]:
    """The first held-out prompts with the reference, the base model's and the tuned model's answers."""
    file = path / "generations.jsonl"
    out: list[dict] = []
    if not file.is_file():
        return out
    with file.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            try:
                record = json.loads(line)
            except (ValueError, RecursionError):
                continue
            if isinstance(record, dict):
                out.append({k: _text(record.get(k, ""))[:4000] for k in ("prompt", "reference", "base", "tuned")})
            if len(out) >= MAX_GENERATIONS:
                break
    return out


def _text(value) -> str:
    """A prompt as people read it: a chat's messages as `role: content` lines."""
    if isinstance(value, list) and all(isinstance(m, dict) for m in value):
        return "\n".join(f"{m.get('role', '')}: {m.get('content', '')}" for m in value)
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
