"""tunesmith sweep on tiny models: the search space, pruning, parallel workers on one study, a killed sweep that
continues, the test set read only at the end, and bad sweep sections."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

import tunesmith
from tests.conftest import sentiment_rows
from tunesmith.errors import TunesmithError
from tunesmith.recipe import load_recipe
from tunesmith.runs.rundir import read_status
from tunesmith.sweep import run_sweep

optuna = pytest.importorskip("optuna")


@pytest.fixture
def toy(tmp_path):
    for name, n, seed in (("train", 160, 0), ("validation", 40, 1), ("test", 40, 2)):
        sentiment_rows(n, seed).to_csv(tmp_path / f"{name}.csv", index=False)
    recipe = {
        "model": {"name": "tiny-bert"},
        "data": {k: str(tmp_path / f"{k}.csv") for k in ("train", "validation", "test")},
        "method": {"name": "supervised", "freeze_embeddings": False},
        "train": {"epochs": 2, "lr": 3e-3, "batch_size": 16, "warmup_ratio": 0.0},
        "sweep": {
            "trials": 4,
            "defaults_seeds": 2,
            "params": {
                "train.lr": {"low": 1e-4, "high": 1e-2, "log": True},
                "train.batch_size": [8, 16],
                "train.epochs": {"low": 1, "high": 3},
            },
        },
    }
    return tmp_path, recipe


def test_every_trial_stays_in_the_space_and_the_report_judges_the_best_against_the_defaults(toy, monkeypatch):
    """And the test file is read only after the last trial and the last defaults run (asserted on reads)."""
    import tunesmith.data.columns as columns
    import tunesmith.sweep.report as report

    tmp, recipe = toy
    events = []
    checked = columns.checked_path  # every read of a split, parsed or opened from the table cache, starts here
    spy = lambda path, role: events.append(("read", str(path))) or checked(path, role)  # noqa: E731
    monkeypatch.setattr(columns, "checked_path", spy)
    defaults = report._defaults
    monkeypatch.setattr(report, "_defaults", lambda *a: [*defaults(*a), events.append(("defaults done", ""))][:-1])
    summary = run_sweep(recipe, tmp / "sweep")
    trials = summary["trials"]
    assert len(trials) == 4 and {t["state"] for t in trials} <= {"complete", "pruned"}
    for t in trials:
        assert 1e-4 <= t["params"]["train.lr"] <= 1e-2 and t["params"]["train.batch_size"] in (8, 16)
        assert isinstance(t["params"]["train.epochs"], int) and 1 <= t["params"]["train.epochs"] <= 3
        ran = yaml.safe_load((tmp / "sweep" / "trials" / str(t["number"]) / "recipe.yaml").read_text())
        assert ran["train"]["lr"] == pytest.approx(t["params"]["train.lr"]) and ran["data"].get("test") is None
    test_reads = [i for i, e in enumerate(events) if e == ("read", str(tmp / "test.csv"))]
    assert test_reads and min(test_reads) > events.index(("defaults done", ""))
    assert len(test_reads) == 3  # once each: the best trial, two defaults seeds
    best = summary["best"]
    assert best["validation"] == max(t["value"] for t in trials if t["state"] == "complete")
    assert [d["seed"] for d in summary["defaults"]] == [42, 43] and all("test" in d for d in summary["defaults"])
    assert "seed-to-seed" in summary["verdict"] or "every defaults seed" in summary["verdict"]
    best_recipe = load_recipe(tmp / "sweep" / "best_recipe.yaml")
    assert best_recipe.train.lr == pytest.approx(best["params"]["train.lr"]) and best_recipe.data.test
    report_md = (tmp / "sweep" / "report.md").read_text()
    assert "What the search bought" in report_md and "Verdict" in report_md
    assert (tmp / "sweep" / "plots" / "history.png").is_file()
    assert json.loads((tmp / "sweep" / "sweep.json").read_text())["best"]["number"] == best["number"]


def test_the_median_pruner_stops_a_clearly_worse_trial(toy):
    from tunesmith.sweep.study import open_study, prepare

    tmp, recipe = toy
    recipe["train"]["epochs"] = 4
    recipe["sweep"] = {"trials": 4, "defaults_seeds": 0, "params": {"train.lr": [1e-2, 1e-7]}}
    setup = prepare(load_recipe(recipe), tmp / "sweep", None, None, None)
    study = open_study(setup)
    for lr in (1e-2, 1e-2, 1e-2, 1e-7):  # three that learn, then one that cannot move
        study.enqueue_trial({"train.lr": lr})
    summary = run_sweep(recipe, tmp / "sweep")
    last = summary["trials"][3]
    assert last["params"]["train.lr"] == 1e-7 and last["state"] == "pruned"
    assert read_status(tmp / "sweep" / "trials" / "3") == "pruned"
    epochs = [json.loads(x) for x in (tmp / "sweep" / "trials" / "3" / "train_log.jsonl").read_text().splitlines()]
    assert max(e["epoch"] for e in epochs) < 4  # stopped before its last epoch
    assert all(t["state"] == "complete" for t in summary["trials"][:3])


def test_two_jobs_finish_n_trials_of_one_study_without_duplicates(toy):
    tmp, recipe = toy
    recipe["sweep"]["defaults_seeds"] = 0
    summary = run_sweep(recipe, tmp / "sweep", trials=4, jobs=2)
    numbers = [t["number"] for t in summary["trials"]]
    assert sorted(numbers) == [0, 1, 2, 3] and len({t["run_dir"] for t in summary["trials"]}) == 4
    assert all(read_status(tmp / "sweep" / "trials" / str(n)) in ("finished", "pruned") for n in numbers)
    study = optuna.load_study(study_name="sweep", storage=f"sqlite:///{tmp / 'sweep' / 'study.db'}")
    assert len(study.trials) == 4


def test_a_killed_sweep_continues_and_retries_the_trial_it_was_running(toy):
    tmp, recipe = toy
    recipe["sweep"].update(defaults_seeds=0, trials=3)
    recipe["train"]["epochs"] = 3
    (tmp / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    folder = tmp / "sweep"
    command = [sys.executable, "-m", "tunesmith", "sweep", str(tmp / "recipe.yaml"), "-o", str(folder)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and not (folder / "trials" / "1" / "train_log.jsonl").is_file():
            time.sleep(0.2)  # trial 0 finished, trial 1 is training
        assert (folder / "trials" / "1").is_dir(), "the sweep did not reach its second trial"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    summary = run_sweep(recipe, folder)
    states = {t["number"]: t["state"] for t in summary["trials"]}
    assert states[1] == "fail"  # left running by the killed process, then marked failed
    done = [t for t in summary["trials"] if t["state"] in ("complete", "pruned")]
    assert len(done) == 3
    killed = next(t for t in summary["trials"] if t["number"] == 1)
    assert any(t["params"] == killed["params"] and t["number"] > 1 for t in done)  # its values tried again


@pytest.mark.parametrize(
    "sweep, message",
    [
        ({"params": {"train.lrr": [1e-3]}}, "'train.lrr' is not a recipe key. Did you mean 'train.lr'?"),
        ({"params": {"train.lr": {"low": 1e-2, "high": 1e-4}}}, "'train.lr': low (0.01) is above high"),
        ({"params": {"train.epochs": []}}, "'train.epochs': an empty list of choices"),
        ({"params": {"train.batch_size": [8, 0]}}, "sweep.params.train.batch_size: 0 is not a valid value"),
        ({"params": {"data.test": ["x.csv"]}}, "'data.test' cannot be searched"),
        ({"params": {"method.lora.r": {"low": 0, "high": 8}}}, "sweep.params.method.lora.r: 0 is not a valid value"),
        ({"trials": 0}, "sweep.trials"),
    ],
)
def test_a_bad_sweep_section_is_a_schema_error_naming_the_key(toy, sweep, message):
    _, recipe = toy
    with pytest.raises(TunesmithError, match=message.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
        load_recipe({**recipe, "sweep": sweep})


def test_a_folder_holding_something_else_is_never_taken_over(toy):
    tmp, recipe = toy
    (tmp / "busy").mkdir()
    (tmp / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(TunesmithError, match="not a tunesmith sweep"):
        run_sweep(recipe, tmp / "busy")
    assert (tmp / "busy" / "notes.txt").read_text() == "mine"


def test_a_generation_sweep_judged_by_the_loss_generates_no_answers_until_the_best_recipe(tmp_path, monkeypatch):
    """Its trials and defaults runs score the answer-token loss alone (answers would be most of their time); the
    best recipe keeps the user's eval section and answers when run."""
    import tunesmith.methods.supervised_generation as sg
    from tests.test_generation_run import intent_rows, write_jsonl

    data = {k: write_jsonl(tmp_path / f"{k}.jsonl", intent_rows(n, s)) for k, n, s in ATOMS}
    recipe = {
        "task": "generation",
        "model": {"name": "tiny-llama"},
        "data": data,
        "method": {"tuning": "full"},
        "train": {"epochs": 1, "batch_size": 8, "lr": 3e-3},
        "eval": {"max_new_tokens": 4, "max_samples": 5},
        "sweep": {"trials": 2, "defaults_seeds": 1, "params": {"train.lr": [1e-3, 3e-3]}},
    }
    answered = []

    def generate(model, tokenizer, prompts, **settings):
        answered.append(len(prompts))
        return [""] * len(prompts)

    monkeypatch.setattr(sg, "generate", generate)
    summary = run_sweep(recipe, tmp_path / "loss")
    assert summary["metric"] == "loss" and answered == []
    trial = json.loads((tmp_path / "loss" / "trials" / "0" / "metrics.json").read_text())
    assert trial["tuned"]["loss"] > 0 and "exact_match" not in trial["tuned"] and "generation_s" not in trial["tuned"]
    best = load_recipe(tmp_path / "loss" / "best_recipe.yaml")
    assert best.eval.max_samples == 5
    tunesmith.run(best.model_copy(update={"sweep": None}), output_dir=tmp_path / "best")
    assert answered == [5, 5]  # the best recipe run as it is: base and tuned answers


