# The README's two Quickstart commands.
.PHONY: quickstart test bench

quickstart:
	bash scripts/setup.sh
	.venv/bin/tunesmith quickstart

# lint and format check, the suite on both cores, then the bf16 lane (precision auto as on an AMX CPU)
test:
	bash scripts/setup.sh test
	.venv/bin/ruff check src tests benchmarks scripts
	.venv/bin/ruff format --check src tests benchmarks scripts
	TUNESMITH_REQUIRE_BROWSER=1 .venv/bin/python -m pytest -n 2 --dist worksteal
	TUNESMITH_ASSUME_CPU_FLAGS=amx_bf16 .venv/bin/python -m pytest -n 2 --dist worksteal -m bf16_lane

bench:
	bash scripts/setup.sh bench
	mkdir -p bench_out
	.venv/bin/python benchmarks/classification_sst2.py --repeats 3 --defaults-only --json bench_out/sst2.json --publish
	.venv/bin/python benchmarks/sft_vs_trl.py --json bench_out/sft_vs_trl.json
