"""The README a user reads: its first lines and its operation table."""

from pathlib import Path

from picflow.core.catalogue import OPERATIONS
from picflow_cli.readme import operations_table, render

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_operation_table_matches_the_catalogue():
    text = README.read_text(encoding="utf-8")
    assert render(text) == text, "README.md is stale: run `python -m picflow_cli.readme`"


def test_operation_table_lists_every_operation_once():
    table = operations_table()
    for name in OPERATIONS:
        assert table.count(f"| `{name}` |") == 1


def test_readme_starts_with_the_two_commands():
    head = "\n".join(README.read_text(encoding="utf-8").splitlines()[:8])
    assert "make demo" in head
    assert "make test" in head
