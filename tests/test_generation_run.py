"""Generation runs end to end on the tiny decoder: train, base vs tuned, run dir, export, generate, chat."""

import json
import random

import pytest
import yaml
from typer.testing import CliRunner

import tunesmith
from tunesmith.cli import app
from tunesmith.errors import TunesmithError

runner = CliRunner()
INTENTS = {
    "track_order": "where is my order",
    "cancel_order": "please cancel my order",
    "get_refund": "i want my money back",
}


def intent_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.choice(sorted(INTENTS))
        rows.append({"prompt": f"{INTENTS[label]} {rng.choice(['now', 'today', 'thanks', 'asap'])}", "response": label})
    return rows


def write_jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def gen_data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gen")
    return {
        "train": write_jsonl(tmp / "train.jsonl", intent_rows(96, 0)),
        "validation": write_jsonl(tmp / "validation.jsonl", intent_rows(16, 1)),
        "test": write_jsonl(tmp / "test.jsonl", intent_rows(12, 2)),
        "dir": tmp,
    }


def recipe(gen_data, **train):
    return {
        "task": "generation",
        "model": {"name": "tiny-llama"},
        "data": {k: gen_data[k] for k in ("train", "validation", "test")},
        "method": {"tuning": "full"},
        "train": {"epochs": 3, "batch_size": 8, "lr": 3e-3, "warmup_ratio": 0.0, **train},
        "eval": {"max_new_tokens": 6},
    }


@pytest.fixture(scope="module")
def full_run(gen_data):
    return tunesmith.run(recipe(gen_data), output_dir=gen_data["dir"] / "full")


def test_full_run_lowers_validation_loss_and_writes_run_dir(full_run):
    m = full_run.metrics
    assert m["task"] == "generation" and m["tuning"] == "full" and m["generation_metric"] == "exact_match"
    assert m["tuned"]["loss"] < m["base"]["loss"] - 0.5
    assert m["tuned"]["perplexity"] < m["base"]["perplexity"]
    for key in ("exact_match", "rouge_l", "f1_macro"):
        assert 0.0 <= m["tuned"][key] <= 1.0 and key in m["base"]
    assert m["train"]["tokens_per_s"] > 0 and m["data"]["format"] == "prompt_response"
    # answering the held-out prompts is timed, base and tuned alike (a side that answers nothing gets 0 tokens/s)
    assert all(m[side]["generation_s"] > 0 and m[side]["generation_tokens_per_s"] >= 0 for side in ("base", "tuned"))
    assert max(m[side]["generation_tokens_per_s"] for side in ("base", "tuned")) > 0
    run_dir = full_run.run_dir
    assert (
        yaml.safe_load((run_dir / "recipe.yaml").read_text())["train"]["group_by_length"] is True
    )  # label-like: grouped
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["tuned"]["loss"] == pytest.approx(m["tuned"]["loss"])
    samples = [json.loads(line) for line in (run_dir / "generations.jsonl").read_text().splitlines()]
    assert len(samples) == 12 and set(samples[0]) == {"prompt", "reference", "base", "tuned"}
    report = (run_dir / "report.md").read_text()
    assert "| loss |" in report and "Sample answers" in report and (run_dir / "plots" / "loss.png").is_file()
    assert (run_dir / "model" / "chat_template.jinja").is_file() or "chat_template" in (
        run_dir / "model" / "tokenizer_config.json"
    ).read_text()


def test_predictor_generates_from_strings_and_messages(full_run):
    predictor = tunesmith.Predictor.load(full_run.run_dir)
    answers = predictor.generate(
        ["where is my order now", [{"role": "user", "content": "i want my money back"}]], max_new_tokens=4
    )
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)
    assert isinstance(predictor.generate("please cancel my order", max_new_tokens=4), str)


def test_generate_cli_adds_a_column_and_predict_refuses(full_run, gen_data, tmp_path):
    out = tmp_path / "answers.jsonl"
    result = runner.invoke(
        app, ["generate", str(full_run.run_dir), gen_data["test"], "-o", str(out), "--max-new-tokens", "4"]
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 12 and all("generated" in r for r in rows)
    refused = runner.invoke(app, ["predict", str(full_run.run_dir), gen_data["test"], "-o", str(tmp_path / "p.csv")])
    assert refused.exit_code == 2 and "generation run" in refused.output


def test_eval_cli_scores_a_generation_run_on_any_file(full_run, gen_data, tmp_path):
    out = tmp_path / "eval.json"
    result = runner.invoke(app, ["eval", str(full_run.run_dir), "--data", gen_data["test"], "-o", str(out)])
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())
    # the run scored itself under its training precision; eval runs in fp32: bf16 rounding moves the 4th digit
    rel = 1e-4 if full_run.metrics["train"]["precision"] == "fp32" else 2e-3
    assert metrics["loss"] == pytest.approx(full_run.metrics["tuned"]["loss"], rel=rel)
    assert metrics["exact_match"] == pytest.approx(full_run.metrics["tuned"]["exact_match"])
    assert metrics["generated"] == 12  # every prompt of the file (the run's eval.max_samples is 100)
    for limit, generated in ((3, 3), (0, None)):  # 0: the loss alone, as a loss-judged sweep's trials score
        out = tmp_path / f"eval-{limit}.json"
        args = ["eval", str(full_run.run_dir), "--data", gen_data["test"], "--max-samples", str(limit), "-o", str(out)]
        assert runner.invoke(app, args).exit_code == 0
        limited = json.loads(out.read_text())
        assert limited.get("generated") == generated and limited["loss"] == pytest.approx(metrics["loss"])


