"""Dropout whose mask is cheap on a CPU.

PyTorch's CPU dropout draws one random number per element from its Mersenne Twister, and on a CPU that costs
about what a matmul over the same activations does: profiled on a 2-core AMD EPYC (`benchmarks/profile_step.py`),
`bernoulli_` was 23% of a MiniLM classification step and 26% of a SmolLM2 LoRA step (the LoRA path's dropout).
Here every 64-bit draw gives three 16-bit numbers (the draw's top bit is always 0, so its top 16 bits are not
used), so a mask takes a third of the draws, and the rate is kept to 1/65,536. Same semantics as nn.Dropout:
inverted scaling while training, identity in eval mode, the global generator (so seeds reproduce a run).
"""

from __future__ import annotations

import torch

LEVELS = 1 << 16


def keep_mask(shape: torch.Size, p: float) -> tuple[torch.Tensor, float]:
    """(bool mask of the elements kept, the scale 1 / share kept) for dropout rate `p`."""
    n = shape.numel()
    draws = torch.empty((n + 2) // 3, dtype=torch.int64).random_()
    words = draws.view(torch.int16).view(-1, 4)[:, :3]  # signed: uniform over [-32768, 32767]
    dropped = round(p * LEVELS)
    return (words >= dropped - LEVELS // 2).view(-1)[:n].view(shape), LEVELS / (LEVELS - dropped)


class CpuDropout(torch.nn.Dropout):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or x.device.type != "cpu" or self.inplace:
            return super().forward(x)
        mask, scale = keep_mask(x.shape, self.p)
        return x * mask * scale


def cheap_dropout(model: torch.nn.Module) -> int:
    """Turn the model's nn.Dropout layers (the LoRA path's included) into CpuDropout in place; returns how many.
    The class is swapped on the module itself: its rate and place in the model, and what saves it, do not change."""
    swapped = 0
    for module in model.modules():
        if type(module) is torch.nn.Dropout:
            module.__class__ = CpuDropout
            swapped += 1
    return swapped
