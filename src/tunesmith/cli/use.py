"""`tunesmith eval` and `tunesmith predict`: a finished run on new files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import TunesmithError
from .app import Overwrite, app, friendly, out
from .tables import print_metrics


@app.command("eval")
@friendly
def eval_(
    run_dir: Annotated[Path, typer.Argument(help="A finished run directory.")],
    data: Annotated[Path, typer.Option("--data", help="Labeled file to evaluate on.")],
    text_column: Annotated[Optional[str], typer.Option(help="Text column (default: the run's).")] = None,
    label_column: Annotated[Optional[str], typer.Option(help="Label column (default: the run's).")] = None,
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Write metrics as JSON here.")] = None,
    max_samples: Annotated[
        Optional[int],
        typer.Option(
            "--max-samples",
            min=0,
            help="Generation runs: prompts to answer (default: the run's eval.max_samples; 0: the loss alone).",
        ),
    ] = None,
    base: Annotated[
        bool,
        typer.Option(
            "--base", help="Score the model the run started from on the same file too: base vs tuned, as in training."
        ),
    ] = False,
    overwrite: Overwrite = False,
):
    """Evaluate a run's model on any labeled file: accuracy, macro F1/precision/recall, per class
    (generation runs: loss, perplexity, ROUGE-L and exact match on the file's prompts)."""
    from ..data.writers import claim_output
    from ..predict import Predictor
    from ..runs.rundir import write_json

    if output:
        claim_output(output, overwrite, inputs=[data])

    def score(predictor) -> dict:
        if hasattr(predictor, "generate"):
            return predictor.evaluate(data, max_samples)
        return predictor.evaluate(data, text_column, label_column)

    metrics = score(Predictor.load(run_dir))
    if base:
        metrics = {"base": score(_base_line(run_dir)), "tuned": metrics}
    print_metrics(metrics if base else {data.name: metrics}, title=data.name if base else None)
    if output:
        write_json(output, metrics)  # written beside and renamed: never half a file
        out.print(f"Metrics written to {output}")


@app.command()
@friendly
def predict(
    run_dir: Annotated[Path, typer.Argument(help="A finished run directory.")],
    input: Annotated[Path, typer.Argument(help="CSV/TSV/JSONL/JSON/Parquet/Excel file with a text column.")],
    output: Annotated[
        Path, typer.Option("-o", "--output", help="Where to write predictions (format from its extension).")
    ],
    text_column: Annotated[Optional[str], typer.Option(help="Text column (default: the run's).")] = None,
    base: Annotated[
        bool,
        typer.Option(
            "--base", help="Also the base line's answers (`base_` columns): what fine-tuning changed, row by row."
        ),
    ] = False,
    overwrite: Overwrite = False,
):
    """Add `predicted_label` and `probability` columns to every row of INPUT (regression runs: `predicted_score`)."""
    from ..data.classification import text_cells  # same checks as training data
    from ..data.readers import read_table
    from ..data.writers import claim_output, write_table
    from ..errors import did_you_mean

    claim_output(output, overwrite, inputs=[input], table=True)
    predictor = classifier(run_dir)
    column = text_column or predictor.columns["text"]
    frame = read_table(input, "input")
    if column not in frame.columns and not text_column:
        # a file of new texts often has the usual name, or one column only: that column is unambiguous
        fallback = "text" if "text" in frame.columns else (frame.columns[0] if len(frame.columns) == 1 else None)
        if fallback is not None:
            out.print(f"{input}: no column '{column}' (the run's); reading texts from '{fallback}'.", markup=False)
            column = str(fallback)
    if column not in frame.columns:
        raise TunesmithError(
            f"{input}: no column '{column}'. Columns found: "
            f"{', '.join(frame.columns)}.{did_you_mean(column, frame.columns)} "
            "Pass --text-column NAME."
        )
    pair = predictor.columns.get("pair")
    pairs = text_cells(frame, pair, str(input)) if pair and pair in frame.columns else None
    texts = text_cells(frame, column, str(input))
    for name, values in predictor.annotate(texts, pairs).items():
        frame[name] = values
    if base:
        for name, values in _base_line(run_dir).annotate(texts, pairs).items():
            frame[f"base_{name}"] = values
    write_table(frame, output)
    out.print(f"{len(frame)} predictions written to {output}")


def _base_line(run_dir: Path):
    """The model the run started from, answering as the run's base line did; an error where the run kept none."""
    from ..predict import load_base

    start = load_base(run_dir)
    if start is None:
        raise TunesmithError(
            f"--base: {run_dir} kept no base line to score (its recipe set eval.baseline: none, or its method "
            "keeps none)."
        )
    return start


def classifier(run_dir: Path):
    from ..predict import Predictor, run_task

    if run_task(run_dir) == "generation":
        raise TunesmithError(f"{run_dir} is a generation run; use `tunesmith generate` or `tunesmith chat` with it.")
    return Predictor.load(run_dir)