def test_chat_cli_keeps_history_and_exits(full_run):
    result = runner.invoke(
        app, ["chat", str(full_run.run_dir), "--max-new-tokens", "3"], input="where is my order\nthanks\n/exit\n"
    )
    assert result.exit_code == 0, result.output
    assert result.output.count("model>") == 2


def test_lora_packed_run_saves_adapter_and_exports_a_plain_model(gen_data, tmp_path):
    r = recipe(gen_data, packing=True, max_length=128)
    r["method"] = {"tuning": "lora", "lora": {"r": 4, "alpha": 8, "dropout": 0.0}}
    result = tunesmith.run(r, output_dir=tmp_path / "lora")
    m = result.metrics
    assert m["tuning"] == "lora" and m["train"]["packing"] and m["data"]["packed_rows"] < m["data"]["train_samples"]
    assert 1 <= m["data"]["rows_per_batch"] < 8  # a packed row holds several samples: fewer rows per step
    assert (result.run_dir / "adapter" / "adapter_config.json").is_file() and not (result.run_dir / "model").exists()
    # --format hf (the default) merges the adapter; the folder lands in the run unless -o says otherwise
    assert runner.invoke(app, ["export", str(result.run_dir)]).exit_code == 0
    merged = result.run_dir / "exports" / "hf"
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(merged)
    assert not hasattr(model, "peft_config") and AutoTokenizer.from_pretrained(merged).chat_template


def test_generation_recipe_errors_are_clear(gen_data, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"foo": "a", "bar": "b"}\n')
    r = recipe(gen_data)
    r["data"] = {"train": str(bad)}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(r))
    result = runner.invoke(app, ["train", str(path), "-o", str(tmp_path / "run")])
    assert result.exit_code == 2 and "Cannot tell the data layout" in result.output


def test_long_prompts_raise_max_length_so_their_answers_are_learned(gen_data, tmp_path, logged):
    # Summaries and long questions: a prompt cut at 256 tokens loses its answer, and the sample is dropped.
    rows = intent_rows(40, 3)
    for row in rows[:12]:  # 30% of prompts run to ~350 tokens (tiny tokenizer), the answer after them
        row["prompt"] = "please read this " * 25 + row["prompt"]
    data = {**gen_data, "train": write_jsonl(tmp_path / "train.jsonl", rows)}
    result = tunesmith.run(recipe(data, epochs=1), output_dir=tmp_path / "run")
    chosen = yaml.safe_load((tmp_path / "run" / "recipe.yaml").read_text())["train"]["max_length"]
    assert 256 < chosen <= 1024 and chosen % 64 == 0
    assert result.metrics["data"]["truncated"] == 0 and result.metrics["data"]["train_samples"] == 40  # none dropped
    assert any(f"max_length {chosen}: 30% of the training samples" in r for r in result.metrics["train"]["auto"])
    assert "auto: max_length" in logged() and "exceed train.max_length" not in logged()


def test_free_text_answers_get_fewer_auto_epochs_than_labels(gen_data, tmp_path):
    # free text (ROUGE-L-scored) takes 3 passes, more only below MIN_FREE_TEXT_EXAMPLES: 60 rows -> 5 epochs, where
    # label-like answers of the same count would get 10 (MIN_STEPS)
    rng = random.Random(0)
    words = "the order ships soon and we refund any late parcel within five days of your request".split()
    rows = [{"prompt": f"question {i}", "response": " ".join(rng.choices(words, k=8))} for i in range(60)]
    data = {
        **gen_data,
        "train": write_jsonl(tmp_path / "train.jsonl", rows),
        "test": write_jsonl(tmp_path / "test.jsonl", rows[:4]),
    }
    r = recipe(data, max_length=64)
    del r["train"]["epochs"], r["train"]["batch_size"]
    result = tunesmith.run(r, output_dir=tmp_path / "run")
    assert result.metrics["generation_metric"] == "rouge_l"
    assert yaml.safe_load((tmp_path / "run" / "recipe.yaml").read_text())["train"]["epochs"] == 5
    assert any("60 examples -> epochs 5, batch 8" in reason for reason in result.metrics["train"]["auto"])
    # and plain shuffled batches, saved so a resumed run keeps them; an explicit value wins
    assert yaml.safe_load((tmp_path / "run" / "recipe.yaml").read_text())["train"]["group_by_length"] is False
    assert any("plain shuffled batches" in reason for reason in result.metrics["train"]["auto"])
    r["train"]["group_by_length"] = True
    result = tunesmith.run(r, output_dir=tmp_path / "grouped")
    assert yaml.safe_load((tmp_path / "grouped" / "recipe.yaml").read_text())["train"]["group_by_length"] is True
    assert not any("shuffled" in reason for reason in result.metrics["train"]["auto"])


