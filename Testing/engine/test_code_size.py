"""The engine stays readable: no module over 500 lines, no function over 60 (docs/DEVELOPING.md "Layout")."""

import ast
from pathlib import Path

import pytest

ENGINE = Path(__file__).resolve().parents[2] / "M2DiffSlicer"
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60
ENGINE_FILES = sorted(ENGINE.rglob("*.py"))


def _long_functions(source: str) -> list[str]:
    return [f"{node.name} ({node.end_lineno - node.lineno + 1} lines)" for node in ast.walk(ast.parse(source))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]


@pytest.mark.parametrize("path", ENGINE_FILES, ids=lambda p: str(p.relative_to(ENGINE)))
def test_engine_module_and_its_functions_are_short(path):
    source = path.read_text()
    assert source.count("\n") <= MAX_MODULE_LINES, f"{source.count(chr(10))} lines"
    assert not _long_functions(source)


def test_function_length_counts_decorators_out_and_docstrings_in():
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    assert _long_functions(f"def long():\n    '''doc'''\n{body}\n") == [f"long ({MAX_FUNCTION_LINES + 2} lines)"]
    assert _long_functions("@decorator\ndef short():\n    pass\n") == []
