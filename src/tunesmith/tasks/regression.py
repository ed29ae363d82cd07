"""What regression methods share: metrics (MSE, MAE, Pearson, Spearman), the ridge base line on frozen
embeddings, the report, and the predictor a finished run hands out (numbers, in the labels' own units)."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from ..data.classification import read_split
from ..data.inputs import one_or_many
from ..data.regression import numeric
from ..engine.batching import tokenize
from ..engine.hardware import resolve_precision
from ..engine.metrics import REGRESSION_KEYS as KEYS
from ..engine.metrics import forward_batches, mean_pooled, probe_sample
from ..models.loading import load_encoder, output_layers

log = logging.getLogger(__name__)


def regression_metrics(y_true, y_pred) -> dict:
    from scipy.stats import pearsonr, spearmanr

    y_true, y_pred = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    err = y_pred - y_true
    constant = np.ptp(y_pred) == 0  # correlation is undefined for constant predictions: report 0, not NaN
    return {
        "mse": float((err**2).mean()),
        "mae": float(np.abs(err).mean()),
        "pearson": 0.0 if constant else float(pearsonr(y_true, y_pred)[0]),
        "spearman": 0.0 if constant else float(spearmanr(y_true, y_pred)[0]),
        "size": int(len(y_true)),
    }


def predict_scores(model, rows, batch_size: int, pad_id: int, precision: str) -> np.ndarray:
    """The model's one output per row (the head is folded to the labels' units when the run is saved)."""
    with fp32_head(output_layers(model, 1)):
        return forward_batches(
            model, rows, batch_size, pad_id, precision, lambda out, b: out.logits.float()[:, 0].cpu().numpy()
        )


@contextmanager
def fp32_head(layers):
    """The head's last layer in fp32 even under bf16 autocast. Its output is the score itself, in the labels'
    units once the head is folded: bf16 keeps 8 bits of mantissa, so a score near 16 would come out in steps
    of 0.125 (ties and shifted ranks; the saved model disagreed with the run's own Spearman on an AMX CPU)."""

    def full(layer, args, _out):
        with torch.autocast(args[0].device.type, enabled=False):
            return torch.nn.functional.linear(
                args[0].float(), layer.weight.float(), None if layer.bias is None else layer.bias.float()
            )

    handles = [layer.register_forward_hook(full) for layer in layers]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def ridge_baseline(
    recipe, weights: str, train_rows, y_train, eval_rows, y_eval, pad_id: int, precision: str
) -> tuple[dict, dict | None]:
    """The base model as the honest baseline: ridge regression on its frozen mean-pooled embeddings.
    Returns the metrics and the ridge as numbers (saved as base_head.json, so the base model can answer again)."""
    if recipe.eval.baseline == "none":
        return {}, None
    from sklearn.linear_model import RidgeCV

    encoder, bs = load_encoder(weights), recipe.eval.batch_size
    train_rows, y_train = probe_sample(train_rows, list(y_train), recipe.train.seed)
    x_train = forward_batches(encoder, train_rows, bs, pad_id, precision, mean_pooled)
    x_eval = forward_batches(encoder, eval_rows, bs, pad_id, precision, mean_pooled)
    ridge = RidgeCV(alphas=(0.1, 1.0, 10.0, 100.0)).fit(x_train, y_train)
    base = regression_metrics(y_eval, ridge.predict(x_eval))
    log.info(f"base: Spearman {base['spearman']:.4f}, Pearson {base['pearson']:.4f}, MSE {base['mse']:.4f}")
    head = {"coef": [ridge.coef_.tolist()], "intercept": [float(ridge.intercept_)], "normalized": False}
    return {"kind": "ridge regression on the frozen base model's mean-pooled embeddings", **base}, head


def load_base_predictor(run_dir: Path, columns: dict | None = None, max_length: int = 256):
    """The base model with the ridge regression the run scored it by: the pre-trained body and base_head.json.
    None for a run that kept none (eval.baseline: none)."""
    from .classification import base_parts

    parts = base_parts(run_dir, "value")
    if parts is None:
        return None
    encoder, tokenizer, head = parts
    return RegressorPredictor(encoder, tokenizer, max_length=max_length, columns=columns, head=head)


def write_report(run_dir: Path, metrics: dict, truth, predicted) -> None:
    from ..runs.report import loss_plot, plt, read_log, save_figure, warnings_section

    plots = run_dir / "plots"
    plots.mkdir(exist_ok=True)
    loss_plot(read_log(run_dir), plots / "loss.png", metric="spearman")
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(truth, predicted, s=6, alpha=0.5)
    low, high = min(min(truth), min(predicted)), max(max(truth), max(predicted))
    ax.plot([low, high], [low, high], color="grey", linestyle=":")
    ax.set_xlabel("true score")
    ax.set_ylabel("predicted score")
    save_figure(fig, plots / "predicted_vs_true.png")
    base, tuned, t = metrics["base"], metrics["tuned"], metrics["train"]
    rows = "\n".join(
        f"| {k} | {base[k]:.4f} | {tuned[k]:.4f} | {tuned[k] - base[k]:+.4f} |"
        if k in base
        else f"| {k} | n/a | {tuned[k]:.4f} | n/a |"
        for k in KEYS
    )
    (run_dir / "report.md").write_text(
        f"""# tunesmith run report

Model `{metrics["model"]}`, task regression; evaluated on the {metrics["eval_set"]} set ({metrics["eval_size"]}
examples).
Base = {base.get("kind", "none")}.
{warnings_section(metrics)}
## Base vs tuned

| metric | base | tuned | change |
|---|---|---|---|
{rows}

![predicted vs true](plots/predicted_vs_true.png)

## Training

{t["epochs"]} epoch(s), best epoch {t["best_epoch"]}, {t["runtime_s"]:.1f} s, {t["samples_per_s"]:.1f}
samples/s, precision {t["precision"]}, lr {t["lr"]};
targets {"as given" if t.get("target_mean") is None else "standardised for training"}.

![loss](plots/loss.png)
""",
        encoding="utf-8",
    )


class RegressorPredictor:
    """A finished regression run: `predict(texts[, pairs])` -> numbers in the labels' units; `evaluate(file)`.

    `head`: the base line's ridge regression on the body's mean-pooled embeddings, as numbers (the base model)."""

    def __init__(
        self,
        model,
        tokenizer,
        max_length: int = 256,
        batch_size: int = 64,
        precision: str = "auto",
        columns: dict | None = None,
        head: dict | None = None,
    ):
        self.model, self.tokenizer, self.head = model.eval(), tokenizer, head
        self.max_length, self.batch_size, self.precision = max_length, batch_size, resolve_precision(precision)
        self.columns = columns or {"text": "text", "label": "label", "pair": None}

    @one_or_many
    def predict(self, texts: list[str], pairs: list[str] | None = None) -> np.ndarray:
        if not texts:
            return np.zeros(0)
        rows, _ = tokenize(self.tokenizer, list(texts), pairs, self.max_length)
        pad = self.tokenizer.pad_token_id
        if self.head:
            x = forward_batches(self.model, rows, self.batch_size, pad, self.precision, mean_pooled)
            return x @ np.asarray(self.head["coef"])[0] + np.asarray(self.head["intercept"])[0]
        return predict_scores(self.model, rows, self.batch_size, pad, self.precision)

    def annotate(self, texts: list[str], pairs: list[str] | None = None) -> dict[str, list]:
        """The columns `tunesmith predict` adds to a file."""
        return {"predicted_score": np.round(self.predict(texts, pairs).astype(np.float64), 6).tolist()}

    def evaluate(self, path: str | Path, text_column: str | None = None, label_column: str | None = None) -> dict:
        split = numeric(
            read_split(
                str(path),
                text_column or self.columns["text"],
                label_column or self.columns["label"],
                self.columns["pair"],
                "--data",
                options={"text_column": "--text-column", "label_column": "--label-column"},
            ),
            label_column or self.columns["label"],
        )
        return regression_metrics(split.labels, self.predict(split.texts, split.pairs))
