"""Feedback collected by `tunesmith serve --collect` as a continual run's next experience, and the gated
update on it (`tunesmith update --from-feedback`, `tunesmith loop`).

The feedback not used by an earlier update (the run's state remembers how far it got) becomes a labeled file
in the run's feedback/<n>/ folder; a seeded share is held out and is never trained on: the new version must
beat the current one there, and lose no more than method.max_forgetting on the earlier experiences. A supervised
generation run learns from corrected and well-rated answers instead (generation_feedback.py)."""

from __future__ import annotations

import logging
import random
from pathlib import Path

from ..errors import TunesmithError
from ..recipe import DataSection, Experience, load_recipe
from ..runs import rundir as runs
from ..runs.collect import Store
from .continual import FEEDBACK_PREFIX, updatable, update_run

log = logging.getLogger(__name__)
FEEDBACK_DIR = "feedback"
KINDS = ("label", "labels", "value", "entities")  # the feedback kinds an encoder update trains on
CHAT_KINDS = ("answer", "rating")  # a generation run's (methods/generation_feedback.py)


def _run_state(run_dir: Path) -> tuple[Path, dict, object]:
    """(run directory, its version state, its recipe) of a run feedback can update: a continual run, or a
    supervised generation run (whose first update starts its versions)."""
    from .generation_feedback import is_generation

    run_dir = runs.open_finished(run_dir)
    recipe = load_recipe(runs.read_yaml(run_dir / runs.RECIPE_FILE))
    if is_generation(recipe):
        state = runs.read_json(run_dir / runs.CONTINUAL_FILE) if (run_dir / runs.CONTINUAL_FILE).exists() else {}
        return run_dir, state, recipe
    return (*updatable(run_dir), recipe)


def pending(run_dir: Path, store_dir: Path, model: str | None = None) -> tuple[list[dict], int]:
    """(the feedback rows no update has used yet, the last one's position)."""
    rows, last, _ = _pending(run_dir, store_dir, model)
    return rows, last


def _pending(run_dir: Path, store_dir: Path, model: str | None) -> tuple[list[dict], int, object]:
    """pending's rows and position, and the run's recipe (read once for the update that follows)."""
    from .generation_feedback import is_generation

    run_dir, state, recipe = _run_state(run_dir)
    store = Store(store_dir, readonly=True)
    try:
        rows = store.feedback(model or run_dir.name, after=state.get("feedback_seq", 0))
    finally:
        store.close()  # `loop` asks every few seconds: no connection left open per look
    if is_generation(recipe):
        usable = [r for r in rows if r["kind"] in CHAT_KINDS and isinstance(r["input"], list)]
    else:
        usable = [r for r in rows if r["kind"] in KINDS and isinstance(r["input"], str)]
        fit = [r for r in usable if r["kind"] != "entities" or _spans_fit(r["input"], r["value"])]
        if len(fit) < len(usable):  # stored by a server that did not check spans against the text yet
            log.warning(f"{len(usable) - len(fit)} entity correction(s) left out: their spans do not fit their text")
        usable = fit
    return usable, rows[-1]["seq"] if rows else state.get("feedback_seq", 0), recipe


def _spans_fit(text: str, spans) -> bool:
    """Whether the spans tag words of the text as a data file's would be read (data.tokens.check_spans)."""
    from ..data.tokens import check_spans

    try:
        check_spans(text, spans)
    except (TunesmithError, TypeError, AttributeError):  # not a list of span objects at all
        return False
    return True


def update_from_feedback(
    run_dir: Path,
    store_dir: Path,
    min_examples: int = 50,
    holdout: float = 0.2,
    model: str | None = None,
    gate: bool = True,
    max_forgetting: float | None = None,
) -> dict:
    """Train and gate the next version on the pending feedback; the returned metrics say what was decided.
    `gate=False` promotes whatever comes out (the reference the gate is measured against). `max_forgetting`:
    the budget for this update (default: the recipe's method.max_forgetting, else 0.01)."""
    from .generation_feedback import is_generation, update_generation

    run_dir = Path(run_dir)
    rows, last, recipe = _pending(run_dir, store_dir, model)
    if len(rows) < min_examples:
        raise TunesmithError(
            f"{len(rows)} new feedback row(s) for {model or run_dir.name}; an update waits for --min-examples "
            f"{min_examples}."
        )
    # a supervised generation recipe has no max_forgetting key: 1 point (of answer-token accuracy) by default
    default = getattr(recipe.method, "max_forgetting", 0.01)
    budget = None if not gate else max_forgetting if max_forgetting is not None else default
    if is_generation(recipe):
        return update_generation(run_dir, recipe, rows, {"feedback_seq": last}, holdout, budget, gate)
    experience = _experience(run_dir, recipe, rows, holdout)
    return update_run(run_dir, experience, budget, gate=gate, consumed={"feedback_seq": last})


def _experience(run_dir: Path, recipe, rows: list[dict], holdout: float) -> Experience:
    """The feedback as train.jsonl and holdout.jsonl in the run's feedback/<n>/, in the run's own column names."""
    base = recipe.data or recipe.experiences[-1].data
    table = [{base.text_column: r["input"], **_target(r["kind"], r["value"], base)} for r in rows]
    random.Random(recipe.train.seed + len(rows)).shuffle(table)
    cut = max(1, round(holdout * len(table)))
    used = [int(p.name) for p in (run_dir / FEEDBACK_DIR).glob("*") if p.name.isdigit()]
    folder = run_dir / FEEDBACK_DIR / str(1 + max(used, default=0))
    folder.mkdir(parents=True)
    for name, part in (("train.jsonl", table[cut:]), ("holdout.jsonl", table[:cut])):  # JSON lines: spans stay lists
        runs.write_jsonl(folder / name, part)
    section = DataSection.model_validate(
        {
            **base.model_dump(),
            "train": str(folder / "train.jsonl"),
            "validation": None,
            "test": str(folder / "holdout.jsonl"),
            "filter": None,
            "max_train_samples": None,
        }
    )
    return Experience(name=f"{FEEDBACK_PREFIX}{folder.name}", data=section)


def _target(kind: str, value, base) -> dict:
    """The feedback in the run's own columns: a label, labels joined by its separator, a value, or entity spans
    (the span form of token-classification data, beside the text)."""
    if kind == "labels":
        return {base.label_column: (base.label_separator or "|").join(value)}
    if kind == "entities":
        return {base.entities_column: value}
    return {base.label_column: value}
