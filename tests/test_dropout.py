"""The CPU dropout: same rate, scaling, gradients and reproducibility as nn.Dropout, swapped into a model in place."""

import pytest
import torch

from tunesmith.engine.dropout import CpuDropout, cheap_dropout, keep_mask


@pytest.mark.parametrize("p", [0.05, 0.1, 0.5])
def test_the_mask_drops_at_the_rate_and_scales_to_keep_the_mean(p):
    torch.manual_seed(0)
    mask, scale = keep_mask(torch.Size([1000, 1001]), p)  # not a multiple of 3: the last draw is cut
    assert mask.shape == (1000, 1001) and mask.dtype == torch.bool
    assert mask.float().mean().item() == pytest.approx(1 - p, abs=0.002)
    assert scale == pytest.approx(1 / (1 - p), rel=1e-4)
    layer = CpuDropout(p).train()
    out = layer(torch.ones(1000, 1001))
    assert out.mean().item() == pytest.approx(1.0, abs=0.01)  # inverted dropout: expectation unchanged
    values = out.unique().tolist()
    assert len(values) == 2 and values[0] == 0.0 and values[1] == pytest.approx(scale)


def test_the_mask_has_no_pattern_across_positions():
    """Each 64-bit draw gives three 16-bit numbers: positions 0, 1, 2 of each triple drop alike."""
    torch.manual_seed(1)
    mask, _ = keep_mask(torch.Size([300_000]), 0.1)
    by_position = mask.view(-1, 3).float().mean(0)
    assert torch.allclose(by_position, torch.full((3,), 0.9), atol=0.004)


def test_gradients_flow_through_the_kept_elements_only():
    torch.manual_seed(2)
    x = torch.randn(64, 32, requires_grad=True)
    out = CpuDropout(0.3).train()(x)
    out.sum().backward()
    kept = out != 0
    assert torch.allclose(x.grad[kept], torch.full_like(x.grad[kept], 1 / 0.7), rtol=1e-3)
    assert (x.grad[~kept] == 0).all()


def test_eval_mode_and_rate_zero_pass_through_and_seeds_reproduce():
    x = torch.randn(16, 16)
    assert torch.equal(CpuDropout(0.5).eval()(x), x) and torch.equal(CpuDropout(0.0).train()(x), x)
    torch.manual_seed(3)
    a = CpuDropout(0.5).train()(x)
    torch.manual_seed(3)
    b = CpuDropout(0.5).train()(x)
    assert torch.equal(a, b) and not torch.equal(a, CpuDropout(0.5).train()(x))


def test_bf16_activations_stay_bf16():
    out = CpuDropout(0.1).train()(torch.randn(8, 8, dtype=torch.bfloat16))
    assert out.dtype == torch.bfloat16


def test_a_models_dropout_layers_are_swapped_in_place_lora_path_included():
    from tunesmith.models.loading import apply_lora, load_causal_lm, resolve_weights
    from tunesmith.recipe import LoraSection

    model = apply_lora(
        load_causal_lm(resolve_weights("tiny-llama")), LoraSection(dropout=0.1), {}, task_type="CAUSAL_LM"
    )
    keys = set(model.state_dict())
    lora_dropouts = [m for n, m in model.named_modules() if "lora_dropout" in n and isinstance(m, torch.nn.Dropout)]
    assert lora_dropouts and cheap_dropout(model) >= len(lora_dropouts)
    assert all(type(m) is CpuDropout and m.p == 0.1 for m in lora_dropouts)
    assert not any(type(m) is torch.nn.Dropout for m in model.modules())
    assert set(model.state_dict()) == keys  # what saves the model sees the same weights


def test_the_default_lora_path_has_no_dropout_to_pay_for():
    """PEFT's default, and on a CPU the mask cost about a third of a LoRA step (docs/why-defaults.md)."""
    from tunesmith.models.loading import apply_lora, load_causal_lm, resolve_weights
    from tunesmith.recipe import LoraSection

    model = apply_lora(load_causal_lm(resolve_weights("tiny-llama")), LoraSection(), {}, task_type="CAUSAL_LM")
    paths = [m for n, m in model.named_modules() if n.endswith("lora_dropout.default")]
    assert paths and all(isinstance(m, torch.nn.Identity) for m in paths)
