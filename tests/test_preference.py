"""Preference tuning (DPO, ORPO): the pair files users bring, the losses as TRL defines them, and runs that learn
the preference on held-out pairs; pairs built from the starting model's own answers."""

import json
import math
import random

import pytest
import torch

import tunesmith
from tunesmith.check import check_recipe
from tunesmith.data.preference import read_pairs
from tunesmith.errors import TunesmithError
from tunesmith.recipe import DataSection, load_recipe
from tunesmith.tasks.generation.preference import pair_logps, preference_loss


def write_jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    return str(path)


def sums(rng: random.Random, n: int) -> list[dict]:
    """A preference any model can learn: the chosen answer is short and right, the rejected one long and wrong."""
    rows = []
    for _ in range(n):
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        rows.append({"prompt": f"add {a} {b}", "chosen": f"yes {a + b}", "rejected": f"no no no {a * b + 1}"})
    return rows


@pytest.fixture(scope="module")
def pair_files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pairs")
    rng = random.Random(0)
    return {
        "train": write_jsonl(tmp / "train.jsonl", sums(rng, 64)),
        "test": write_jsonl(tmp / "test.jsonl", sums(rng, 16)),
    }


def recipe_for(files, **method) -> dict:
    return {
        "task": "generation",
        "model": {"name": "tiny-llama"},
        "data": dict(files),
        "method": {"name": "preference", **method},
        "train": {"lr": 3e-3, "epochs": 2, "max_length": 64, "seed": 0},
        "eval": {"max_new_tokens": 4, "max_samples": 4},
    }


# ------------------------------------------------------------------------------------------------ the pair files


def test_pairs_are_read_in_trl_standard_conversational_and_implicit_prompt_layouts(tmp_path):
    data = DataSection(train="x")
    standard = read_pairs(
        write_jsonl(tmp_path / "a.jsonl", [{"prompt": "p", "chosen": "c", "rejected": "r"}]), data, "t"
    )
    turn = lambda role, text: {"role": role, "content": text}  # noqa: E731
    conversational = [{"prompt": [turn("system", "s"), turn("user", "p")], "chosen": [turn("assistant", "c")],
                       "rejected": [turn("assistant", "r")]}]  # fmt: skip
    implicit = [
        {"chosen": [turn("user", "p"), turn("assistant", "c")], "rejected": [turn("user", "p"), turn("assistant", "r")]}
    ]
    conv = read_pairs(write_jsonl(tmp_path / "b.jsonl", conversational), data, "t")
    imp = read_pairs(write_jsonl(tmp_path / "c.jsonl", implicit), data, "t")
    assert (standard.pairs[0].prompt, standard.pairs[0].chosen, standard.pairs[0].rejected) == (
        [turn("user", "p")],
        "c",
        "r",
    )
    assert conv.pairs[0].prompt == [turn("system", "s"), turn("user", "p")] and conv.pairs[0].rejected == "r"
    assert imp.pairs[0].prompt == [turn("user", "p")] and imp.pairs[0].chosen == "c"
    # CSV cells hold conversations as JSON text
    csv = tmp_path / "d.csv"
    csv.write_text('prompt,chosen,rejected\n"[{""role"": ""user"", ""content"": ""p""}]",c,r\n', encoding="utf-8")
    assert read_pairs(str(csv), data, "t").pairs[0].prompt == [turn("user", "p")]
    # or as pandas' to_csv writes a Python list of dicts
    csv.write_text("prompt,chosen,rejected\n\"[{'role': 'user', 'content': 'p'}]\",c,r\n", encoding="utf-8")
    assert read_pairs(str(csv), data, "t").pairs[0].prompt == [turn("user", "p")]


@pytest.mark.parametrize(
    "row, message",
    [
        ({"prompt": "p", "chosen": "c"}, "no column 'rejected'"),
        (
            {"prompt": "p", "chosen": "same", "rejected": " same "},
            "data row 1: the chosen and the rejected answer are the same",
        ),
        ({"prompt": "p", "chosen": "c", "rejected": "  "}, "column 'rejected': empty text"),
        (
            {"prompt": "p", "chosen": "c", "rejected": {"text": "r"}},
            "expected text or a list of chat messages, got dict",
        ),
        (
            {"prompt": [{"role": "assistant", "content": "p"}], "chosen": "c", "rejected": "r"},
            "must end with a user turn",
        ),
        (
            {"prompt": "p", "chosen": [{"role": "user", "content": "c"}], "rejected": "r"},
            "must be a non-empty assistant answer",
        ),
        ({"chosen": "c", "rejected": "r"}, "without a prompt column"),
        ({"prompt": "p", "chosen": [{"role": "tool", "content": "c"}], "rejected": "r"}, "message 1: expected"),
    ],
)
def test_bad_pair_rows_are_errors_that_name_the_row_and_the_fix(tmp_path, row, message):
    with pytest.raises(TunesmithError, match=message):
        read_pairs(write_jsonl(tmp_path / "bad.jsonl", [row]), DataSection(train="x"), "data.train")


