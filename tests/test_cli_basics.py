import os
import re
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from icans_cli import __version__
from icans_cli.cli import app

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


def py(*args, **kw):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, **kw)


def test_installed_console_script_help_runs():
    exe = Path(sys.executable).parent / "icans"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "icans_cli"]
    r = subprocess.run([*cmd, "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    for command in ("assess", "grade", "log", "history", "practice", "explain"):
        assert command in r.stdout


def test_python_dash_m_and_version():
    r = py("-m", "icans_cli", "--version")
    assert r.returncode == 0 and r.stdout.strip() == f"icans {__version__}"


def test_help_imports_neither_questionary_nor_protocol_data():
    code = ("import sys\nfrom icans_cli.cli import app\n"
            "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
            "bad = [m for m in ('questionary', 'icans_cli.protocols', 'icans_cli.interview',"
            " 'icans_cli.batch', 'icans_cli.log') if m in sys.modules]\n"
            "print('LOADED:' + ','.join(bad))\n")
    r = py("-c", code)
    assert "LOADED:\n" in r.stdout or r.stdout.strip().endswith("LOADED:"), r.stdout


def test_every_command_has_help_with_an_example():
    for args in (["assess"], ["grade"], ["history"], ["log", "show"], ["log", "verify"],
                 ["log", "path"], ["practice"], ["explain"]):
        r = runner.invoke(app, [*args, "--help"])
        assert r.exit_code == 0, args
        assert "Example" in r.stdout, args


def test_readme_starts_with_two_commands_and_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:sh|bash|console)?\n(.*?)```", readme, re.S)
    first_two = [b.strip() for b in blocks[:2]]
    assert "icans" in first_two[0] and "pip install" in first_two[0]
    assert "pytest" in first_two[1]
    ci = (ROOT / ".ci" / "run").read_text()
    assert first_two[1] in ci


def test_no_traceback_on_internal_error(monkeypatch):
    code = ("import icans_cli.cli as c\n"
            "def boom(*a, **k):\n    raise RuntimeError('PT-SECRET')\n"
            "c.app = boom\nc.main()\n")
    env = dict(os.environ)
    env.pop("ICANS_DEBUG", None)
    r = py("-c", code, env=env)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr and "PT-SECRET" not in r.stderr
    assert "Internal error" in r.stderr