def test_generation_max_length_keeps_short_data_a_set_value_and_the_cap(gen_data):
    from tunesmith.models.loading import load_tokenizer, resolve_weights
    from tunesmith.recipe import load_recipe
    from tunesmith.tasks.generation.formatting import auto_length, ensure_chat_template

    tokenizer = load_tokenizer(resolve_weights("tiny-llama"))
    ensure_chat_template(tokenizer)
    turn = lambda prompt: [{"role": "user", "content": prompt}, {"role": "assistant", "content": "ok"}]  # noqa: E731
    short, huge = [turn("hi")] * 20, [turn("hi")] * 10 + [turn("word " * 3000)] * 10
    unset = load_recipe(recipe(gen_data))
    assert auto_length(unset, tokenizer, short) == (unset, None)
    chosen, reason = auto_length(unset, tokenizer, huge)
    assert chosen.train.max_length == 1024 and "50% of the training samples" in reason  # GEN_CAP and the model's 1024
    assert unset.train.max_length == 256  # a copy
    explicit = load_recipe(recipe(gen_data, max_length=128))
    assert auto_length(explicit, tokenizer, huge) == (explicit, None)


@pytest.mark.parametrize("precision, dtype", [("bf16", "torch.bfloat16"), ("fp32", None)])
def test_training_loss_runs_in_the_runs_precision(gen_data, tmp_path, monkeypatch, precision, dtype):
    """The answer-only loss calls the decoder and the LM head directly, around the prepared model's forward and
    so around its autocast: the loop puts the whole loss under the run's precision."""
    import torch

    from tunesmith.methods import supervised_generation
    from tunesmith.tasks.generation.generate import causal_lm_loss

    seen = []

    def spy(model, batch):
        if torch.is_grad_enabled():  # training steps (validation runs under no_grad)
            on = torch.is_autocast_enabled("cpu")
            seen.append(str(torch.get_autocast_dtype("cpu")) if on else None)
        return causal_lm_loss(model, batch)

    monkeypatch.setattr(supervised_generation, "causal_lm_loss", spy)
    run = tunesmith.run(recipe(gen_data, epochs=1, precision=precision), output_dir=tmp_path / "run")
    assert run.metrics["train"]["precision"] == precision
    assert len(seen) == 12 and set(seen) == {dtype}  # 96 rows / batch 8


@pytest.mark.parametrize("precision, linear", [("bf16", {"torch.bfloat16"}), ("fp32", {"torch.float32"})])
def test_lora_under_bf16_holds_the_frozen_base_in_bf16(gen_data, tmp_path, monkeypatch, precision, linear):
    """Autocast re-casts frozen fp32 weights in every forward and keeps both copies; a LoRA run under bf16 holds
    the blocks' frozen linear weights in bf16 instead, its adapters (what the optimizer updates) in fp32, and
    embeddings and norms in fp32 (the residual stream is summed in fp32)."""
    import torch

    from tunesmith.methods import supervised_generation
    from tunesmith.tasks.generation.generate import causal_lm_loss

    seen = {"trained": set(), "linear": set(), "other": set(), "residual": set()}

    def spy(model, batch):
        if torch.is_grad_enabled():
            for name, p in model.named_parameters():
                kind = "trained" if p.requires_grad else "linear" if "proj" in name else "other"
                seen[kind].add(str(p.dtype))
            core = model.get_base_model()
            out = core.model(input_ids=batch["input_ids"], output_hidden_states=True, use_cache=False)
            seen["residual"] |= {str(h.dtype) for h in out.hidden_states}
        return causal_lm_loss(model, batch)

    monkeypatch.setattr(supervised_generation, "causal_lm_loss", spy)
    lora = {**recipe(gen_data, epochs=1, precision=precision), "method": {"tuning": "lora"}}
    del lora["data"]["test"]  # the tuned model is scored on the validation set, as the loop scored it
    run = tunesmith.run(lora, output_dir=tmp_path / "run")
    assert seen == {
        "trained": {"torch.float32"},
        "linear": linear,
        "other": {"torch.float32"},
        "residual": {"torch.float32"},
    }
    tuned = run.metrics["tuned"]["loss"]
    assert tuned < run.metrics["base"]["loss"]
    # the tuned model answers as it trained: not merged into bf16 weights, where the update would be rounded
    assert tuned == pytest.approx(run.metrics["train"]["history"][-1]["loss"], rel=1e-6)
    adapter = safetensors_dtypes(run.run_dir / "adapter" / "adapter_model.safetensors")
    assert adapter == {"F32"}  # the saved adapter is full precision whatever the base was held in


def safetensors_dtypes(path) -> set[str]:
    import json
    import struct

    raw = path.read_bytes()
    (size,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + size])
    return {v["dtype"] for k, v in header.items() if k != "__metadata__"}