def test_the_data_check_reads_pairs_and_reports_what_a_run_would_trip_on(tmp_path, pair_files):
    files = {
        **pair_files,
        "test": write_jsonl(tmp_path / "t.jsonl", [{"prompt": "add 1 1", "chosen": "2", "rejected": "3"}]),
    }
    report = check_recipe(load_recipe(recipe_for(files)))
    assert not report.errors
    entry = report.datasets[0]
    assert entry["splits"]["train"]["format"] == "preference pairs" and entry["splits"]["train"]["rows"] == 64
    assert "lengths" in entry and "lengths" in entry["rejected"]  # both answers of a pair are trained on
    broken = {
        **pair_files,
        "train": write_jsonl(tmp_path / "b.jsonl", [{"prompt": "p", "chosen": "x", "rejected": "x"}]),
    }
    assert any("the same text" in e for e in check_recipe(load_recipe(recipe_for(broken))).errors)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"task": "classification"}, "needs task: generation"),
        ({"method": {"name": "preference", "loss": "kto"}}, "method.loss: Input should be .dpo. or .orpo."),
        ({"method": {"name": "preference", "beta": 0}}, "method.beta"),
        ({"method": {"name": "preference", "rejected_from": "users"}}, "method.rejected_from"),
    ],
)
def test_bad_preference_settings_are_schema_errors(pair_files, change, message):
    with pytest.raises(TunesmithError, match=message):
        load_recipe({**recipe_for(pair_files), **change})


# ------------------------------------------------------------------------------------------------ the losses


def test_dpo_and_orpo_losses_are_trls_formulas():
    batch = {"ref_chosen": torch.tensor([-10.0, -4.0]), "ref_rejected": torch.tensor([-12.0, -3.0])}
    chosen, rejected = torch.tensor([-8.0, -5.0]), torch.tensor([-13.0, -2.0])
    counts = torch.tensor([4, 2]), torch.tensor([4, 1])
    loss, rewards = preference_loss("dpo", 0.5, batch, (chosen, rejected, *counts))
    margins = 0.5 * ((chosen - batch["ref_chosen"]) - (rejected - batch["ref_rejected"]))  # [1.5, -1.0]
    assert loss.item() == pytest.approx(-torch.nn.functional.logsigmoid(margins).mean().item())
    assert (rewards["chosen"] > rewards["rejected"]).tolist() == [True, False]
    loss, _ = preference_loss("orpo", 0.1, {}, (chosen, rejected, *counts))
    mean_c, mean_r = chosen / counts[0], rejected / counts[1]
    odds = lambda lp: lp - torch.log1p(-torch.exp(lp))  # noqa: E731
    expected = (
        -chosen.sum() / counts[0].sum() - 0.1 * torch.nn.functional.logsigmoid(odds(mean_c) - odds(mean_r)).mean()
    )
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_pair_log_probabilities_are_the_answer_tokens_of_each_side_only(pair_files):
    """Both sides in one forward pass, padded to one width, must give what each side scores alone."""
    from tunesmith.engine.batching import collate
    from tunesmith.models.loading import load_causal_lm, load_tokenizer, resolve_weights
    from tunesmith.tasks.generation.formatting import ensure_chat_template
    from tunesmith.tasks.generation.preference import encode_pair

    path = resolve_weights("tiny-llama")
    model, tokenizer = load_causal_lm(path).eval(), load_tokenizer(path)
    ensure_chat_template(tokenizer)
    prompt = [{"role": "user", "content": "add 2 3"}]
    rows = [
        encode_pair(tokenizer, prompt, "yes 5", "no no no no no no 7", 64)[0],
        encode_pair(tokenizer, prompt, "a much longer yes answer 5", "no", 64)[0],
    ]
    with torch.no_grad():
        chosen, rejected, n_chosen, _ = pair_logps(model, collate(rows, tokenizer.pad_token_id))
        for i, row in enumerate(rows):
            for side, got in (("", chosen[i]), ("rejected_", rejected[i])):
                ids, labels = torch.tensor([row[side + "input_ids"]]), torch.tensor(row[side + "labels"])
                logps = model(input_ids=ids).logits[0, :-1].float().log_softmax(-1)
                keep = labels[1:] != -100
                alone = logps[keep].gather(1, labels[1:][keep][:, None]).sum()
                assert got.item() == pytest.approx(alone.item(), rel=1e-4)
    assert n_chosen.tolist() == [sum(t != -100 for t in r["labels"][1:]) for r in rows]


