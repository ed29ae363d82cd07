"""After the search: the best trial's recipe, the defaults over seeds, the test set read once, and the report that
says what the search bought and whether it is more than the defaults' seed-to-seed spread."""

from __future__ import annotations

import logging
import statistics
import warnings
from pathlib import Path

from ..recipe import dump_recipe
from ..runs import rundir
from .space import objective_metric, trial_recipe
from .study import Setup, kept_value, open_study

log = logging.getLogger(__name__)
DEFAULTS_DIR = "defaults"
BEST_RECIPE = "best_recipe.yaml"
SWEEP_FILE = "sweep.json"


def finish(setup: Setup) -> dict:
    """Defaults runs, the test-set evaluation of the best trial and of the defaults, sweep.json, report.md, plots."""
    import optuna

    from ..errors import TunesmithError

    study = open_study(setup)
    metric, direction = objective_metric(setup.recipe)
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        raise TunesmithError(f"no trial of the sweep in {setup.out_dir} completed; see the trials' run.json files.")
    best = study.best_trial
    best_dir = _best_model(setup, best)
    best_recipe = trial_recipe(setup.recipe, best.params, keep_test=True)
    (setup.out_dir / BEST_RECIPE).write_text(dump_recipe(best_recipe), encoding="utf-8")
    defaults = _defaults(setup, metric)
    test = setup.recipe.data.test
    if test:  # the only read of the test file in a sweep: after every trial and every defaults run
        log.info(f"sweep: the best trial ({best.number}) and the defaults on the test set {test}")
        best_test = _test_score(best_dir, test, metric)
        for entry in defaults:
            entry["test"] = _test_score(Path(entry["run_dir"]), test, metric)
    summary = {
        "metric": metric,
        "direction": direction,
        "trials": [_trial_row(t) for t in study.get_trials(deepcopy=False)],
        "best": {"number": best.number, "params": best.params, "validation": best.value, "run_dir": str(best_dir)},
        "defaults": defaults,
    }
    if test:
        summary["best"]["test"] = best_test
        summary["verdict"] = verdict(best_test, [d["test"] for d in defaults], direction)
    rundir.write_json(setup.out_dir / SWEEP_FILE, summary)
    _plots(study, setup.out_dir / "plots")
    (setup.out_dir / "report.md").write_text(markdown(summary, setup), encoding="utf-8")
    return summary


def _best_model(setup: Setup, best) -> Path:
    """The best trial's run folder here (named by its number: a study database is input too, its paths are not
    trusted); a trial another machine ran is trained again here, with its values and seed, under best/."""
    from ..pipeline import run
    from .study import TRIALS_DIR

    folder = setup.out_dir / TRIALS_DIR / str(best.number)
    if rundir.read_status(folder) == "finished":
        return folder
    folder = setup.out_dir / "best"
    if rundir.read_status(folder) != "finished":
        log.info(f"sweep: trial {best.number} ran on another machine; training its values here")
        run(trial_recipe(setup.recipe, best.params), output_dir=folder, overwrite=folder.exists())
    return folder


def _defaults(setup: Setup, metric: str) -> list[dict]:
    """The recipe as written (none of the searched values), one run per seed from the recipe's own; a finished
    one is kept when a sweep continues."""
    from ..pipeline import run

    seeds = setup.recipe.sweep.defaults_seeds if setup.recipe.sweep else 3
    out = []
    for offset in range(seeds):
        seed = setup.recipe.train.seed + offset
        folder = setup.out_dir / DEFAULTS_DIR / f"seed-{seed}"
        if rundir.read_status(folder) == "finished":
            metrics = rundir.read_json(folder / rundir.METRICS_FILE)
        else:
            recipe = trial_recipe(setup.recipe, {"train.seed": seed})
            log.info(f"sweep: the defaults, seed {seed}")
            metrics = run(recipe, output_dir=folder, overwrite=folder.exists()).metrics
        out.append({"seed": seed, "run_dir": str(folder), "validation": kept_value(metrics, metric)})
    return out


def _test_score(run_dir: Path, test: str, metric: str) -> float:
    from ..predict import Predictor

    predictor = Predictor.load(run_dir)
    scored = predictor.evaluate(test) if hasattr(predictor, "generate") else predictor.evaluate(test, None, None)
    return float(scored[metric])