def test_decoding_settings_reach_the_model_and_bad_ones_are_refused(full_run, monkeypatch):
    predictor = tunesmith.Predictor.load(full_run.run_dir)
    seen = []
    real = predictor.model.generate

    def spy(**kwargs):
        out = real(**kwargs)
        seen.append((kwargs, out[:, kwargs["input_ids"].shape[1] :]))
        return out

    monkeypatch.setattr(predictor.model, "generate", spy)
    settings = {"no_repeat_ngram_size": 1, "repetition_penalty": 1.3}
    predictor.generate(["where is my order now"], max_new_tokens=12, decoding=settings)
    kwargs, new = seen[-1]
    assert kwargs["no_repeat_ngram_size"] == 1 and kwargs["repetition_penalty"] == 1.3
    special = {predictor.tokenizer.pad_token_id, predictor.tokenizer.eos_token_id}
    ids = [t for t in new[0].tolist() if t not in special]
    assert ids and len(ids) == len(set(ids))  # no 1-gram written twice
    predictor.generate(["where is my order now"], max_new_tokens=4)
    assert "repetition_penalty" not in seen[-1][0] and "stop_strings" not in seen[-1][0]  # the run's: all off
    for bad, field in (({"repetition_penalty": 5}, "repetition_penalty"), ({"stop": [""]}, "stop")):
        with pytest.raises(TunesmithError, match=field):
            predictor.generate("hi", max_new_tokens=4, decoding=bad)


def test_stop_strings_cut_answers_in_generate_stream_and_the_cli(full_run, gen_data, tmp_path):
    predictor = tunesmith.Predictor.load(full_run.run_dir)
    prompt = "where is my order now"
    whole = predictor.generate(prompt, max_new_tokens=8)
    assert len(whole) >= 3, whole
    stop = whole[1:3]
    expected = whole[: whole.index(stop)].strip()
    assert predictor.generate(prompt, max_new_tokens=8, decoding={"stop": [stop]}) == expected
    streamed = "".join(predictor.stream([{"role": "user", "content": prompt}], 8, decoding={"stop": [stop]}))
    assert streamed.strip() == expected
    out = tmp_path / "answers.jsonl"
    args = ["generate", str(full_run.run_dir), gen_data["test"], "-o", str(out), "--max-new-tokens", "8"]
    assert runner.invoke(app, [*args, "--stop", stop]).exit_code == 0
    assert not any(stop in json.loads(line)["generated"] for line in out.read_text().splitlines())
    refused = runner.invoke(app, [*args, "--repetition-penalty", "9", "--overwrite"])
    assert refused.exit_code == 2 and "repetition_penalty" in refused.output


def test_beam_search_keeps_memory_per_batch_and_streams_its_answer_whole(full_run, gen_data, tmp_path, monkeypatch):
    predictor = tunesmith.Predictor.load(full_run.run_dir)
    prompts = [f"where is my order {i}" for i in range(8)]
    beams = {"num_beams": 4, "length_penalty": 0.5}
    expected = predictor.generate(prompts, max_new_tokens=6, decoding=beams)
    seen = []
    real = predictor.model.generate
    monkeypatch.setattr(predictor.model, "generate", lambda **kw: seen.append(kw) or real(**kw))
    predictor.batch_size = 8
    assert predictor.generate(prompts, max_new_tokens=6, decoding=beams) == expected  # batching changes no answer
    assert [kw["input_ids"].shape[0] for kw in seen] == [2, 2, 2, 2]  # 8 sequences a batch: 2 prompts x 4 beams
    assert all(kw["num_beams"] == 4 and kw["length_penalty"] == 0.5 for kw in seen)
    pieces = list(predictor.stream([{"role": "user", "content": prompts[0]}], 6, decoding=beams))
    assert pieces == [expected[0]]  # transformers cannot stream beams: the answer comes in one piece
    predictor.generate(prompts[:1], max_new_tokens=6)
    assert "num_beams" not in seen[-1]  # the run's default: greedy
    with pytest.raises(TunesmithError, match="length_penalty acts only in beam search"):
        predictor.generate("hi", max_new_tokens=4, decoding={"length_penalty": 2.0})
    predictor.decoding = predictor.decoding_with(beams)  # a run that decodes with beams by default ...
    assert predictor.decoding_with({"num_beams": 1}).length_penalty == 1.0  # ... can turn them off alone
    out = tmp_path / "beams.jsonl"
    args = ["generate", str(full_run.run_dir), gen_data["test"], "-o", str(out), "--max-new-tokens", "6"]
    assert runner.invoke(app, [*args, "--num-beams", "2"]).exit_code == 0
    assert len(out.read_text().splitlines()) == 12
    refused = runner.invoke(app, [*args, "--length-penalty", "2", "--overwrite"])
    assert refused.exit_code == 2 and "length_penalty acts only in beam search" in refused.output


@pytest.mark.parametrize(
    "pieces, stops, expected",
    [
        (["Hel", "lo ##", "# world"], ["###"], "Hello "),  # a stop split across pieces: nothing of it shown
        (["a#", "b", "c"], ["##"], "a#bc"),  # a false start is held back, then shown
        (["one ", "two"], [], "one two"),
        (["END", "more"], ["END"], ""),
    ],
)
def test_a_stream_ends_before_its_stop_string(pieces, stops, expected):
    from tunesmith.tasks.generation.predictor import until_stop

    shown = list(until_stop(iter(pieces), stops))
    assert "".join(shown) == expected and all(shown)
    if stops:
        assert not any("##" in "".join(shown[: i + 1]) for i in range(len(shown)))  # never shown, not even briefly


