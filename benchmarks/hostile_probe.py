"""Hostile inputs on the serving, export, data and run surfaces, each case judged as a user would judge the answer.

    python benchmarks/hostile_probe.py [--json out.json]

Tiny random models (built in-process, no download); about 2 minutes on 2 cores. Every case is one hostile thing a
user or client does; its verdict is:
- well:      a clear message (a CLI error, a TunesmithError, an HTTP 4xx in OpenAI's shape) or the right answer;
- unclear:   accepted silently, or refused with a misleading answer;
- traceback: an uncaught exception or an HTTP 5xx;
- data_loss: a file the user owned changed or vanished.
Run it on two checkouts (PYTHONPATH=OTHER/src) to count before and after a change.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pandas as pd
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import tunesmith  # noqa: E402
from tests import test_continual, test_continual_tasks, test_multilabel  # noqa: E402
from tests.conftest import sentiment_rows  # noqa: E402
from tunesmith.cli import app  # noqa: E402

KEY = "probe-key"
runner = CliRunner()
CASES: list[tuple[str, str, object]] = []


def case(surface: str):
    def add(fn):
        CASES.append((surface, fn.__name__, fn))
        return fn

    return add


# ------------------------------------------------------------------ verdict helpers


def cli(args: list[str], refuse: bool = True) -> str:
    done = runner.invoke(app, args)
    if done.exception is not None and not isinstance(done.exception, SystemExit):
        return "traceback"
    if refuse:
        return "well" if done.exit_code != 0 and "error" in done.output.lower() else "unclear"
    return "well" if done.exit_code == 0 else "unclear"


def api(fn, refuse: bool = True) -> str:
    try:
        fn()
    except tunesmith.TunesmithError:
        return "well" if refuse else "unclear"
    except Exception:  # noqa: BLE001
        return "traceback"
    return "unclear" if refuse else "well"


def http(status: int, body: dict | None, want: int | None = None) -> str:
    if status >= 500:
        return "traceback"
    if want is not None:
        return "well" if status == want else "unclear"
    if 400 <= status < 500:
        return "well" if isinstance(body, dict) and isinstance(body.get("error"), dict) else "unclear"
    return "unclear"


def same_bytes(paths: dict[Path, bytes]) -> bool:
    return all(p.is_file() and p.read_bytes() == b for p, b in paths.items())


# ------------------------------------------------------------------ fixtures: runs and a live server


class World:
    def __init__(self, root: Path):
        self.root = root
        sentiment_rows(60, 0).to_csv(root / "train.csv", index=False)
        sentiment_rows(20, 3).to_csv(root / "x.csv", index=False)
        short = {"epochs": 1}
        self.classifier = tunesmith.run(
            {
                "model": "tiny-bert",
                "data": {"train": str(root / "train.csv")},
                "train": short,
                "eval": {"baseline": "none"},
            },
            output_dir=root / "classifier",
        ).run_dir
        (root / "chat.jsonl").write_text(
            "\n".join(json.dumps({"prompt": f"order {i}", "response": "track"}) for i in range(8))
        )
        self.chat = tunesmith.run(
            {
                "task": "generation",
                "model": "tiny-llama",
                "data": {"train": str(root / "chat.jsonl")},
                "train": short,
                "eval": {"baseline": "none", "max_samples": 1, "max_new_tokens": 2},
            },
            output_dir=root / "chat",
        ).run_dir
        files = test_continual._stream(root)
        recipe = test_continual._recipe(files, "replay", replay_ratio=1.0)
        recipe["experiences"], recipe["train"] = recipe["experiences"][:1], {**recipe["train"], "epochs": 1}
        self.continual_files = files
        self.continual = tunesmith.run(recipe, output_dir=root / "continual").run_dir
        tagger = {**test_continual_tasks.METHOD, "strategy": "replay"}
        exps = test_continual_tasks.tagged_experiences(root, (("items", ["ITEM"], 0),), 40, 10)
        self.tagger = tunesmith.run(
            {"task": "token_classification", "model": "tiny-bert", "eval": {"baseline": "none"}, "method": tagger}
            | {"train": short, "experiences": exps},
            output_dir=root / "tagger",
        ).run_dir
        self.url = self._serve([self.classifier, self.chat])
        self.collect = root / "collect"
        self.collecting_url = self._serve([self.tagger], collect=self.collect)

    def _serve(self, runs: list[Path], collect: Path | None = None) -> str:
        import uvicorn

        from tunesmith.serve import Limits, create_app

        application = create_app(
            runs,
            api_key=KEY,
            limits=Limits(max_inputs=8, max_prompt_tokens=200, max_tokens=64, max_body_bytes=50_000),
            collect=collect,
        )
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(application, host="127.0.0.1", port=port, log_level="critical"))
        threading.Thread(target=server.run, daemon=True).start()
        while not server.started:
            time.sleep(0.05)
        return f"http://127.0.0.1:{port}"

    def post(
        self,
        path: str,
        payload=None,
        raw: bytes | None = None,
        key: str | None = KEY,
        method: str = "POST",
        url: str | None = None,
    ) -> str:
        headers = {
            "content-type": "application/json",
            **(
                {"Authorization": key}
                if key and key.startswith(("Bearer", "bearer"))
                else {"Authorization": f"Bearer {key}"}
                if key
                else {}
            ),
        }
        body = raw if raw is not None else json.dumps(payload).encode()
        answer = httpx.request(method, (url or self.url) + path, content=body, headers=headers, timeout=60)
        try:
            return answer.status_code, answer.json()
        except ValueError:
            return answer.status_code, None

    def scratch(self, name: str) -> Path:
        folder = self.root / "scratch" / name
        folder.mkdir(parents=True)
        return folder


W: World


def classify(payload) -> str:
    return http(*W.post("/v1/classify", {"model": "classifier", **payload}))


def chat(payload, path="/v1/chat/completions") -> str:
    return http(
        *W.post(path, {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, **payload})
    )


# ------------------------------------------------------------------ serve


@case("serve")
def classify_too_many_inputs():
    return classify({"input": ["a"] * 300})


@case("serve")
def classify_empty_list():
    return classify({"input": []})


@case("serve")
def classify_numbers():
    return classify({"input": [1, 2]})


@case("serve")
def classify_nested_lists():
    return classify({"input": [[["x"]]]})


@case("serve")
def classify_top_k_zero():
    return classify({"input": "x", "top_k": 0})


@case("serve")
def classify_model_null():  # null is no model named: the route's only model answers, as without the field
    return http(*W.post("/v1/classify", {"model": None, "input": "x"}), want=200)


@case("serve")
def classify_no_model():  # the route's only model answers, as vLLM defaults it
    return http(*W.post("/v1/classify", {"input": "x"}), want=200)


@case("serve")
def body_is_a_list():
    return http(*W.post("/v1/classify", raw=b'["x"]'))


@case("serve")
def body_is_a_number():
    return http(*W.post("/v1/classify", raw=b"42"))


@case("serve")
def deeply_nested_json():
    return http(*W.post("/v1/classify", raw=b'{"model": "classifier", "input": ' + b"[" * 5000 + b"]" * 5000 + b"}"))


@case("serve")
def lone_surrogate_in_a_classify_text():
    return http(*W.post("/v1/classify", raw=b'{"model": "classifier", "input": "a \\udc80"}'))


@case("serve")
def lone_surrogate_in_a_chat_message():
    return http(
        *W.post("/v1/chat/completions", raw=b'{"model": "chat", "messages": [{"role": "user", "content": "\\ud800"}]}')
    )


@case("serve")
def chat_no_messages():
    return chat({"messages": []})


@case("serve")
def chat_tool_role():
    return chat({"messages": [{"role": "tool", "content": "x"}]})


@case("serve")
def chat_null_content():
    return chat({"messages": [{"role": "user", "content": None}]})


@case("serve")
def chat_temperature_5():
    return chat({"temperature": 5})


@case("serve")
def chat_huge_max_tokens():
    return chat({"max_tokens": 10**9})


@case("serve")
def chat_n_2():
    return chat({"n": 2})


@case("serve")
def chat_many_stops():
    return chat({"stop": [f"s{i}" for i in range(50)]})


@case("serve")
def chat_prompt_over_the_limit():
    return chat({"messages": [{"role": "user", "content": "word " * 2000}]})


@case("serve")
def completion_prompt_list():
    return http(*W.post("/v1/completions", {"model": "chat", "prompt": ["a", "b"]}))


@case("serve")
def chat_to_a_classifier():
    return http(
        *W.post("/v1/chat/completions", {"model": "classifier", "messages": [{"role": "user", "content": "x"}]})
    )


@case("serve")
def classify_to_a_chat_model():
    return http(*W.post("/v1/classify", {"model": "chat", "input": "x"}))


@case("serve")
def get_on_a_post_route():
    return http(*W.post("/v1/chat/completions", method="GET", raw=b""))


@case("serve")
def unknown_route():
    return http(*W.post("/v1/embeddings", {"model": "classifier", "input": "x"}))


@case("serve")
def tools_are_asked_for():
    return chat({"tools": [{"type": "function", "function": {"name": "f"}}]})


@case("serve")
def json_response_format():
    return chat({"response_format": {"type": "json_object"}})


@case("serve")
def logit_bias_given():
    return chat({"logit_bias": {"50": 100}})


@case("serve")
def misspelt_field():
    return chat({"max_token": 5})


@case("serve")
def wrong_key():
    return http(*W.post("/v1/classify", {"model": "classifier", "input": "x"}, key="nope"))


@case("serve")
def lowercase_bearer_scheme():
    return http(*W.post("/v1/classify", {"model": "classifier", "input": "x"}, key=f"bearer {KEY}"), want=200)


@case("serve")
def body_over_the_limit():
    return http(*W.post("/v1/classify", {"model": "classifier", "input": "x" * 60_000}))


@case("serve")
def empty_api_key():
    from tunesmith.serve import create_app

    return api(lambda: create_app([W.classifier], api_key=""))


@case("serve")
def chat_message_without_role():
    return chat({"messages": [{"content": "hi"}]})


@case("serve")
def form_encoded_body():
    return http(*W.post("/v1/classify", raw=b"model=classifier&input=x"))


@case("serve")
def classify_top_k_huge():
    return http(*W.post("/v1/classify", {"model": "classifier", "input": "x", "top_k": 10**9}), want=200)


@case("serve")
def stream_zero_tokens():
    return chat({"stream": True, "max_tokens": 0})


@case("serve")
def completions_with_messages_only():
    return http(*W.post("/v1/completions", {"model": "chat", "messages": [{"role": "user", "content": "x"}]}))


@case("serve")
def model_is_a_number():
    return http(*W.post("/v1/classify", {"model": 7, "input": "x"}))


@case("serve")
def temperature_nan():
    return http(
        *W.post(
            "/v1/chat/completions",
            raw=b'{"model": "chat", "messages": [{"role": "user", "content": "x"}], "temperature": NaN}',
        )
    )


@case("serve")
def max_tokens_infinity():
    return http(
        *W.post(
            "/v1/chat/completions",
            raw=b'{"model": "chat", "messages": [{"role": "user", "content": "x"}], "max_tokens": Infinity}',
        )
    )


# ------------------------------------------------------------------ export


@case("export")
def export_onto_a_file():
    target = W.scratch("onto_file") / "model.bin"
    target.write_bytes(b"precious")
    verdict = cli(["export", str(W.classifier), "--format", "hf", "-o", str(target)])
    return verdict if same_bytes({target: b"precious"}) else "data_loss"


@case("export")
def export_through_a_link():
    folder = W.scratch("link")
    (folder / "real").mkdir()
    (folder / "real" / "keep.txt").write_text("mine")
    (folder / "link").symlink_to(folder / "real")
    verdict = cli(["export", str(W.classifier), "--format", "hf", "-o", str(folder / "link")])
    return verdict if same_bytes({folder / "real" / "keep.txt": b"mine"}) else "data_loss"


@case("export")
def export_into_another_tools_folder():
    folder = W.scratch("other_tool")
    (folder / "export.json").write_text(json.dumps({"files": ["report.pdf"]}))
    (folder / "report.pdf").write_bytes(b"%PDF")
    verdict = cli(["export", str(W.classifier), "--format", "onnx", "-o", str(folder)])
    return verdict if same_bytes({folder / "report.pdf": b"%PDF"}) else "data_loss"


@case("export")
def export_marker_naming_files_outside():
    folder = W.scratch("escape")
    outside = folder.parent / "outside.txt"
    outside.write_text("outside")
    (folder / "export.json").write_text(
        json.dumps({"written_by": "tunesmith", "run_id": "x", "files": ["../outside.txt"]})
    )
    cli(["export", str(W.classifier), "--format", "hf", "-o", str(folder)])
    return "well" if same_bytes({outside: b"outside"}) else "data_loss"


@case("export")
def export_marker_is_a_folder():
    folder = W.scratch("marker_dir")
    (folder / "export.json").mkdir()
    return cli(["export", str(W.classifier), "--format", "hf", "-o", str(folder)])


@case("export")
def export_uppercase_format():
    return cli(["export", str(W.classifier), "--format", "HF", "-o", str(W.scratch("upper") / "x")], refuse=False)


@case("export")
def export_a_folder_that_is_not_a_run():
    return cli(["export", str(W.scratch("norun")), "--format", "hf"])


@case("export")
def export_an_interrupted_run():
    run = W.scratch("interrupted") / "run"
    shutil.copytree(W.classifier, run)
    (run / "run.json").write_text(json.dumps({"status": "interrupted"}))
    return cli(["export", str(run), "--format", "hf", "-o", str(W.scratch("interrupted_out") / "x")])


# ------------------------------------------------------------------ predict / eval / generate outputs


@case("outputs")
def predict_over_its_input():
    data = W.root / "x.csv"
    before = data.read_bytes()
    cli(["predict", str(W.classifier), str(data), "-o", str(data), "--overwrite"])
    return "well" if same_bytes({data: before}) else "data_loss"


@case("outputs")
def eval_over_an_existing_file():
    target = W.scratch("eval_out") / "metrics.json"
    target.write_text("keep")
    cli(["eval", str(W.classifier), "--data", str(W.root / "x.csv"), "-o", str(target)])
    return "well" if same_bytes({target: b"keep"}) else "data_loss"


@case("data")
def unquoted_comma_in_the_first_row():  # pandas took the first column as an index: every text shifted, no word said
    folder = W.scratch("comma")
    (folder / "in.csv").write_text("text\nHello, world\nGood, movie\n")
    return cli(["predict", str(W.classifier), str(folder / "in.csv"), "-o", str(folder / "p.csv")])


@case("data")
def plain_tsv_text_opening_with_a_quote():  # read as spreadsheet quoting, the quote swallowed the rows after it
    folder = W.scratch("quote_tsv")
    (folder / "in.tsv").write_text('text\n"Stop now\nGood movie\nBad one\n')
    verdict = cli(["predict", str(W.classifier), str(folder / "in.tsv"), "-o", str(folder / "p.csv")], refuse=False)
    return verdict if verdict != "well" else "well" if len(pd.read_csv(folder / "p.csv")) == 3 else "unclear"


def cli_says(args: list[str], words: list[str], absent: tuple[str, ...] = (), refuse: bool = True) -> str:
    """`cli`, and "unclear" unless the output names what went wrong (`words`) and not a misleading cause (`absent`)."""
    verdict = cli(args, refuse)
    if verdict != "well":
        return verdict
    done = runner.invoke(app, args)
    said = " ".join(done.output.split())
    return "well" if all(w in said for w in words) and not any(a in said for a in absent) else "unclear"


@case("data")
def a_data_file_where_the_recipe_goes():  # read as YAML, a CSV failed on a colon at some line
    folder = W.scratch("csv_recipe")
    sentiment_rows(20, 0).assign(text=lambda f: f["text"] + ": yes").to_csv(folder / "train.csv", index=False)
    return cli_says(["train", str(folder / "train.csv")], ["data file, not a recipe"])


@case("data")
def a_misspelt_model_name():  # was listed as a data-check problem, with advice to fix the data
    folder = W.scratch("misspelt_model")
    sentiment_rows(20, 0).to_csv(folder / "train.csv", index=False)
    (folder / "r.yaml").write_text(f"model: tiny-bertt\ndata: {{train: {folder / 'train.csv'}}}\n")
    return cli_says(["train", str(folder / "r.yaml"), "-o", str(folder / "run")], ["Unknown model"], ("Fix the data",))


@case("data")
def labels_joined_with_a_semicolon():  # every combination read as a class of its own, rare ones an error to add rows
    folder = W.scratch("joined_labels")
    sets = ["billing;refund", "billing", "refund", "login;billing", "login"] * 6
    pd.DataFrame({"text": [f"ticket {i}" for i in range(30)], "label": sets}).to_csv(folder / "t.csv", index=False)
    return cli_says(["data", "check", str(folder / "t.csv")], ["data.label_separator: ';'"], refuse=False)


@case("data")
def a_labelled_file_under_task_generation():  # read as plain text to continue; the label column ignored unsaid
    folder = W.scratch("text_label_generation")
    sentiment_rows(20, 0).to_csv(folder / "t.csv", index=False)
    args = ["data", "check", str(folder / "t.csv"), "--task", "generation"]
    return cli_says(args, ["column 'label' is not read"], refuse=False)


@case("outputs")
def predict_to_an_unknown_extension():
    return cli(["predict", str(W.classifier), str(W.root / "x.csv"), "-o", str(W.scratch("ext") / "p.docx")])


@case("outputs")
def predict_a_formula_looking_text_to_xlsx():  # written, and kept a text: a formula would run when the sheet opens
    import openpyxl

    folder = W.scratch("xlsx_out")
    pd.DataFrame({"text": ['=HYPERLINK("http://evil.example", "x")']}).to_csv(folder / "in.csv", index=False)
    verdict = cli(["predict", str(W.classifier), str(folder / "in.csv"), "-o", str(folder / "p.xlsx")], refuse=False)
    if verdict != "well":
        return verdict
    cell = openpyxl.load_workbook(folder / "p.xlsx").active["A2"]
    return "well" if cell.data_type == "s" else "unclear"


# ------------------------------------------------------------------ data for the new task kinds


def _train_on(rows: list[dict], task: str, name: str, refuse: bool = True, **data) -> str:
    folder = W.scratch(name)
    path = folder / "d.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return api(
        lambda: tunesmith.run(
            {
                "task": task,
                "model": "tiny-bert",
                "data": {"train": str(path), **data},
                "train": {"epochs": 1},
                "eval": {"baseline": "none"},
            },
            output_dir=folder / "run",
        ),
        refuse,
    )


TOKENS = [{"tokens": ["good", "movie"], "tags": ["B-X", "O"]}] * 12


@case("data")
def tokens_cell_is_a_string():
    return _train_on([{"tokens": "good movie", "tags": ["B-X", "O"]}] + TOKENS, "token_classification", "tok_str")


@case("data")
def bioes_tags():  # read as IOB2, the right answer
    rows = [{"tokens": ["a", "b", "c"], "tags": ["S-X", "B-X", "E-X"]}] * 12
    return _train_on(rows, "token_classification", "bioes", refuse=False)


@case("data")
def tag_prefix_of_no_scheme():
    return _train_on([{"tokens": ["a", "b"], "tags": ["Z-X", "O"]}] + TOKENS, "token_classification", "no_scheme")


@case("data")
def entity_label_is_a_number():
    return _train_on(
        [{"text": "good movie", "entities": [{"start": 0, "end": 4, "label": 7}]}] * 12,
        "token_classification",
        "ent_int",
    )


@case("data")
def entity_offsets_are_text():
    return _train_on(
        [{"text": "good movie", "entities": [{"start": "0", "end": "4", "label": "X"}]}] * 12,
        "token_classification",
        "ent_str",
    )


@case("data")
def entity_offsets_reversed():
    return _train_on(
        [{"text": "good movie", "entities": [{"start": 4, "end": 0, "label": "X"}]}] * 12,
        "token_classification",
        "ent_rev",
    )


@case("data")
def entities_overlap():
    return _train_on(
        [
            {
                "text": "good movie",
                "entities": [{"start": 0, "end": 10, "label": "X"}, {"start": 5, "end": 10, "label": "Y"}],
            }
        ]
        * 12,
        "token_classification",
        "ent_overlap",
    )


@case("data")
def entities_null_cell():
    return _train_on(
        [{"text": "good movie", "entities": None}]
        + [{"text": "a b", "entities": [{"start": 0, "end": 1, "label": "X"}]}] * 12,
        "token_classification",
        "ent_null",
    )


@case("data")
def multilabel_every_row_empty():
    return _train_on(
        [{"text": f"t {i}", "labels": []} for i in range(20)],
        "classification",
        "ml_empty",
        label_column="labels",
        multi_label=True,
    )


@case("data")
def multilabel_numbers_as_labels():  # trained (numbers read as label names) or refused with a message: both are clear
    verdict = _train_on(
        [{"text": f"t {i}", "labels": [i % 2, 2]} for i in range(20)],
        "classification",
        "ml_nums",
        label_column="labels",
        multi_label=True,
    )
    return "well" if verdict in ("well", "unclear") else verdict


@case("data")
def regression_nan_targets():
    return _train_on([{"text": f"t {i}", "label": None if i == 3 else i} for i in range(20)], "regression", "rg_nan")


@case("data")
def regression_huge_targets():
    return _train_on([{"text": f"t {i}", "label": i * 1e300} for i in range(20)], "regression", "rg_huge")


@case("data")
def regression_text_targets():
    return _train_on([{"text": f"t {i}", "label": "high"} for i in range(20)], "regression", "rg_text")


@case("data")
def tokens_and_tags_differ_in_length():
    return _train_on([{"tokens": ["a", "b", "c"], "tags": ["B-X", "O"]}] + TOKENS, "token_classification", "tok_len")


@case("data")
def multilabel_column_missing():
    return _train_on(
        [{"text": f"t {i}", "label": "x"} for i in range(20)],
        "classification",
        "ml_missing",
        label_column="tags",
        multi_label=True,
    )


@case("data")
def csv_with_nul_bytes():
    folder = W.scratch("nul")
    (folder / "d.csv").write_bytes(b"text,label\n" + b"good\x00 movie,positive\nbad,negative\n" * 10)
    verdict = api(
        lambda: tunesmith.run(
            {
                "model": "tiny-bert",
                "data": {"train": str(folder / "d.csv")},
                "train": {"epochs": 1},
                "eval": {"baseline": "none"},
            },
            output_dir=folder / "run",
        )
    )
    return "well" if verdict in ("well", "unclear") else verdict  # trained, or refused with a message: both clear


@case("data")
def jsonl_with_a_broken_line():
    folder = W.scratch("broken_jsonl")
    (folder / "d.jsonl").write_text(
        "\n".join([json.dumps({"text": "a", "label": "x"})] * 10 + ['{"text": "b", "label"'])
    )
    return api(
        lambda: tunesmith.run(
            {"model": "tiny-bert", "data": {"train": str(folder / "d.jsonl")}}, output_dir=folder / "run"
        )
    )


@case("data")
def separator_pipe_from_the_command_line():
    recipe = tunesmith.load_recipe({"model": "tiny-bert", "data": {"train": "x.csv"}}, ["data.label_separator=|"])
    return "well" if recipe.data.label_separator == "|" else "unclear"


DEEP = "[" * 100_000 + "]" * 100_000  # past Python's stack: json and PyYAML raise RecursionError, not their errors


@case("data")
def jsonl_nested_past_the_stack():
    folder = W.scratch("deep_jsonl")
    (folder / "d.jsonl").write_text('{"text": ' + DEEP + ', "label": "a"}\n')
    return cli(["data", "check", str(folder / "d.jsonl")])


@case("data")
def recipe_nested_past_the_stack():
    folder = W.scratch("deep_yaml")
    (folder / "r.yaml").write_text(f"model: tiny-bert\ndata: {DEEP}\n")
    return cli(["recipe", "validate", str(folder / "r.yaml")])


@case("data")
def xlsx_that_unpacks_a_thousandfold():
    import zipfile

    from tunesmith.data.readers import read_table

    folder = W.scratch("xlsx_bomb")
    with zipfile.ZipFile(folder / "d.xlsx", "w", compression=zipfile.ZIP_DEFLATED) as packed:
        packed.writestr("xl/worksheets/sheet1.xml", b"\0" * 50_000_000)
    return api(lambda: read_table(folder / "d.xlsx"))


# ------------------------------------------------------------------ feedback: corrections for a served tagger

TAGGED = "the movie is good"


def corrected(spans) -> str:
    """Ask the collecting server about TAGGED, then send `spans` as the correction of its answer."""
    _, answer = W.post("/v1/classify", {"input": [TAGGED]}, url=W.collecting_url)
    ident = answer["data"][0]["id"]
    return http(*W.post("/v1/feedback", {"id": ident, "entities": spans}, url=W.collecting_url), want=400)


@case("feedback")
def feedback_span_past_the_text():  # an update would stop on it
    return corrected([{"start": 4, "end": 90, "label": "ITEM"}])


@case("feedback")
def feedback_overlapping_spans():  # a word holds one entity
    return corrected([{"start": 4, "end": 9, "label": "ITEM"}, {"start": 5, "end": 7, "label": "ITEM"}])


@case("feedback")
def feedback_unknown_entity_type():
    return corrected([{"start": 4, "end": 9, "label": "WEAPON"}])


@case("feedback")
def update_from_a_store_holding_a_span_past_its_text():  # stored by an older server: the rest still trains
    from tunesmith.runs.collect import Store

    folder = W.scratch("old-store")
    store = Store(folder / "store")
    ids = store.record("tagger", 1, "classify", [(TAGGED, {"entities": []}, None)] * 4)
    good = [{"start": 4, "end": 9, "label": "ITEM"}]
    for ident, spans in zip(ids, [good, good, good, [{"start": 4, "end": 90, "label": "ITEM"}]]):
        store.add_feedback(ident, "tagger", "entities", spans)
    store.close()
    run = folder / "tagger"
    shutil.copytree(W.tagger, run)
    return cli(["update", str(run), "--from-feedback", str(folder / "store"), "--min-examples", "2"], refuse=False)


# ------------------------------------------------------------------ runs: staged, continual, resume


@case("runs")
def resume_with_another_recipe():
    folder = W.scratch("resume_other")
    run = folder / "run"
    shutil.copytree(W.classifier, run)
    (run / "run.json").write_text(json.dumps({"status": "interrupted"}))
    (run / "checkpoint.pt").write_bytes(b"")
    return api(
        lambda: tunesmith.run(
            {"model": "tiny-bert", "data": {"train": str(W.root / "x.csv")}}, output_dir=run, resume=True
        )
    )


@case("runs")
def rollback_to_a_missing_version():
    return cli(["runs", "rollback", str(W.continual), "9"])


@case("runs")
def versions_of_a_plain_run():
    return cli(["runs", "versions", str(W.classifier)])


@case("runs")
def update_a_plain_run():
    return cli(["update", str(W.classifier), "--data", str(W.root / "x.csv")])


@case("runs")
def update_with_a_missing_file():
    return cli(["update", str(W.continual), "--data", str(W.root / "missing.csv")])


@case("runs")
def update_with_a_file_train_refuses():
    path = W.scratch("one_class") / "d.csv"
    path.write_text("text,label\n" + "".join(f"movie {i} good,positive\n" for i in range(30)))
    run = W.scratch("upd") / "run"
    shutil.copytree(W.continual, run)
    return cli(["update", str(run), "--data", str(path)])


@case("runs")
def base_head_of_another_model():  # a head of the wrong width: refused naming the file, not a numpy error per request
    run = W.scratch("foreign_head") / "run"
    shutil.copytree(W.classifier, run)
    head = {"labels": ["negative", "positive"], "coef": [[0.1] * 7], "intercept": [0.0], "normalized": False}
    (run / "base_head.json").write_text(json.dumps(head))
    return cli(["predict", str(run), str(W.root / "x.csv"), "-o", str(W.scratch("foreign_out") / "p.csv"), "--base"])


@case("runs")
def damaged_continual_state():
    run = W.scratch("damaged_state") / "run"
    shutil.copytree(W.continual, run)
    (run / "continual.json").write_text("{not json")
    return cli(["runs", "versions", str(run)])


@case("runs")
def staged_multilabel_to_regression():
    from tests import test_regression

    folder = W.scratch("stage_kinds")
    (folder / "ml").mkdir()
    (folder / "rg").mkdir()
    ml = {**test_multilabel.write_sets(folder / "ml"), "label_column": "labels", "label_separator": "|"}
    recipe = {
        "model": "tiny-bert",
        "train": {"epochs": 1},
        "eval": {"baseline": "none"},
        "stages": [
            {"name": "a", "data": ml},
            {"name": "b", "task": "regression", "data": test_regression.write_sets(folder / "rg")},
        ],
    }
    return api(lambda: tunesmith.run(recipe, output_dir=folder / "run"), refuse=False)


# ------------------------------------------------------------------ Python API


@case("api")
def load_a_missing_run():
    return api(lambda: tunesmith.Predictor.load(W.root / "nope"))


@case("api")
def load_a_file():
    return api(lambda: tunesmith.Predictor.load(W.root / "x.csv"))


@case("api")
def predict_none():
    return api(lambda: tunesmith.Predictor.load(W.classifier).predict(None))


@case("api")
def predict_numbers():
    return api(lambda: tunesmith.Predictor.load(W.classifier).predict([1, 2]))


@case("api")
def predict_one_string():
    clf = tunesmith.Predictor.load(W.classifier)
    try:
        answer = clf.predict("good movie")
    except tunesmith.TunesmithError:
        return "well"
    except Exception:  # noqa: BLE001
        return "traceback"
    return "well" if answer in clf.classes_ else "unclear"  # ten answers, one per character, is not what was asked


@case("api")
def generate_negative_tokens():
    return api(lambda: tunesmith.Predictor.load(W.chat).generate(["hi"], max_new_tokens=-3))


@case("api")
def generate_a_dict_prompt():
    return api(lambda: tunesmith.Predictor.load(W.chat).generate([{"role": "bot", "content": "x"}]))


@case("api")
def run_a_none_recipe():
    return api(lambda: tunesmith.run(None))


@case("api")
def override_an_unknown_key():
    return api(
        lambda: tunesmith.load_recipe({"model": "tiny-bert", "data": {"train": "x.csv"}}, ["train.learning_rate=1"])
    )


@case("api")
def pairs_of_another_length():
    return api(lambda: tunesmith.Predictor.load(W.classifier).predict(["a", "b"], ["c"]))


@case("api")
def predict_a_pandas_series():
    return api(lambda: tunesmith.Predictor.load(W.classifier).predict(pd.Series(["good", "bad"])), refuse=False)


@case("api")
def predict_a_numpy_array_of_strings():
    import numpy as np

    return api(lambda: tunesmith.Predictor.load(W.classifier).predict(np.array(["good", "bad"])), refuse=False)


@case("runs")
def resume_a_finished_run():
    return cli(["train", "--resume", str(W.classifier)])


def main() -> None:
    global W
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cache = None if "TUNESMITH_CACHE" in os.environ else tempfile.mkdtemp(prefix="tunesmith-cache-")
    os.environ.setdefault("TUNESMITH_CACHE", cache or "")
    W = World(Path(tempfile.mkdtemp(prefix="tunesmith-probe-")))
    try:
        results = _judge_all()
    finally:  # the probe's own folders: nothing of it stays in the temp folder
        for folder in (W.root, cache):
            if folder:
                shutil.rmtree(folder, ignore_errors=True)
    counts = Counter(r["verdict"] for r in results)
    summary = {"cases": len(results), **{k: counts.get(k, 0) for k in ("well", "unclear", "traceback", "data_loss")}}
    print(json.dumps(summary))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "results": results}, indent=1))


def _judge_all() -> list[dict]:
    results = []
    for surface, name, fn in CASES:
        try:
            verdict = fn()
        except Exception as err:  # noqa: BLE001  (the probe itself must not stop on one case)
            verdict = "traceback"
            name += f" ({type(err).__name__})"
        results.append({"surface": surface, "case": name, "verdict": verdict})
        print(f"{verdict:10} {surface:8} {name}", flush=True)
    return results


if __name__ == "__main__":
    main()
