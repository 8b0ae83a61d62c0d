"""The `m2diff` entry point: every subcommand is registered and documented."""

import subprocess
import sys

import pytest

from M2DiffSlicer.cli import COMMANDS, build_parser, main


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for name in COMMANDS:
        assert name in text


@pytest.mark.parametrize("name", COMMANDS)
def test_each_subcommand_has_its_own_help(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([name, "--help"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: m2diff {name}")


def test_python_dash_m_runs_the_same_cli():
    result = subprocess.run([sys.executable, "-m", "M2DiffSlicer", "--version"], capture_output=True, text=True)
    assert result.returncode == 0
    assert result.stdout.startswith("m2diff ")
