"""A/B: eager vs torch.compile(dynamic=True) for MiniLM training steps on sst2 batches.

python benchmarks/compile_ab.py eager 1500 && python benchmarks/compile_ab.py compile 1500
"""

import sys
import time

import pandas as pd
import torch

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1] / "src"))
from tunesmith.engine.batching import iterate, length_grouped_batches, tokenize
from tunesmith.engine.loop import optimizer_for
from tunesmith.models.loading import freeze_bottom, load_classifier, load_tokenizer, resolve_weights

path = resolve_weights("minilm-l6")
tok = load_tokenizer(path)
rows = pd.read_csv(
    str(__import__("pathlib").Path(__file__).resolve().parents[2] / "shared/data/sst2/train.csv")
).sample(n=int(sys.argv[2]), random_state=0)
enc, _ = tokenize(tok, rows.text.tolist(), None, 256)
labels = [int(l == "positive") for l in rows.label]


def one(mode):
    torch.manual_seed(0)
    model = load_classifier(path, ["negative", "positive"])
    freeze_bottom(model, True, 2)
    opt = optimizer_for(model, 2e-4, 0.01)
    m = torch.compile(model, dynamic=True) if mode == "compile" else model
    m.train()
    n = 0
    batches = length_grouped_batches([len(r["input_ids"]) for r in enc], 32, 0)
    t0 = time.perf_counter()
    warm = None
    for i, b in enumerate(iterate(enc, batches, tok.pad_token_id, labels)):
        loss = m(**b).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i == 9:
            warm = time.perf_counter()
            n = 0
        n += len(b["input_ids"])
    print(
        mode,
        "first 10 steps",
        round(warm - t0, 1),
        "s; after:",
        round(n / (time.perf_counter() - warm), 1),
        "samples/s",
        flush=True,
    )


one(sys.argv[1])
