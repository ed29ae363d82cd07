# The README's two Quickstart commands.
.PHONY: quickstart test bench

quickstart:
	bash scripts/setup.sh
	.venv/bin/tunesmith quickstart

test:
	bash scripts/setup.sh test
	.venv/bin/python -m pytest

bench:
	.venv/bin/python benchmarks/classification_sst2.py --repeats 3 --json bench_out/sst2.json
