"""The layers hold: every module imports only from layers below it (the contract in pyproject.toml), and
there are no import cycles. A change that breaks a layer fails here with the offending import named."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT = [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()"]


def test_the_layer_contract_is_kept():
    done = subprocess.run(LINT, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "1 kept, 0 broken" in done.stdout


def test_an_upward_import_breaks_the_contract(tmp_path):
    """The check is live: the same tool with the layers upside down reports the real imports as broken."""
    config = tmp_path / "inverted.toml"
    config.write_text(
        '[tool.importlinter]\nroot_package = "tunesmith"\n\n[[tool.importlinter.contracts]]\n'
        'name = "inverted"\ntype = "layers"\nlayers = ["tunesmith.engine", "tunesmith.cli"]\n'
    )
    done = subprocess.run([*LINT, "--config", str(config)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "BROKEN" in done.stdout
    assert "tunesmith.cli" in done.stdout and "tunesmith.engine" in done.stdout


def test_no_module_imports_itself_back():
    """No cycles between modules (not only between layers): for every import a -> b, no chain leads from b back to a."""
    import grimp

    graph = grimp.build_graph("tunesmith")
    cycles = sorted(
        (a, b)
        for a in graph.modules
        for b in graph.find_modules_directly_imported_by(a)
        if graph.chain_exists(importer=b, imported=a)
    )
    assert cycles == []


def test_the_benchmarks_readme_is_what_its_results_render():
    # regenerate with: python benchmarks/results.py render
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "results.py"
    spec = importlib.util.spec_from_file_location("bench_results", path)
    results = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(results)
    assert results.README.read_text(encoding="utf-8") == results.render(), "run `python benchmarks/results.py render`"
    assert "## `classification_sst2.py`" in results.render()
