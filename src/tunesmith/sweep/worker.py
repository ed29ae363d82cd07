"""One worker process of a parallel sweep: `python -m tunesmith.sweep.worker SPEC INDEX THREADS` (started by
run_workers; SPEC is the sweep's own worker.json)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .study import from_json, work


def main(argv: list[str]) -> int:
    spec, index, threads = Path(argv[0]), int(argv[1]), int(argv[2])
    work(from_json(json.loads(spec.read_text(encoding="utf-8"))), worker=index, threads=threads)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
