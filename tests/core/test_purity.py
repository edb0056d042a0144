"""The clinical core is pure: no terminal libraries, no printing, no files."""

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "icans_cli" / "core"
FORBIDDEN_MODULES = {"typer", "rich", "questionary", "prompt_toolkit", "click", "os", "io",
                     "pathlib", "shutil", "subprocess", "sys", "platformdirs", "importlib"}
FORBIDDEN_CALLS = {"print", "open", "input"}


def test_core_imports_no_cli_or_io_modules_and_never_prints_or_opens():
    files = sorted(CORE.glob("*.py"))
    assert files
    for f in files:
        tree = ast.parse(f.read_text(), filename=str(f))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    assert a.name.split(".")[0] not in FORBIDDEN_MODULES, (f.name, a.name)
            elif isinstance(node, ast.ImportFrom):
                assert (node.module or "").split(".")[0] not in FORBIDDEN_MODULES, \
                    (f.name, node.module)
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in FORBIDDEN_CALLS, (f.name, node.func.id)
