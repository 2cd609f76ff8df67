"""The CLI is one package, one module per command group, all registered under `figalign`."""

import importlib
import subprocess
import sys

from figalign.cli import COMMAND_GROUPS, build_parser


def test_every_command_group_module_registers_its_commands():
    parser = build_parser()
    commands = set(next(a for a in parser._actions if a.dest == "command").choices)
    for name in COMMAND_GROUPS:
        module = importlib.import_module(f"figalign.cli.{name}")
        assert callable(module.add_commands), name
    for expected in ("parse", "config", "db", "harvest", "fetch", "status", "recaption", "export", "explore"):
        assert expected in commands, expected


def test_python_dash_m_runs_the_same_cli():
    out = subprocess.run([sys.executable, "-m", "figalign.cli", "--help"], capture_output=True, text=True, check=True)
    assert "every stage runnable without Airflow" in out.stdout