def test_a_recipes_decoding_settings_hold_in_evaluation_and_after(gen_data, tmp_path):
    run = tunesmith.run(
        {**recipe(gen_data, epochs=1), "eval": {"max_new_tokens": 6, "decoding": {"stop": ["_"], "num_beams": 2}}},
        output_dir=tmp_path / "run",
    )
    answers = [json.loads(line) for line in (run.run_dir / "generations.jsonl").read_text().splitlines()]
    assert answers and not any("_" in a["base"] + a["tuned"] for a in answers)
    decoding = tunesmith.Predictor.load(run.run_dir).decoding
    assert decoding.stop == ["_"] and decoding.num_beams == 2  # the run's default from then on


def test_lora_answers_merged_and_leaves_the_adapter_as_trained(gen_data, tmp_path, monkeypatch):
    """The tuned model answers with LoRA merged (fast), then the base is restored: the saved adapter is the trained
    one and the loaded run answers as the run's evaluation did."""
    from tunesmith.methods import supervised_generation

    states = []
    real = supervised_generation._evaluate

    def spy(plan, ctx, model, side, scored=None):
        layers = [m for m in model.modules() if hasattr(m, "merged") and hasattr(m, "lora_A")]
        states.append((side, {m.merged for m in layers}))
        return real(plan, ctx, model, side, scored)

    monkeypatch.setattr(supervised_generation, "_evaluate", spy)
    lora = {**recipe(gen_data, epochs=1, precision="fp32"), "method": {"tuning": "lora"}}
    run = tunesmith.run(lora, output_dir=tmp_path / "run")
    assert states == [("base", set()), ("tuned", {True})]  # base: no adapter yet; tuned: every adapted layer merged
    answers = [json.loads(line)["tuned"] for line in (run.run_dir / "generations.jsonl").read_text().splitlines()]
    prompts = [json.loads(line)["prompt"] for line in (run.run_dir / "generations.jsonl").read_text().splitlines()]
    loaded = tunesmith.Predictor.load(run.run_dir).generate(prompts, max_new_tokens=6)
    assert loaded == answers  # fp32: the saved adapter, merged on load, answers exactly as evaluated


def test_answers_are_capped_by_the_training_answers_length_unless_the_recipe_sets_a_limit():
    from tunesmith.recipe import EvalSection
    from tunesmith.tasks.generation.metrics import answer_p95, answer_settings

    free = ["a long free text answer that is no label at all, " * 3] * 5
    assert answer_settings(EvalSection(), free, train_p95=40) == ("rouge_l", 68)  # 1.5 x 40 + 8
    assert answer_settings(EvalSection(), free, train_p95=900) == ("rouge_l", 256)  # never above the default
    assert answer_settings(EvalSection(), free) == ("rouge_l", 256)  # no training answers known
    assert answer_settings(EvalSection(max_new_tokens=500), free, train_p95=40) == ("rouge_l", 500)
    assert answer_settings(EvalSection(), ["yes", "no", "yes", "no"], train_p95=40) == ("exact_match", 32)
    rows = [{"labels": [-100] * 3 + [1] * n} for n in range(1, 101)]  # 1..100 answer tokens
    assert answer_p95(rows) == 95 and answer_p95([]) is None


SYSTEM = 'Sort the request into one intent. Say "only" the intent {{ not code }} 100%.'


@pytest.fixture(scope="module")
def system_run(gen_data):
    """A run trained under data.system_prompt, on columns of its own naming (ask/reply)."""
    rows = [{"ask": r["prompt"], "reply": r["response"]} for r in intent_rows(56, 5)]
    train = write_jsonl(gen_data["dir"] / "ask_reply.jsonl", rows[:48])
    test = write_jsonl(gen_data["dir"] / "ask_reply_test.jsonl", rows[48:])
    columns = {"prompt_column": "ask", "response_column": "reply", "system_prompt": SYSTEM}
    spec = {
        "task": "generation",
        "model": {"name": "tiny-llama"},
        "data": {"train": train, "test": test, **columns},
        "method": {"tuning": "full"},
        "train": {"epochs": 3, "batch_size": 8, "lr": 3e-3, "warmup_ratio": 0.0, "precision": "fp32"},
        "eval": {"max_new_tokens": 4, "max_samples": 4},
    }
    return tunesmith.run(spec, output_dir=gen_data["dir"] / "system")


def _rendered_inputs(predictor, monkeypatch) -> list[str]:
    """The prompts as the model receives them, decoded from what reaches model.generate."""
    seen, real = [], predictor.model.generate

    def spy(**kwargs):
        seen.extend(predictor.tokenizer.batch_decode(kwargs["input_ids"], skip_special_tokens=False))
        return real(**kwargs)

    monkeypatch.setattr(predictor.model, "generate", spy)
    return seen


