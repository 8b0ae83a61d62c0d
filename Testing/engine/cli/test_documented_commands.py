"""Every `m2diff` command line the README and docs show still parses: subcommands and flags keep their names."""

import shlex
from pathlib import Path

import pytest

from M2DiffSlicer.cli import build_parser

REPO = Path(__file__).resolve().parents[3]
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
TORCHRUN_MODULE = "-m M2DiffSlicer.cli"


def documented_command_lines(text: str) -> list[str]:
    """`m2diff ...` lines (and torchrun's `-m M2DiffSlicer.cli ...`) inside fenced code blocks, continuation lines
    joined and trailing comments dropped; returned as the arguments after the program name."""
    lines, in_code, pending = [], False, ""
    for raw in text.splitlines():
        if raw.lstrip().startswith("```"):
            in_code, pending = not in_code, ""
            continue
        if not in_code:
            continue
        line = pending + raw.split(" #", 1)[0].strip()
        if line.endswith("\\"):
            pending = line[:-1].rstrip() + " "
            continue
        pending = ""
        if line.startswith("m2diff "):
            lines.append(line[len("m2diff "):])
        elif TORCHRUN_MODULE in line:
            lines.append(line.split(TORCHRUN_MODULE, 1)[1].strip())
    return lines


COMMANDS = [(document.name, line) for document in DOCUMENTS
            for line in documented_command_lines(document.read_text(encoding="utf-8"))]


def test_the_readme_documents_every_main_subcommand():
    documented = {shlex.split(line)[0] for name, line in COMMANDS if name == "README.md"}
    assert {"enhance", "simulate", "train", "evaluate", "roi", "info", "worker"} <= documented


@pytest.mark.parametrize("document, line", COMMANDS, ids=[f"{d}: {line[:60]}" for d, line in COMMANDS])
def test_documented_command_line_parses(document, line):
    args = build_parser().parse_args(shlex.split(line))
    assert callable(args.run)


def test_a_renamed_flag_would_not_parse():
    with pytest.raises(SystemExit):
        build_parser().parse_args(shlex.split("enhance --pet ld.nii.gz --output enhanced.nii.gz"))


def test_continuation_lines_and_comments_are_joined():
    text = "```bash\nm2diff train --data a \\\n  --steps 5   # five\n```\nm2diff outside-code\n"
    assert documented_command_lines(text) == ["train --data a --steps 5"]
