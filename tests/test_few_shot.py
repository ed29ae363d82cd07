"""few_shot: pair generation (balance, budget, no self-pairs), and an end-to-end tiny run."""

import json

import pytest
import torch

import tunesmith
from tunesmith.methods.pairs import make_pairs


def labels_for(counts: dict[str, int]) -> list[str]:
    return [label for label, n in counts.items() for _ in range(n)]


@pytest.mark.parametrize(
    "counts, budget", [({"a": 8, "b": 8}, 320), ({f"c{i}": 8 for i in range(35)}, 5600), ({"a": 3000, "b": 2000}, 1000)]
)
def test_pairs_are_balanced_within_budget_and_never_self(counts, budget):
    labels = labels_for(counts)
    pairs = make_pairs(labels, budget, seed=0)
    assert len(pairs) == budget
    assert sum(t for _, _, t in pairs) == budget // 2
    assert all(i != j for i, j, _ in pairs)
    assert all((labels[i] == labels[j]) == (t == 1.0) for i, j, t in pairs)
    distinct_pos = sum(n * (n - 1) // 2 for n in counts.values())
    used_pos = {(i, j) for i, j, t in pairs if t == 1.0}
    assert len(used_pos) == min(distinct_pos, budget // 2)  # every distinct pair before any repeat
    distinct_neg = len(labels) * (len(labels) - 1) // 2 - distinct_pos
    assert len({(i, j) for i, j, t in pairs if t == 0.0}) == min(distinct_neg, budget - budget // 2)


def test_pairs_repeat_only_when_distinct_ones_run_out_and_are_seeded():
    labels = labels_for({"a": 2, "b": 2})  # 2 distinct positives, 4 distinct negatives
    pairs = make_pairs(labels, 20, seed=3)
    assert len(pairs) == 20 and sum(t for *_, t in pairs) == 10
    assert {(i, j) for i, j, t in pairs if t == 1.0} == {(0, 1), (2, 3)}
    assert make_pairs(labels, 20, seed=3) == pairs


def test_few_shot_run_end_to_end(toy_data, tmp_path):
    recipe = {**toy_data["recipe"], "method": {"name": "few_shot", "pairs_per_example": 10}, "train": {"lr": 1e-3}}
    recipe["data"] = {**recipe["data"], "samples_per_class": 8}
    # a loaded Recipe, as the CLI passes it: keys the user left unset must stay unset for few_shot's defaults
    result = tunesmith.run(tunesmith.load_recipe(recipe), output_dir=tmp_path / "run")
    m = result.metrics
    assert m["method"] == "few_shot" and m["train"]["train_size"] == 16 and m["train"]["pairs"] == 160
    assert m["train"]["epochs"] == 1  # few_shot's defaults: one pass over the pairs, 16 pairs per step
    assert m["train"]["effective_batch_size"] == 16
    for key in ("accuracy", "f1_macro", "precision_macro", "recall_macro"):
        assert 0.0 <= m["base"][key] <= 1.0 and 0.0 <= m["tuned"][key] <= 1.0
    head = json.loads((result.run_dir / "model" / "head.json").read_text())
    assert head["labels"] == ["negative", "positive"] and len(head["coef"][0]) == 32
    clf = tunesmith.Predictor.load(result.run_dir)
    probs = clf.predict_proba(["the movie is good 1", "it is terrible 2"])
    assert probs.shape == (2, 2) and abs(probs.sum(1) - 1).max() < 1e-6
    assert clf.predict(["great"])[0] in clf.classes_
    # the base line's head on the untuned body, kept as numbers: the base model answers on the run's own test file
    from tunesmith.predict import load_base

    base = load_base(result.run_dir)
    assert base.evaluate(toy_data["recipe"]["data"]["test"])["f1_macro"] == pytest.approx(
        m["base"]["f1_macro"], abs=1e-4
    )


def test_a_body_that_training_made_worse_on_validation_is_not_kept(toy_data, tmp_path, logged):
    recipe = {
        **toy_data["recipe"],
        "method": {"name": "few_shot"},
        "train": {"lr": 0.2},
    }  # far too high: wrecks the body
    recipe["data"] = {**recipe["data"], "samples_per_class": 8}
    result = tunesmith.run(recipe, output_dir=tmp_path / "run")
    m = result.metrics
    assert m["train"]["kept_base_body"] is True and "keeping the base body" in logged()
    assert m["tuned"]["f1_macro"] == pytest.approx(m["base"]["f1_macro"])  # the base body and its head, not the wreck
    texts = [line.split(",")[0] for line in open(toy_data["paths"]["test"]).read().splitlines()[1:6]]
    from tunesmith.models.loading import load_encoder, resolve_weights
    from tunesmith.runs.rundir import load_saved_model

    saved = load_saved_model(result.run_dir / "model", load_encoder).state_dict()
    base = load_encoder(resolve_weights("tiny-bert")).state_dict()
    assert all(torch.equal(saved[k], base[k]) for k in base)  # what was saved is the untouched body
    assert len(tunesmith.Predictor.load(result.run_dir).predict(texts)) == 5
    sane = tunesmith.run({**recipe, "train": {"lr": 1e-3}}, output_dir=tmp_path / "sane").metrics
    assert sane["train"]["kept_base_body"] is False  # a sane rate: the trained body is kept
    by_loss = {**recipe, "train": {"lr": 0.2, "early_stopping": {"metric": "loss"}}}  # lower is better there
    assert tunesmith.run(by_loss, output_dir=tmp_path / "loss").metrics["train"]["kept_base_body"] is True


def test_few_shot_with_a_decoder_is_prompt_based_learning(toy_data, tmp_path):
    recipe = {
        **toy_data["recipe"],
        "model": {"name": "tiny-llama"},
        "method": {"name": "few_shot", "verbalizers": {"positive": "good", "negative": "bad"}},
        "train": {"lr": 1e-3, "max_length": 256, "epochs": 2},
    }
    recipe["data"] = {**recipe["data"], "samples_per_class": 4}
    m = tunesmith.run(recipe, output_dir=tmp_path / "run").metrics
    assert m["generation_metric"] == "exact_match" and m["tuning"] == "lora" and m["generated"] == 40
    for key in ("accuracy", "f1_macro", "precision_macro", "recall_macro"):
        assert 0.0 <= m["base"][key] <= 1.0 and 0.0 <= m["tuned"][key] <= 1.0
    samples = [json.loads(line) for line in (tmp_path / "run" / "generations.jsonl").read_text().splitlines()]
    assert {s["reference"] for s in samples} == {"good", "bad"}
    assert "good, bad" in samples[0]["prompt"][0]["content"] or "bad, good" in samples[0]["prompt"][0]["content"]


def test_reloaded_and_staged_recipes_keep_unset_keys_unset(toy_data):
    """The CLI and staged runs re-read a Recipe: a default the user never wrote must not turn into a setting."""
    from tunesmith.recipe import stage_recipe

    raw = {**toy_data["recipe"], "method": {"name": "few_shot"}, "train": {"lr": 1e-3}}
    once = tunesmith.load_recipe(raw)
    assert tunesmith.load_recipe(once).train.model_fields_set == {"lr"}
    staged = tunesmith.load_recipe(
        {
            **raw,
            "stages": [{"name": "a", "data": raw["data"]}, {"name": "b", "data": raw["data"], "train": {"seed": 3}}],
        }
    )
    assert stage_recipe(staged, 1).train.model_fields_set == {"lr", "seed"}
    assert stage_recipe(staged, 0, model_name="tiny-bert").model.name == "tiny-bert"


def test_verbalizers_must_name_known_labels_and_differ():
    from tunesmith.errors import TunesmithError
    from tunesmith.methods.few_shot_prompted import verbalizers
    from tunesmith.recipe import FewShotMethod

    with pytest.raises(TunesmithError, match="not in the training data"):
        verbalizers(FewShotMethod(name="few_shot", verbalizers={"postive": "good"}), ["negative", "positive"])
    with pytest.raises(TunesmithError, match="share the same answer"):
        verbalizers(
            FewShotMethod(name="few_shot", verbalizers={"positive": "x", "negative": "x"}), ["negative", "positive"]
        )


def test_seeds_repeat_the_run_and_report_mean_and_std(toy_data, tmp_path):
    import yaml
    from typer.testing import CliRunner

    from tunesmith.cli import app

    recipe = {**toy_data["recipe"], "method": {"name": "few_shot", "pairs_per_example": 4}, "train": {"lr": 1e-3}}
    recipe["data"] = {**recipe["data"], "samples_per_class": 4}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    result = CliRunner().invoke(app, ["train", str(path), "-o", str(tmp_path / "run"), "--seeds", "3"])
    assert result.exit_code == 0, result.output
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["seeds"] == [42, 43, 44] and len(m["per_seed"]) == 3
    accs = [s["tuned"]["accuracy"] for s in m["per_seed"]]
    assert m["tuned"]["accuracy"] == pytest.approx(sum(accs) / 3)
    assert m["tuned_std"]["accuracy"] >= 0 and "±" in result.output
    assert "Per seed" in (tmp_path / "run" / "report.md").read_text()
    assert all((tmp_path / "run" / f"seed-{s}" / "metrics.json").is_file() for s in m["seeds"])
    assert tunesmith.Predictor.load(tmp_path / "run").predict(["good"])[0] in ("positive", "negative")


def test_pair_loss_embeds_each_example_once_with_the_same_loss_and_gradient():
    import torch

    from tunesmith.engine.batching import collate, tokenize
    from tunesmith.methods.pairs import cosine_pair_loss, mean_pool, pair_rows
    from tunesmith.models.loading import load_encoder, load_tokenizer, resolve_weights

    path = resolve_weights("tiny-bert")
    tok, model = load_tokenizer(path), load_encoder(path).eval()  # eval: no dropout, so both ways must agree
    rows, _ = tokenize(tok, ["good movie", "a great product", "bad", "it is not good at all"], None, 32)
    pairs = [(0, 1, 1.0), (0, 2, 0.0), (2, 3, 1.0), (1, 3, 0.0), (0, 1, 1.0)]  # repeats, like small K
    prs, targets = pair_rows(rows, pairs)
    batch = collate(prs, tok.pad_token_id, targets)
    calls = []
    hook = model.register_forward_hook(lambda m, i, o: calls.append(i))
    loss = cosine_pair_loss(model, batch)
    hook.remove()
    assert len(calls) == 1  # one forward pass over the distinct examples

    def naive(side, mask):
        return mean_pool(model(input_ids=batch[side], attention_mask=batch[mask]).last_hidden_state, batch[mask])

    cos = torch.nn.functional.cosine_similarity(
        naive("input_ids", "attention_mask"), naive("pair_input_ids", "pair_attention_mask")
    )
    reference = torch.nn.functional.mse_loss(cos, batch["labels"].float())
    assert torch.allclose(loss, reference, atol=1e-6)
    weight = model.encoder.layer[0].attention.self.query.weight
    grad = torch.autograd.grad(loss, weight)[0]
    assert torch.allclose(grad, torch.autograd.grad(reference, weight)[0], atol=1e-6)