def test_a_runs_system_prompt_leads_what_its_model_answers_after_training(system_run, tmp_path, monkeypatch):
    from tunesmith.tasks.generation.formatting import render

    predictor = tunesmith.Predictor.load(system_run.run_dir)
    seen = _rendered_inputs(predictor, monkeypatch)
    predictor.generate(
        ["where is my order now", [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]]
    )
    assert sum(SYSTEM in text for text in seen) == 1 and any("Be brief." in text for text in seen)
    list(predictor.stream([{"role": "user", "content": "cancel it"}], max_new_tokens=2))
    assert SYSTEM in seen[-1]
    # the prompt a plain string becomes is the one the run's own evaluation rendered from its data
    evaluated = json.loads((system_run.run_dir / "generations.jsonl").read_text().splitlines()[0])["prompt"]
    user = evaluated[-1]["content"]
    assert evaluated[0] == {"role": "system", "content": SYSTEM}
    assert render(predictor.tokenizer, [{"role": "user", "content": user}], add_generation_prompt=True) == render(
        predictor.tokenizer, evaluated, add_generation_prompt=True
    )


def test_eval_of_a_system_prompt_run_gives_its_own_evaluations_scores(system_run):
    tuned = system_run.metrics["tuned"]
    scored = tunesmith.Predictor.load(system_run.run_dir).evaluate(system_run.run_dir.parent / "ask_reply_test.jsonl")
    assert scored["generated"] == 4 and scored["loss"] == pytest.approx(tuned["loss"], rel=1e-5)
    assert scored["rouge_l"] == pytest.approx(tuned["rouge_l"])
    # and its prompts, given as plain strings, get the very answers the run's evaluation wrote
    written = [json.loads(line) for line in (system_run.run_dir / "generations.jsonl").read_text().splitlines()]
    asked = [row["prompt"][-1]["content"] for row in written]
    answers = tunesmith.Predictor.load(system_run.run_dir).generate(asked)
    assert answers == [row["tuned"] for row in written] and any(answers)


def test_generate_reads_prompts_from_the_runs_own_column(system_run, tmp_path):
    prompts = tmp_path / "asks.csv"
    prompts.write_text("id,ask\n1,where is my order today\n2,please cancel my order now\n")
    out = tmp_path / "answers.csv"
    result = runner.invoke(
        app, ["generate", str(system_run.run_dir), str(prompts), "-o", str(out), "--max-new-tokens", "4"]
    )
    assert result.exit_code == 0, result.output
    import pandas as pd

    written = pd.read_csv(out, keep_default_na=False)
    expected = tunesmith.Predictor.load(system_run.run_dir).generate(list(written["ask"]), max_new_tokens=4)
    assert list(written["generated"]) == expected and list(written["id"]) == [1, 2]
    other = runner.invoke(
        app, ["generate", str(system_run.run_dir), str(out), "-o", str(tmp_path / "b.csv"), "--prompt-column", "nope"]
    )
    assert other.exit_code == 2 and "no prompt column 'nope'" in other.output and "ask" in other.output


def test_prompt_files_are_read_as_training_read_their_layout():
    import pandas as pd

    from tunesmith.data.conversations import prompts_of
    from tunesmith.recipe import DataSection

    data = DataSection(train="x")
    alpaca = pd.DataFrame({"instruction": ["Translate", "Sum up"], "input": ["hola", ""]})
    assert prompts_of(alpaca, data, "f") == ["Translate\n\nhola", "Sum up"]
    talk = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    chats = pd.DataFrame({"messages": [json.dumps(talk), json.dumps(talk[:1])]})
    assert prompts_of(chats, data, "f") == [talk[:1], talk[:1]]  # a trailing answer is answered again
    named = pd.DataFrame({"question": ["why"], "text": ["no"]})
    assert prompts_of(named, data, "f") == ["why"] and prompts_of(named, data, "f", "text") == ["no"]
    with pytest.raises(TunesmithError, match="empty or non-text"):
        prompts_of(pd.DataFrame({"prompt": ["ok", "  "]}), data, "f")


def test_exports_carry_the_runs_system_prompt_as_the_templates_default(system_run, tmp_path):
    from transformers import AutoTokenizer

    from tunesmith.export import export_run

    export_run(system_run.run_dir, "hf", tmp_path / "hf")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "hf")
    plain = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    own = tokenizer.apply_chat_template(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}], tokenize=False
    )
    assert SYSTEM in plain and SYSTEM not in own and "Be brief." in own
    export_run(system_run.run_dir, "gguf", tmp_path / "gguf", gguf_type="f32")
    assert f'SYSTEM """{SYSTEM}"""' in (tmp_path / "gguf" / "Modelfile").read_text()


def test_served_answers_start_from_the_runs_system_prompt(system_run):
    from fastapi.testclient import TestClient

    from tunesmith.serve import create_app
    from tunesmith.tasks.generation.formatting import render

    tokenizer = tunesmith.Predictor.load(system_run.run_dir).tokenizer
    user = [{"role": "user", "content": "where is my order"}]
    with_system = render(tokenizer, [{"role": "system", "content": SYSTEM}, *user], add_generation_prompt=True)
    with TestClient(create_app([system_run.run_dir])) as client:
        reply = client.post("/v1/chat/completions", json={"model": "system", "messages": user, "max_tokens": 2})
    assert reply.status_code == 200, reply.text
    assert reply.json()["usage"]["prompt_tokens"] == len(tokenizer(with_system, add_special_tokens=False)["input_ids"])


