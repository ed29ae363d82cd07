"""`tunesmith serve --quantize int8`: classifier weights in int8 for CPU serving (opt-in; answers move slightly).

A CPU spends a classification request on matrix products; int8 weights with activations quantized on the fly
(PyTorch's dynamic quantization: FBGEMM / oneDNN int8 kernels, no calibration data needed) ran MiniLM ~2.5x faster
than fp32 on one core of an AMD EPYC. The answers are not bit-identical to the run's own: benchmarks/serve.py prints the
share of texts that keep their label and the largest probability change, so the trade is measured, not assumed.
torchao (PyTorch's newer quantization library) was slower than fp32 on a CPU without torch.compile, so this uses
torch.ao.quantization.quantize_dynamic, which PyTorch marks for eventual removal; it is present in the pinned torch.
"""

from __future__ import annotations

import warnings

from ..errors import TunesmithError

MODES = ("int8",)


def check_mode(mode: str) -> None:
    if mode not in MODES:
        raise TunesmithError(f"--quantize {mode}: choose one of {', '.join(MODES)}.")


def quantize_predictor(predictor, mode: str) -> None:
    """Swap the predictor's model for its int8 version, in place; fp32 activations around the int8 products."""
    import torch

    check_mode(mode)
    if next(predictor.model.parameters()).device.type != "cpu":
        raise TunesmithError(
            "--quantize int8 is for serving on a CPU; on a GPU serve the model as trained (bf16 is fast there)."
        )
    dynamic = getattr(getattr(torch, "ao", None), "quantization", None)
    if dynamic is None or not hasattr(dynamic, "quantize_dynamic"):
        raise TunesmithError(
            f"--quantize int8 needs torch.ao.quantization.quantize_dynamic, which torch {torch.__version__} "
            "no longer has; serve without --quantize."
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the deprecation notice on quantized tensors, once per layer
        # one scale per output channel: fewer labels change than with one scale per tensor, at the same speed
        # (docs/why-defaults.md)
        spec = {torch.nn.Linear: dynamic.per_channel_dynamic_qconfig}
        predictor.model = dynamic.quantize_dynamic(predictor.model, spec, dtype=torch.qint8)
    predictor.precision = "fp32"  # int8 kernels take fp32 activations; bf16 autocast would hand them bf16
