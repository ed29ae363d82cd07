# The README's two Quickstart commands.
.PHONY: quickstart test bench

quickstart:
	bash scripts/setup.sh
	.venv/bin/tunesmith quickstart

test:
	bash scripts/setup.sh test
	.venv/bin/python -m pytest

bench:
	bash scripts/setup.sh bench
	mkdir -p bench_out
	.venv/bin/python benchmarks/classification_sst2.py --repeats 3 --json bench_out/sst2.json
	.venv/bin/python benchmarks/sft_vs_trl.py --json bench_out/sft_vs_trl.json
