"""check_recipe: the data check of every dataset a recipe trains on, dispatched by task."""

from __future__ import annotations

from ..errors import TunesmithError
from ..recipe import task_kind
from .chat import check_generation, check_preference
from .classification import check_classification, check_regression
from .common import Report
from .multilabel import check_multilabel
from .tokens import check_tokens

CHECKS = {
    "classification": check_classification,
    "multi_label": check_multilabel,
    "regression": check_regression,
    "token_classification": check_tokens,
    "generation": check_generation,
    "preference": check_preference,  # method preference on prompt/chosen/rejected files
}


def check_recipe(recipe) -> Report:
    """The report for every dataset the (validated) recipe would train and evaluate on."""
    from ..recipe import stage_recipe

    report = Report()
    if recipe.stages:
        for i, stage in enumerate(recipe.stages):
            _check_one(stage_recipe(recipe, i), f"stage {i + 1} ({stage.name})", report)
    elif recipe.experiences:
        for exp in recipe.experiences:
            _check_one(recipe.model_copy(update={"data": exp.data}), f"experience {exp.name}", report)
    else:
        _check_one(recipe, "data", report)
    return report


def _check_one(recipe, name: str, report: Report) -> None:
    if recipe.method.name == "domain_adaptation":
        _check_corpus(recipe, name, report)  # its data (task texts) is the target's, checked with the target stage
        return
    if recipe.data is None:
        return
    tokenizer = _tokenizer(recipe.model.name, name, report)
    pairs = recipe.method.name == "preference" and recipe.method.rejected_from == "data"
    CHECKS["preference" if pairs else task_kind(recipe)](recipe, name, tokenizer, report)


def _tokenizer(model_name: str, name: str, report: Report):
    from ..models.loading import load_tokenizer, resolve_weights

    try:
        return load_tokenizer(resolve_weights(model_name))
    except TunesmithError as err:
        report.errors.append(f"{name}: model: {err}")
        return None


def _check_corpus(recipe, name: str, report: Report) -> None:
    from ..data.corpus import read_corpus

    method = recipe.method
    entry = {"name": f"{name}: corpus", "task": "domain_adaptation"}
    if not method.corpus:
        report.datasets.append({**entry, "documents": 0, "note": "task texts only (method.task_texts)"})
        return
    try:
        docs = read_corpus(method.corpus, method.text_column, "method.corpus")
    except TunesmithError as err:
        report.errors.append(f"{name}: {err}")
        return
    entry.update(documents=len(docs), characters=sum(map(len, docs)), empty=0)
    if len(docs) < 2 and not method.task_texts:
        report.errors.append(
            f"{name}: method.corpus holds fewer than 2 documents ({len(docs)}); at least 2 are needed "
            "(one is held out to measure perplexity). Separate documents in .txt files with a blank line."
        )
    dupes = len(docs) - len(set(docs))
    if dupes:
        report.warnings.append(
            f"{name}: {dupes} duplicate document(s) in the corpus (they are trained on more than once)."
        )
    entry["duplicates"] = dupes
    report.datasets.append(entry)