def verdict(best: float, defaults: list[float], direction: str) -> str:
    """Whether the best trial's test score is outside the range the defaults span over seeds."""
    if not defaults:
        return "not compared: no defaults runs (sweep.defaults_seeds: 0)"
    sign = 1 if direction == "maximize" else -1
    gain = sign * (best - defaults[0])
    top, bottom = max(defaults, key=lambda v: sign * v), min(defaults, key=lambda v: sign * v)
    spread = abs(top - bottom)
    if sign * best > sign * top:
        return f"better than every defaults seed: {gain:+.4f} over the same seed (the defaults' spread: {spread:.4f})"
    if sign * best >= sign * bottom:
        return (
            f"inside the defaults' seed-to-seed range ({gain:+.4f} over the same seed, spread {spread:.4f}): "
            "not distinguishable from noise"
        )
    return f"worse than every defaults seed ({gain:+.4f} over the same seed): the search found nothing better"


def _trial_row(trial) -> dict:
    return {
        "number": trial.number,
        "state": trial.state.name.lower(),
        "params": trial.params,
        "value": trial.value,
        "epochs": trial.user_attrs.get("epochs"),
        "runtime_s": trial.user_attrs.get("runtime_s"),
        "run_dir": trial.user_attrs.get("run_dir") if isinstance(trial.user_attrs.get("run_dir"), str) else None,
    }


def _plots(study, folder: Path) -> None:
    """Optuna's own plots: the optimisation history and, with two or more finished trials, parameter importances."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    import optuna.visualization.matplotlib as views

    folder.mkdir(exist_ok=True)
    for name, draw in (("history", views.plot_optimization_history), ("importances", views.plot_param_importances)):
        try:
            with warnings.catch_warnings():  # "experimental" in Optuna since 2.2: the plots themselves are fine
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                axes = draw(study)
        except (ValueError, RuntimeError) as err:  # importances need finished trials that differ
            log.info(f"sweep: no {name} plot ({err})")
            continue
        axes.figure.savefig(folder / f"{name}.png", dpi=110, bbox_inches="tight")
        plt.close(axes.figure)


def markdown(summary: dict, setup: Setup) -> str:
    metric, best = summary["metric"], summary["best"]
    keys = sorted({k for t in summary["trials"] for k in t["params"]})
    rows = "\n".join(
        f"| {t['number']} | {t['state']} | "
        + " | ".join(_cell(t["params"].get(k)) for k in keys)
        + f" | {_cell(t['value'])} | {t['epochs'] or ''} |"
        for t in summary["trials"]
    )
    defaults = summary["defaults"]
    val = [d["validation"] for d in defaults]
    lines = [
        "# tunesmith sweep report",
        "",
        f"Recipe `{setup.out_dir / 'sweep.yaml'}`; {len(summary['trials'])} trials, objective: validation {metric} "
        f"({summary['direction']}). Best trial {best['number']}: {_params(best['params'])}; its recipe is "
        f"`{BEST_RECIPE}`.",
        "",
        "## What the search bought",
        "",
        "| | validation | test |",
        "|---|---|---|",
        f"| best trial | {best['validation']:.4f} | {_score(best.get('test'))} |",
    ]
    for d in defaults:
        lines.append(f"| defaults, seed {d['seed']} | {d['validation']:.4f} | {_score(d.get('test'))} |")
    if len(val) > 1:
        tests = [d["test"] for d in defaults if "test" in d]
        lines.append(
            f"| defaults, mean ± std | {statistics.mean(val):.4f} ± {statistics.stdev(val):.4f} | "
            + (f"{statistics.mean(tests):.4f} ± {statistics.stdev(tests):.4f}" if len(tests) > 1 else "")
            + " |"
        )
    if len(val) > 1 and setup.recipe.data is not None and not setup.recipe.data.validation:
        lines += [
            "",
            "Without a validation file each seed carves its own validation split from the training file, so the "
            "defaults' validation figures differ by split as well as by seed; the trials share the split of seed "
            f"{defaults[0]['seed']}, the defaults run of that seed is their like-for-like comparison, and the test "
            "column compares all on one set.",
        ]
    lines += ["", f"**Verdict:** {summary.get('verdict', 'no test file: the search is judged on validation only')}."]
    lines += [
        "",
        "## Trials",
        "",
        "| trial | state | " + " | ".join(keys) + f" | validation {metric} | epochs |",
        "|---|---|" + "---|" * len(keys) + "---|---|",
        rows,
        "",
    ]
    for name in ("history", "importances"):
        if (setup.out_dir / "plots" / f"{name}.png").is_file():
            lines += [f"![{name}](plots/{name}.png)", ""]
    return "\n".join(lines)


def _cell(value) -> str:
    if value is None:
        return ""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _score(value) -> str:
    return "" if value is None else f"{value:.4f}"


def _params(params: dict) -> str:
    return ", ".join(f"{k}={_cell(v)}" for k, v in params.items())