# ------------------------------------------------------------------------------------------------ runs


@pytest.mark.parametrize("tuning", ["lora", "full"])
def test_a_dpo_run_starts_at_log_2_and_learns_the_preference_on_held_out_pairs(pair_files, tmp_path, tuning):
    recipe = recipe_for(pair_files, loss="dpo", tuning=tuning)
    if tuning == "full":
        recipe["train"]["lr"] = 1e-3
    m = tunesmith.run(recipe, output_dir=tmp_path / "run").metrics
    # the reference is the starting model, scored before training: on it the DPO loss is exactly log 2
    assert m["base"]["pair_loss"] == pytest.approx(math.log(2), abs=1e-4)
    assert m["tuned"]["reward_accuracy"] >= 0.9 and m["tuned"]["reward_margin"] > 0
    assert m["tuned"]["pair_loss"] < math.log(2)
    assert m["tuned"]["preference_accuracy"] > m["base"]["preference_accuracy"]
    assert m["tuning"] == tuning and m["preference"] == {"loss": "dpo", "beta": 0.1, "rejected_from": "data"}
    assert m["train"]["reference_s"] > 0  # scoring the training pairs once is part of what training cost
    assert [h["epoch"] for h in m["train"]["history"]] == [1, 2] and "reward_accuracy" in m["train"]["history"][0]
    report = (tmp_path / "run" / "report.md").read_text()
    assert "## Preference pairs" in report and "DPO (beta 0.1)" in report
    predictor = tunesmith.Predictor.load(tmp_path / "run")
    assert isinstance(predictor.generate(["add 1 2"], max_new_tokens=2)[0], str)
    # `tunesmith eval` on a pairs file: the chosen answers as references, and the model's own preference
    assert predictor.evaluate(pair_files["test"])["preference_accuracy"] >= 0.9


def test_an_orpo_run_needs_no_reference_and_learns_the_preference(pair_files, tmp_path):
    m = tunesmith.run(recipe_for(pair_files, loss="orpo", beta=1.0), output_dir=tmp_path / "run").metrics
    assert m["base"]["pair_loss"] > m["tuned"]["pair_loss"]  # SFT on the chosen answers + the odds-ratio term
    assert m["tuned"]["preference_accuracy"] >= 0.9 > m["base"]["preference_accuracy"]
    assert m["tuned"]["loss"] < m["base"]["loss"]  # the chosen answers' own loss falls: ORPO's SFT term


@pytest.mark.parametrize("baseline", ["linear_probe", "none"])  # none: the base answers are still made, as pairs
def test_rejected_from_model_pairs_the_datas_answers_with_the_starting_models(tmp_path, monkeypatch, baseline):
    """The brand's copy is chosen, the model's own answer to the same prompt rejected; where the model already
    wrote the chosen text there is no pair."""
    import tunesmith.methods.preference as preference
    import tunesmith.methods.supervised_generation as supervised

    def answers(plan, model, prompts):
        return [
            "Made for the streets." if "same" in p[-1]["content"] else f"Generic text {i}."
            for i, p in enumerate(prompts)
        ]

    monkeypatch.setattr(preference, "_answer", answers)
    monkeypatch.setattr(supervised, "_answer", answers)
    rows = [
        {"prompt": f"Write copy {'same' if i % 10 == 0 else ''} {i}", "response": "Made for the streets."}
        for i in range(40)
    ]
    test = [{"prompt": f"Write copy {i}", "response": "Made for the streets."} for i in range(6)]
    files = {"train": write_jsonl(tmp_path / "train.jsonl", rows), "test": write_jsonl(tmp_path / "test.jsonl", test)}
    made = recipe_for(files, rejected_from="model")
    m = tunesmith.run(
        {**made, "eval": {**made.get("eval", {}), "baseline": baseline}}, output_dir=tmp_path / "run"
    ).metrics
    pairs = [json.loads(line) for line in (tmp_path / "run" / "pairs.jsonl").read_text().splitlines()]
    assert pairs and all(p["chosen"] == "Made for the streets." and p["rejected"].startswith("Generic") for p in pairs)
    # 36 training prompts (4 held for validation); those the model answered with the chosen text make no pair
    assert len(pairs) == m["data"]["train_samples"] < 36
    assert not any("same" in p["prompt"][-1]["content"] for p in pairs)
    assert m["tuned"]["reward_accuracy"] >= 0.9
    everything_same = {
        **files,
        "train": write_jsonl(tmp_path / "same.jsonl", [{"prompt": "same", "response": "Made for the streets."}] * 8),
    }
    with pytest.raises(TunesmithError, match="answers to all .* prompts are empty or the same as the data's"):
        tunesmith.run(recipe_for(everything_same, rejected_from="model"), output_dir=tmp_path / "run2")
