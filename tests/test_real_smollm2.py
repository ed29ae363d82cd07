"""The packaged SmolLM2-135M-Instruct, for real: a few LoRA steps lower validation loss; the run reloads and
generates."""

import pytest

import tunesmith
from tests.conftest import SHARED_DATA
from tunesmith.models.loading import is_installed

pytestmark = [
    pytest.mark.real,
    pytest.mark.skipif(
        not is_installed("smollm2-135m-instruct"), reason="needs `tunesmith models pull smollm2-135m-instruct`"
    ),
    pytest.mark.skipif(not (SHARED_DATA / "bitext_customer_support_sft").is_dir(), reason="needs ../shared/data"),
]


def test_lora_steps_lower_validation_loss_and_the_run_generates(tmp_path):
    data = SHARED_DATA / "bitext_customer_support_sft"
    recipe = {
        "task": "generation",
        "model": {"name": "smollm2-135m-instruct"},
        "data": {
            "train": str(data / "train.jsonl"),
            "validation": str(data / "validation.jsonl"),
            "max_train_samples": 32,
            "max_eval_samples": 8,
        },
        "train": {"epochs": 1, "batch_size": 8, "lr": 1e-3, "max_length": 256},
        "eval": {"max_samples": 1, "max_new_tokens": 24},
    }
    result = tunesmith.run(recipe, output_dir=tmp_path / "run")
    m = result.metrics
    assert m["tuning"] == "lora" and m["data"]["format"] == "prompt_response"
    assert m["tuned"]["loss"] < m["base"]["loss"]
    assert (result.run_dir / "adapter" / "adapter_model.safetensors").is_file()
    answer = tunesmith.Predictor.load(result.run_dir).generate("I can't find my invoice", max_new_tokens=24)
    assert isinstance(answer, str) and answer.strip()
