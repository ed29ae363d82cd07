import logging
import os
import random
from pathlib import Path

import pandas as pd
import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def pytest_configure(config):
    """Under `-n N` (pytest-xdist) each worker gets its share of the cores: N processes each using every core
    would only fight over them."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers > 1:
        import torch

        threads = max(1, (os.cpu_count() or 1) // workers)
        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)  # a run a test starts in a subprocess sums in the same order


# The bf16 lane: `make test` runs these modules a second time with TUNESMITH_ASSUME_CPU_FLAGS=amx_bf16, so that
# precision `auto` takes the bf16 path (as on AMX CPUs) on every machine. They train end to end and compare numbers.
BF16_LANE = {
    "test_train",
    "test_generation_run",
    "test_resume",
    "test_regression",
    "test_multilabel",
    "test_token_classification",
    "test_stages",
    "test_continual",
    "test_few_shot",
    "test_domain_adaptation",
    "test_head_init",
    "test_export",
    "test_cli",
}
# over 10 s each: real models, process groups; longest first (the order they are handed to the workers)
SLOW = (
    "test_real_smollm2",
    "test_real_minilm",
    "test_distributed",
    "test_ui_browser",
    "test_tracking",
    "test_feedback_loop",
)


def pytest_collection_modifyitems(config, items):
    # the slow modules first: under -n 2 they start at once on both workers, and the short tests fill in around
    # them instead of one worker waiting at the end for a 2-minute test that started last
    rank = {name: i for i, name in enumerate(SLOW)}
    items.sort(key=lambda item: rank.get(item.module.__name__.rsplit(".", 1)[-1], len(SLOW)))
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1]
        if module in BF16_LANE:
            item.add_marker(pytest.mark.bf16_lane)
        if module in SLOW:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Tiny models are built into a per-session cache, never the user's."""
    mp = pytest.MonkeyPatch()
    mp.setenv("TUNESMITH_CACHE", str(tmp_path_factory.mktemp("cache")))
    mp.setenv("HF_HUB_OFFLINE", "1")
    yield
    mp.undo()


@pytest.fixture
def logged(caplog):
    """What the library logged during the test, as one line (it logs through `logging`; it never prints)."""
    logger = logging.getLogger("tunesmith")
    level = logger.level
    logger.addHandler(caplog.handler)
    logger.setLevel(logging.INFO)
    yield lambda: " ".join(caplog.text.split())
    logger.removeHandler(caplog.handler)
    logger.setLevel(level)


def sentiment_rows(n: int, seed: int) -> pd.DataFrame:
    """A learnable toy task: the label is carried by one of a few words, amid random filler."""
    rng = random.Random(seed)
    words = {"positive": ["good", "great"], "negative": ["bad", "terrible"]}
    rows = []
    for i in range(n):
        label = "positive" if i % 2 == 0 else "negative"
        filler = ["the", "movie", "product", "a", "is", "it"]
        tokens = rng.sample(filler, 3) + [rng.choice(words[label])] + rng.sample(filler, 2)
        rows.append({"text": " ".join(tokens) + f" {i}", "label": label})
    return pd.DataFrame(rows)


def free_port() -> int:
    """A port nothing listens on now, for a test server on 127.0.0.1."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def two_toy_runs(d) -> tuple:
    """Two finished tiny-bert runs of the toy task under d/runs, 'first' (lr 3e-3) and 'second' (lr 1e-3);
    returns (the runs folder, the first run's recipe)."""
    from tunesmith.pipeline import run

    for name, n, seed in (("train", 160, 0), ("test", 40, 2)):
        sentiment_rows(n, seed).to_csv(d / f"{name}.csv", index=False)
    recipe = {
        "model": {"name": "tiny-bert"},
        "data": {"train": str(d / "train.csv"), "test": str(d / "test.csv")},
        "method": {"name": "supervised", "freeze_embeddings": False},
        "train": {"epochs": 2, "lr": 3e-3, "batch_size": 16, "warmup_ratio": 0.0},
    }
    run(recipe, output_dir=d / "runs" / "first")
    run({**recipe, "train": {**recipe["train"], "lr": 1e-3}}, output_dir=d / "runs" / "second")
    return d / "runs", recipe


@pytest.fixture
def toy_data(tmp_path) -> dict:
    """train/validation/test CSVs of the toy task, and a recipe dict that trains tiny-bert on them."""
    paths = {}
    for name, n, seed in (("train", 160, 0), ("validation", 40, 1), ("test", 40, 2)):
        paths[name] = tmp_path / f"{name}.csv"
        sentiment_rows(n, seed).to_csv(paths[name], index=False)
    recipe = {
        "model": {"name": "tiny-bert"},
        "data": {k: str(v) for k, v in paths.items()},
        # The tiny model's embeddings are random: they must train for the toy task to be learnable.
        "method": {"name": "supervised", "freeze_embeddings": False},
        "train": {"epochs": 5, "lr": 3e-3, "batch_size": 16, "warmup_ratio": 0.0},
    }
    return {"paths": paths, "recipe": recipe, "dir": tmp_path}


@pytest.fixture
def finished(tmp_path, tmp_path_factory):
    """A real finished tiny-bert run in tmp_path/run (trained once per session), and tmp_path/x.csv, a labeled file."""
    from tests.hostile import finished_run

    return finished_run(tmp_path, tmp_path_factory.getbasetemp() / "finished-cache")