ATOMS = (("train", 48, 0), ("validation", 12, 1), ("test", 12, 2))


def test_no_answers_is_a_choice_for_supervised_generation_not_for_preference(tmp_path):
    from tunesmith.recipe import Recipe

    base = {"task": "generation", "model": "tiny-llama", "data": {"train": "t.jsonl"}, "eval": {"max_samples": 0}}
    assert Recipe.model_validate(base).eval.max_samples == 0
    with pytest.raises(ValueError, match="does not suit method preference"):
        Recipe.model_validate({**base, "method": {"name": "preference"}})
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        Recipe.model_validate({**base, "eval": {"max_samples": -1}})


@pytest.mark.parametrize("validation", [True, False])
def test_the_report_says_when_each_defaults_seed_was_judged_on_its_own_split(toy, validation):
    """Without a validation file every seed carves its own split: the defaults' validation spread is partly the
    split's, and the report says which defaults run shares the trials' split."""
    from types import SimpleNamespace

    from tunesmith.sweep.report import markdown

    tmp, recipe = toy
    if not validation:
        del recipe["data"]["validation"]
    trial = {"number": 0, "state": "complete", "params": {"train.lr": 1e-3}, "value": 0.6, "epochs": 2}
    summary = {
        "metric": "spearman",
        "direction": "maximize",
        "best": {**trial, "validation": 0.6, "test": 0.61},
        "trials": [trial],
        "defaults": [{"seed": 42, "validation": 0.59, "test": 0.6}, {"seed": 43, "validation": 0.73, "test": 0.61}],
        "verdict": "inside the defaults' seed-to-seed range",
    }
    text = markdown(summary, SimpleNamespace(recipe=load_recipe(recipe), out_dir=tmp / "sweep"))
    assert "| defaults, mean ± std | 0.6600 ± 0.0990 | 0.6050 ± 0.0071 |" in text
    assert ("carves its own validation split" in text) is not validation
    assert validation or "the trials share the split of seed 42" in text
