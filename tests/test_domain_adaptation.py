"""Continued pre-training pieces: corpus reading, block packing, MLM masking, vocabulary extension, CLM runs."""

import json

import pytest
import torch

import tunesmith
from tunesmith.data.corpus import hold_out, pack_blocks, read_corpus
from tunesmith.errors import TunesmithError
from tunesmith.methods.domain_adaptation import _objective, _rows
from tunesmith.methods.vocab import candidate_words, extend_vocabulary
from tunesmith.models.loading import load_tokenizer, resolve_weights

DOCS = ["the movie is good and the product is great"] * 3 + ["a bad movie, not good at all"] * 3


@pytest.fixture(scope="module")
def bert_tok():
    return load_tokenizer(resolve_weights("tiny-bert"))


def test_read_corpus_takes_paragraphs_folders_and_tables(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("first doc\nstill first\n\nsecond doc\n\n\n", encoding="utf-8")
    (tmp_path / "notes" / "b.jsonl").write_text('{"body": "third"}\n{"body": ""}\n', encoding="utf-8")
    docs = read_corpus([str(tmp_path / "notes")], "body", "method.corpus")
    assert docs == ["first doc\nstill first", "second doc", "third"]  # empty cells skipped


@pytest.mark.parametrize(
    "setup, words",
    [
        (lambda p: None, ["not found"]),
        (lambda p: p.write_bytes(b"\xff\xfe bad"), ["not UTF-8"]),
        (lambda p: p.write_text("", encoding="utf-8"), ["no text"]),
    ],
)
def test_read_corpus_errors_are_clear(tmp_path, setup, words):
    path = tmp_path / "corpus.txt"
    setup(path)
    with pytest.raises(TunesmithError) as err:
        read_corpus([str(path)], "text", "method.corpus")
    assert all(w in str(err.value) for w in words)


def test_read_corpus_names_the_missing_text_column(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("body\nhello\n", encoding="utf-8")
    with pytest.raises(TunesmithError, match="no column 'text'.*body"):
        read_corpus([str(path)], "text", "method.corpus")


def test_encoder_blocks_are_full_and_wrapped_in_cls_sep(bert_tok):
    blocks = pack_blocks(bert_tok, DOCS * 5, 16, encoder=True)
    assert all(b[0] == bert_tok.cls_token_id and b[-1] == bert_tok.sep_token_id for b in blocks)
    assert all(len(b) == 16 for b in blocks[:-1]) and len(blocks[-1]) >= 8 + 2
    # nothing lost or reordered: the inner tokens are the documents joined by [SEP]
    stream = [
        t for doc in bert_tok(DOCS * 5, add_special_tokens=False)["input_ids"] for t in (*doc, bert_tok.sep_token_id)
    ]
    inner = [t for b in blocks for t in b[1:-1]]
    assert inner == stream[: len(inner)] and len(stream) - len(inner) < 7


def test_decoder_blocks_separate_documents_with_eos():
    tok = load_tokenizer(resolve_weights("tiny-llama"))
    blocks = pack_blocks(tok, DOCS, 32, encoder=False)
    assert all(len(b) == 32 for b in blocks[:-1])
    flat = [t for b in blocks for t in b]
    stream = [t for doc in tok(DOCS, add_special_tokens=False)["input_ids"] for t in (*doc, tok.eos_token_id)]
    assert flat == stream[: len(flat)] and flat.count(tok.eos_token_id) >= len(DOCS) - 1


def test_hold_out_splits_documents_reproducibly():
    docs = [f"doc {i}" for i in range(40)]
    train, held = hold_out(docs, 0.1, seed=3)
    assert len(held) == 4 and not set(train) & set(held) and sorted(train + held) == sorted(docs)
    assert hold_out(docs, 0.1, seed=3) == (train, held)


def test_mlm_heldout_masking_is_fixed_and_skips_special_tokens(bert_tok):
    blocks = pack_blocks(bert_tok, DOCS * 40, 32, encoder=True)
    held = _rows(blocks, "mlm")
    _, _, rows = _objective("mlm", bert_tok, 0.15, seed=0, held=held)
    _, _, again = _objective("mlm", bert_tok, 0.15, seed=0, held=held)
    assert rows == again  # every evaluation scores the same positions
    labeled = [
        (r["labels"][i], held[j]["input_ids"][i], r["input_ids"][i])
        for j, r in enumerate(rows)
        for i in range(len(r["labels"]))
        if r["labels"][i] != -100
    ]
    total = sum(len(r["input_ids"]) for r in rows)
    assert 0.08 < len(labeled) / total < 0.22
    assert all(label == original for label, original, _ in labeled)  # the label is the original token
    specials = {bert_tok.cls_token_id, bert_tok.sep_token_id}
    assert not any(original in specials for _, original, _ in labeled)
    masked_share = sum(shown == bert_tok.mask_token_id for _, _, shown in labeled) / len(labeled)
    assert 0.65 < masked_share < 0.95  # ~80% [MASK], the rest random or kept


def test_vocabulary_extension_adds_whole_words_with_mean_init(bert_tok):
    from transformers import AutoModelForMaskedLM

    tok = load_tokenizer(resolve_weights("tiny-bert"))
    model = AutoModelForMaskedLM.from_pretrained(resolve_weights("tiny-bert"))
    docs = ["hypertension and tachycardia " * 3, "the hypertension is bad", "tachycardia, good"] * 10
    words = candidate_words(tok, docs, limit=5, min_pieces=3, min_count=5)
    assert [w for w, _ in words] == ["hypertension", "tachycardia"]  # by frequency; 'the' etc. are in the vocabulary
    before = model.get_input_embeddings().weight.detach().clone()
    reachable = len(tok)  # ids the tokenizer could produce before
    added = extend_vocabulary(model, tok, words)
    assert added == ["hypertension", "tachycardia"]
    weights = model.get_input_embeddings().weight
    for word, pieces in words:
        new_ids = tok("the " + word + " is", add_special_tokens=False)["input_ids"]
        token_id = tok.convert_tokens_to_ids(word)
        assert new_ids.count(token_id) == 1 and len(new_ids) == 3  # one piece now
        assert torch.allclose(weights[token_id], before[pieces].mean(0))
    assert torch.equal(weights[:reachable], before[:reachable])  # old tokens untouched
    assert model.get_output_embeddings().weight.shape[0] == weights.shape[0] >= len(tok)  # tied MLM decoder grew too


def test_vocabulary_extension_refuses_byte_level_tokenizers():
    from tunesmith.models.loading import load_causal_lm

    path = resolve_weights("tiny-llama")
    with pytest.raises(TunesmithError, match="WordPiece"):
        extend_vocabulary(load_causal_lm(path), load_tokenizer(path), [("hypertension", [5, 6, 7])])


def test_decoder_domain_adaptation_lowers_heldout_perplexity(tmp_path):
    corpus = tmp_path / "notes.txt"
    corpus.write_text(
        "\n\n".join(["the customer asked where the order is and the agent answered politely"] * 60), encoding="utf-8"
    )
    recipe = {
        "model": {"name": "tiny-llama"},
        "method": {"name": "domain_adaptation", "corpus": [str(corpus)], "tuning": "full"},
        "train": {"epochs": 2, "lr": 3e-3, "batch_size": 4, "max_length": 64, "warmup_ratio": 0.0},
    }
    result = tunesmith.run(recipe, output_dir=tmp_path / "run")
    m = result.metrics
    assert m["objective"] == "clm" and m["tuned"]["perplexity"] < 0.8 * m["base"]["perplexity"]
    assert m["corpus"]["heldout_documents"] == 3 and m["corpus"]["blocks"] > 0
    saved = json.loads((result.run_dir / "model" / "config.json").read_text())
    assert saved["architectures"] == ["LlamaForCausalLM"]


def test_encoder_domain_adaptation_budget_and_general_mix(tmp_path):
    domain, general = tmp_path / "domain.txt", tmp_path / "general.txt"
    domain.write_text("\n\n".join(["the product is great and good"] * 80), encoding="utf-8")
    general.write_text("\n\n".join(["a movie is a movie"] * 20), encoding="utf-8")
    recipe = {
        "model": {"name": "tiny-bert"},
        "method": {
            "name": "domain_adaptation",
            "corpus": [str(domain)],
            "general_corpus": [str(general)],
            "general_ratio": 0.25,
            "max_tokens": 320,
        },
        "train": {"epochs": 1, "lr": 1e-3, "batch_size": 4, "max_length": 32},
    }
    m = tunesmith.run(recipe, output_dir=tmp_path / "run").metrics
    assert m["objective"] == "mlm" and m["corpus"]["blocks"] == 10  # 320 tokens / 32 per block
    assert m["corpus"]["general_blocks"] > 0 and m["tuned"]["loss"] < m["base"]["loss"]


def test_domain_adaptation_needs_text(tmp_path):
    corpus = tmp_path / "one.txt"
    corpus.write_text("just one document", encoding="utf-8")
    recipe = {"model": {"name": "tiny-bert"}, "method": {"name": "domain_adaptation", "corpus": [str(corpus)]}}
    with pytest.raises(TunesmithError, match="fewer than 2 documents"):
        tunesmith.run(recipe, output_dir=tmp_path / "run")


def test_head_warmup_trains_only_the_new_mlm_head(bert_tok, tmp_path):
    from accelerate import Accelerator

    from tunesmith.engine.loop import Hooks
    from tunesmith.methods.domain_adaptation import _load_lm, _warm_up_head
    from tunesmith.recipe import TrainSection

    model, fresh = _load_lm(resolve_weights("tiny-bert"), "mlm")
    assert fresh  # tiny-bert is saved as a bare BertModel, like sentence-embedding checkpoints
    rows = _rows(pack_blocks(bert_tok, DOCS * 20, 32, encoder=True), "mlm")
    train_loss, eval_loss, held = _objective("mlm", bert_tok, 0.15, 0, rows[:4])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    (tmp_path / "train_log.jsonl").write_text("")
    hooks = Hooks(evaluate=lambda m: {"loss": 1.0}, compute_loss=train_loss, default_metric="loss")
    _warm_up_head(
        model, Accelerator(), rows, TrainSection(batch_size=4), 1e-3, hooks, 0.5, bert_tok.pad_token_id, tmp_path
    )
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("cls.") for k in changed)
    assert "cls.predictions.transform.dense.weight" in changed
    assert all(p.requires_grad for p in model.parameters())  # the body trains again afterwards