def test_the_recipes_answer_length_stays_the_runs_default(full_run, gen_data, tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    from tunesmith.serve import create_app

    predictor = tunesmith.Predictor.load(full_run.run_dir)
    assert predictor.max_new_tokens == 6  # the recipe's eval.max_new_tokens
    limits, real = [], predictor.model.generate

    def spy(**kwargs):
        limits.append(kwargs["max_new_tokens"])
        return real(**kwargs)

    monkeypatch.setattr(predictor.model, "generate", spy)
    predictor.generate("where is my order")
    predictor.generate("where is my order", max_new_tokens=2)
    assert limits == [6, 2]
    monkeypatch.setattr(tunesmith.Predictor, "load", lambda *a, **k: predictor)  # the CLI and server load this one
    out = tmp_path / "a.jsonl"
    result = runner.invoke(app, ["generate", str(full_run.run_dir), gen_data["test"], "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert len(limits) > 2 and set(limits[2:]) == {6}  # every batch of the file
    answered = len(limits)
    with TestClient(create_app([full_run.run_dir])) as client:
        body = {"model": "full", "messages": [{"role": "user", "content": "where is my order"}]}
        assert client.post("/v1/chat/completions", json=body).status_code == 200
    assert len(limits) == answered + 1 and limits[-1] == 6


def test_a_recipes_chat_template_file_trains_and_goes_with_the_model(gen_data, tmp_path, monkeypatch):
    from tests.test_generation_format import HASH_TEMPLATE
    from tunesmith.check import check_recipe
    from tunesmith.recipe import load_recipe

    (tmp_path / "hash.jinja").write_text(HASH_TEMPLATE, encoding="utf-8")
    spec = recipe(gen_data, epochs=1)
    spec["model"]["chat_template"] = "hash.jinja"  # relative to the recipe's folder, as data files are
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    result = tunesmith.run(tmp_path / "r.yaml", output_dir=tmp_path / "run")
    predictor = tunesmith.Predictor.load(result.run_dir)
    assert predictor.tokenizer.chat_template == HASH_TEMPLATE
    seen = _rendered_inputs(predictor, monkeypatch)
    predictor.generate("where is my order", max_new_tokens=2)
    assert "### user:\nwhere is my order" in seen[0] and seen[0].rstrip().endswith("### assistant:")
    spec["model"]["chat_template"] = "{% for m in messages %}{{ m['content'] }}{% endfor %}"  # answers never end
    report = check_recipe(load_recipe(spec))
    assert any("never stop" in e for e in report.errors)
    with pytest.raises(TunesmithError, match="never stop"):
        tunesmith.run(spec, output_dir=tmp_path / "refused")


def test_eval_base_answers_with_the_base_model_as_the_run_did(full_run, gen_data, tmp_path):
    out = tmp_path / "both.json"
    args = ["eval", str(full_run.run_dir), "--data", gen_data["test"], "--base", "-o", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    scored, trained = json.loads(out.read_text()), full_run.metrics
    rel = 1e-4 if trained["train"]["precision"] == "fp32" else 2e-3  # the run scored in its precision, eval in fp32
    for side in ("base", "tuned"):
        assert scored[side]["generated"] == 12
        assert scored[side]["loss"] == pytest.approx(trained[side]["loss"], rel=rel), side
    assert scored["tuned"]["loss"] < scored["base"]["loss"] - 0.5


def test_a_streamed_beam_row_whose_client_left_ends_early(full_run):
    from tunesmith.recipe import DecodingSection
    from tunesmith.tasks.generation.streams import generate_streams

    predictor = tunesmith.Predictor.load(full_run.run_dir)
    beams, sent = DecodingSection(num_beams=4), {}

    def stream(cancelled):
        sink = lambda row, text: sent.setdefault(row, []).append(text)  # noqa: E731
        prompts = ["where is my order", "please cancel my order"]
        return generate_streams(
            predictor.model, predictor.tokenizer, prompts, sink, 30, cancelled=cancelled, decoding=beams
        )

    kept = stream([lambda: False, lambda: False])
    left = stream([lambda: True, lambda: False])  # the first client left at once: its row stops, the other runs on
    assert left[0] <= 1 and left[1] == kept[1] and kept[0] > 1
    assert stream([lambda: True, lambda: True]) == [left[0], left[0]]  # nobody left listening: the batch ends


def test_generate_base_adds_the_starting_models_answers_beside(full_run, gen_data, tmp_path):
    from tunesmith.predict import load_base

    out = tmp_path / "both.jsonl"
    args = ["generate", str(full_run.run_dir), gen_data["test"], "-o", str(out), "--base", "--max-new-tokens", "4"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    prompts = [r["prompt"] for r in rows]
    assert [r["base_generated"] for r in rows] == load_base(full_run.run_dir).generate(prompts, max_new_tokens=4)
    assert [r["generated"] for r in rows] == tunesmith.Predictor.load(full_run.run_dir).generate(
        prompts, max_new_tokens=4
    )
    assert [r["generated"] for r in rows] != [r["base_generated"] for r in rows]  # fine-tuning changed the answers


def test_answering_many_prompts_says_how_far_it_got(full_run, logged):
    predictor = tunesmith.Predictor.load(full_run.run_dir)
    predictor.batch_size = 4
    predictor.generate(["where is my order"] * 3, max_new_tokens=2)  # one batch: nothing to report
    assert "answered" not in logged()
    predictor.generate(["where is my order"] * 20, max_new_tokens=2)
    said = logged()
    assert "answered 4 of 20 prompts" in said and "answered 20 of 20 prompts" in said


def test_neftune_noises_training_alone_and_the_cosine_schedule_is_followed(gen_data, tmp_path):
    import math

    import torch

    from tunesmith.engine.loop import noisy_embeddings
    from tunesmith.models.loading import load_causal_lm, resolve_weights

    model = load_causal_lm(resolve_weights("tiny-llama"))
    ids = torch.tensor([[5, 6, 7, 8]])
    clean = model.get_input_embeddings()(ids)
    with noisy_embeddings(model, 5.0):
        model.train()
        assert not torch.equal(model.get_input_embeddings()(ids), clean)  # noise while training
        model.eval()
        assert torch.equal(model.get_input_embeddings()(ids), clean)  # none in the loop's evaluations
    model.train()
    assert torch.equal(model.get_input_embeddings()(ids), clean)  # and none after the loop
    assert not model.get_input_embeddings()._forward_hooks

    train = {"epochs": 1, "log_every": 1, "lr_scheduler": "cosine", "early_stopping": {"patience": None}}
    runs = {
        alpha: tunesmith.run(recipe(gen_data, **train, neftune_alpha=alpha), output_dir=tmp_path / f"a{alpha}")
        for alpha in (None, 5.0)
    }
    logs = {
        alpha: [json.loads(line) for line in (r.run_dir / "train_log.jsonl").read_text().splitlines()]
        for alpha, r in runs.items()
    }
    steps = {alpha: [r for r in log if "loss" in r] for alpha, log in logs.items()}
    assert [r["loss"] for r in steps[None]] != [r["loss"] for r in steps[5.0]]  # same seed: the noise is the change
    total = len(steps[None])
    for record in steps[None]:  # cosine from 3e-3 to 0 over the run's steps (no warmup)
        assert record["lr"] == pytest.approx(3e-3 * 0.5 * (1 + math.cos(math.pi * record["step"] / total)), abs=1e-9)
    assert yaml.safe_load((runs[5.0].run_dir / "recipe.yaml").read_text())["train"]["neftune_alpha"] == 5.0


def test_without_a_test_set_the_tuned_loss_is_the_loops_score_of_the_kept_weights(gen_data, tmp_path, monkeypatch):
    """The evaluation set is then the validation set the loop scored the kept epoch on: not scored again."""
    from tunesmith.methods import supervised_generation as sg

    passes = []
    measure = sg.validation_loss
    monkeypatch.setattr(sg, "validation_loss", lambda *a, **k: passes.append(1) or measure(*a, **k))
    data = {k: gen_data[k] for k in ("train", "validation")}
    m = tunesmith.run({**recipe(gen_data, epochs=2), "data": data}, output_dir=tmp_path / "run").metrics
    kept = next(
        h
        for h in json.loads((tmp_path / "run" / "metrics.json").read_text())["train"]["history"]
        if h["epoch"] == m["train"]["best_epoch"]
    )
    assert m["eval_set"] == "validation" and m["tuned"]["loss"] == kept["loss"] < m["base"]["loss"]
    assert len(passes) == 3  # two epochs and the base model; the tuned model's pass is the kept epoch's
    m = tunesmith.run({**recipe(gen_data, epochs=1)}, output_dir=tmp_path / "test").metrics
    assert m["eval_set"] == "test" and m["tuned"]["loss"] != m["train"]["history"][-1]["loss"]


def test_baseline_none_skips_the_base_model_and_the_report_says_so(gen_data, tmp_path, monkeypatch):
    from tunesmith.methods import supervised_generation as sg

    sides = []
    evaluate = sg._evaluate
    monkeypatch.setattr(
        sg, "_evaluate", lambda plan, ctx, model, side, *a: sides.append(side) or evaluate(plan, ctx, model, side, *a)
    )
    run = tunesmith.run(
        {**recipe(gen_data, epochs=1), "eval": {"baseline": "none", "max_new_tokens": 4}}, output_dir=tmp_path / "run"
    )
    assert sides == ["tuned"] and run.metrics["base"] == {} and "loss" in run.metrics["tuned"]
    rows = [json.loads(line) for line in (run.run_dir / "generations.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and all(r["base"] is None and isinstance(r["tuned"], str) for r in rows)
    report = (run.run_dir / "report.md").read_text()
    assert f"| loss | — | {run.metrics['tuned']['loss']:.4f} | — |" in report
