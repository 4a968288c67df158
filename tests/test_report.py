"""The results tables of docs/results.md are the ones benchmarks/report.py generates from the
committed results (CI fails when a result changes and the page does not)."""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import report  # noqa: E402


def test_readme_results_block_is_generated():
    with open(report.PAGE) as f:
        assert report.readme_block(f.read()) == report.block(), (
            "run python benchmarks/report.py --write")


def test_every_committed_learning_run_has_its_command():
    for name, results in report.learning_runs():
        command = results.get("command", "").split()
        # An experiment script, or an out-of-tree algorithm's own (tests/out_of_tree).
        assert command[:1] == ["python"] and command[1].startswith(
            ("experiments/", "tests/out_of_tree/")), name
        assert os.path.exists(os.path.join(report.ROOT, command[1])), name
