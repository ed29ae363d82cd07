"""`--format onnx`: an encoder classifier as one ONNX graph that returns what `Predictor` returns.

The graph ends in the run's own output step (softmax, sigmoid, the few-shot logistic head, the regression
score already in the labels' units, per-token softmax), so an onnxruntime user needs only the tokenizer
and export.json's labels. Written by torch.onnx (the torch.export-based exporter) and checked against
PyTorch on sample texts before the export is called done."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from ..errors import TunesmithError

OPSET = 18
SAMPLE_TEXTS = [
    "The service was quick and the staff were friendly.",
    "Terrible.",
    "Patients with type 2 diabetes were randomised to metformin or placebo for 12 weeks.",
    "The agreement may be terminated by either party with thirty days' written notice.",
    "Revenue rose 12% to $4.1 billion in the third quarter, beating estimates.",
    "I want to change the delivery address on my order",
    "ok",
    "Why was my card declined twice today?",
]


class Graph(torch.nn.Module):
    """The predictor's model plus its output step, as one module torch.onnx can trace."""

    def __init__(self, model, output: str, head: dict | None = None):
        super().__init__()
        self.model, self.output = model, output
        if head is not None:
            self.register_buffer("coef", torch.tensor(np.asarray(head["coef"]), dtype=torch.float32))
            self.register_buffer("intercept", torch.tensor(np.asarray(head["intercept"]), dtype=torch.float32))
            self.multi_label = bool(head.get("multi_label"))

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        kw = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kw["token_type_ids"] = token_type_ids
        out = self.model(**kw)
        if self.output == "head":
            return self._head(out.last_hidden_state, attention_mask)
        logits = out.logits.float()
        if self.output == "sigmoid":
            return logits.sigmoid()
        if self.output == "score":
            return logits[:, 0]
        return logits.softmax(-1)  # one class per text, or per token

    def _head(self, hidden, attention_mask):  # mean pooling, L2 norm, logistic regression: as head_proba
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        x = (hidden * mask).sum(1) / mask.sum(1)
        x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
        scores = x @ self.coef.T + self.intercept
        if self.multi_label:
            return scores.sigmoid()
        if self.coef.shape[0] == 1:
            p = scores[:, 0].sigmoid()
            return torch.stack([1 - p, p], dim=1)
        return scores.softmax(-1)


def output_of(predictor) -> tuple[str, str, dict]:
    """(graph output step, output name, what export.json says about reading it) for a loaded predictor."""
    name = type(predictor).__name__
    if name == "MultiLabelPredictor":
        return (
            "head" if predictor.head else "sigmoid",
            "probabilities",
            {
                "labels": predictor.classes_,
                "thresholds": predictor.thresholds.get("per_label"),
                "reading": "one probability per label; a label applies at or above its threshold",
            },
        )
    if name == "RegressorPredictor":
        return "score", "scores", {"reading": "one number per text, in the training labels' units"}
    if name == "TokenPredictor":
        return (
            "softmax",
            "probabilities",
            {
                "labels": predictor.labels,
                "reading": "per token, a probability per IOB2 tag; read each word at its first token",
            },
        )
    if getattr(predictor, "head", None):
        return (
            "head",
            "probabilities",
            {"labels": predictor.classes_, "reading": "one probability per label (few-shot head included)"},
        )
    return "softmax", "probabilities", {"labels": predictor.classes_, "reading": "one probability per label"}


def write(predictor, source: Path, target: Path, texts: list[str] | None = None, **_) -> dict:
    step, output, about = output_of(predictor)
    graph = Graph(predictor.model.float().eval(), step, getattr(predictor, "head", None)).eval()
    inputs = [
        k for k in ("input_ids", "attention_mask", "token_type_ids") if k in predictor.tokenizer.model_input_names
    ]
    sample = _encode(predictor, (texts or SAMPLE_TEXTS)[:2])
    dims = {
        k: {0: torch.export.Dim("batch"), 1: torch.export.Dim("sequence", max=predictor.max_length)} for k in inputs
    }
    path = target / "model.onnx"
    try:  # the exporter narrates each pass on stdout and warns about torch internals: not the user's business
        with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(
                logging.ERROR
            )  # "torchvision is not installed"
            torch.onnx.export(
                graph,
                tuple(torch.tensor(sample[k]) for k in inputs),
                str(path),
                input_names=inputs,
                output_names=[output],
                dynamic_shapes=tuple(dims[k] for k in inputs),
                opset_version=OPSET,
                dynamo=True,
                verbose=False,
                external_data=_params_bytes(graph) > 1_500_000_000,
            )
    except ImportError as err:
        raise TunesmithError(
            f"ONNX export needs the onnx and onnxscript packages ({err.name} is missing): "
            "pip install 'tunesmith[export]'"
        ) from None
    predictor.tokenizer.save_pretrained(target)
    parity = check_parity(graph, path, predictor, inputs, texts or SAMPLE_TEXTS)
    return {
        "loads_with": f"onnxruntime.InferenceSession('{path}') with AutoTokenizer.from_pretrained('{target}')",
        "inputs": inputs,
        "output": output,
        "max_length": predictor.max_length,
        **about,
        "parity": parity,
    }


def _params_bytes(graph) -> int:
    """ONNX files are protobufs capped at 2 GB: past that the weights go to a .data file beside model.onnx."""
    return sum(p.numel() * p.element_size() for p in graph.parameters())


def _encode(predictor, texts: list[str]) -> dict:
    return predictor.tokenizer(
        list(texts), padding=True, truncation=True, max_length=predictor.max_length, return_tensors="np"
    )


def check_parity(graph, path: Path, predictor, inputs: list[str], texts: list[str]) -> dict:
    """onnxruntime vs the PyTorch graph on the same padded batches: the largest difference in any output."""
    session = ort_session(path)
    worst = 0.0
    for start in range(0, len(texts), 8):
        enc = _encode(predictor, texts[start : start + 8])
        feed = {k: enc[k].astype(np.int64) for k in inputs}
        got = session.run(None, feed)[0]
        with torch.no_grad():
            want = graph(**{k: torch.tensor(v) for k, v in feed.items()}).numpy()
        keep = feed["attention_mask"].astype(bool) if got.ndim == 3 else slice(None)  # padding positions mean nothing
        worst = max(worst, float(np.abs(got[keep] - want[keep]).max()))
    return {"texts": len(texts), "max_abs_difference": worst, "against": "PyTorch fp32 on the same inputs"}


def ort_session(path: Path):
    try:
        import onnxruntime as ort
    except ImportError:
        raise TunesmithError("checking the ONNX file needs onnxruntime: pip install 'tunesmith[export]'") from None
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
