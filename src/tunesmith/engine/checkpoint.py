"""Resumable training state, written so that a crash mid-write never leaves a checkpoint resume trusts.

One file holds everything a resumed loop needs to take the same path as an uninterrupted one: the
trainable weights, optimizer and scheduler state, where in which epoch the loop stood, the early-
stopping state, and every RNG (Python, NumPy, torch) as it was at that step. It is written to a
temporary file in the same folder, flushed to disk, then renamed over the old one: a rename within
one filesystem is atomic, so a reader sees the old checkpoint or the new one, never half of either.
"""

from __future__ import annotations

import os
import random
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from ..errors import TunesmithError

CHECKPOINT_FILE = "checkpoint.pt"


def _numpy_array_globals() -> list:
    """What rebuilding a NumPy array from a pickle needs: data, no code (torch's documented allowlist)."""
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # NumPy 1.x
        from numpy.core.multiarray import _reconstruct
    return [_reconstruct, np.ndarray, np.dtype, type(np.dtype("uint32"))]


_NUMPY_ARRAYS = _numpy_array_globals()


def rng_state() -> dict:
    """Every RNG as tensors, lists and numbers: what `torch.load(weights_only=True)` reads back without pickle."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": [version, list(internal), gauss],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def plain(value):
    """Numbers, strings, lists, dicts and tensors only (NumPy scalars become Python numbers), so that the
    checkpoint loads with weights_only=True: a run directory from someone else must never run code."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    return value


def trainable_state(model) -> dict[str, torch.Tensor]:
    """Only what training changes: frozen weights are rebuilt from the base model on resume."""
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if k in trainable}


def save(path: Path, payload: dict) -> None:
    """Atomic write: temporary file, fsync, rename. A failure leaves the previous checkpoint as it was; a Ctrl-C
    waits for the write to end (it interrupted torch.save mid-file, which raised a RuntimeError: the run was marked
    failed instead of interrupted)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with ctrl_c_after():
            with tmp.open("wb") as handle:
                torch.save(plain(payload), handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise TunesmithError(
            f"Cannot write the checkpoint {path}: {err.strerror or err}. "
            "Free disk space or fix the folder's permissions; the previous checkpoint is intact."
        ) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def ctrl_c_after() -> Iterator[None]:
    """A SIGINT that arrives inside the block is answered when it ends, by the handler that was in place."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread can set handlers (and only it receives Python's SIGINT)
        return
    caught: list[tuple] = []
    previous = signal.signal(signal.SIGINT, lambda *received: caught.append(received))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught and callable(previous):  # Python's own handler raises KeyboardInterrupt here
            previous(*caught[0])
        elif caught and previous == signal.SIG_DFL:
            signal.raise_signal(signal.SIGINT)  # the default action, now (SIG_IGN: ignored, as it would have been)


def load(path: Path) -> dict | None:
    """The saved state, or None when there is none. A file that cannot be read is an error, not a fresh start."""
    if not path.is_file():
        return None
    return load_tensors_file(path, "Delete it to restart the run from the beginning.")


def load_tensors_file(path: Path, remedy: str):
    """A torch.save file read without running code: weights_only=True allows tensors, numbers, strings and
    containers only. A planted pickle (or a damaged file) is refused with a message, never executed."""
    import pickle

    try:
        with torch.serialization.safe_globals(_NUMPY_ARRAYS):  # checkpoints of earlier versions hold NumPy RNG arrays
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "GLOBAL" not in str(err) and "global" not in str(err):  # no Python object named: bytes that are no pickle
            raise TunesmithError(f"{path} cannot be read (not a checkpoint); it is damaged. {remedy}") from None
        raise TunesmithError(
            f"{path} holds Python objects other than tensors and numbers; tunesmith never loads those "
            f"(they can run code). It was not written by tunesmith or was tampered with. {remedy}"
        ) from None
    except Exception as err:  # torch raises several types for a damaged file
        raise TunesmithError(f"{path} cannot be read ({type(err).__name__}); it is damaged. {remedy}") from None


def clear(run_dir: Path) -> None:
    """A finished (or overwritten) run keeps no checkpoint: its model folder is the result."""
    (run_dir / CHECKPOINT_FILE).unlink(missing_ok=True)
    for stale in run_dir.glob(f".{CHECKPOINT_FILE}.*.tmp"):
        stale.unlink(missing_ok=True)
