"""Run the official BIDS validator on a dataset when one is installed, and return its errors.

Two validators are known: the Deno-based one (schema-driven, the current one; the `bids-validator-deno` console
script of the PyPI package of that name, which the [test] extra installs) and the legacy Node one
(`bids-validator` 1.x from npm, fine for raw datasets, not for derivatives). Each prints JSON with `--json`; the
two formats differ and are read here into one list of {"code", "location"} dicts for the issues of severity
"error". The Deno one is preferred when both are installed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from ..errors import BadInputError

VALIDATORS = ("bids-validator-deno", "bids-validator")
TIMEOUT_S = 600


def find_validators() -> dict[str, str]:
    """{name: executable} of the installed validators, in preference order (PATH, then the running Python's
    scripts folder, where pip puts bids-validator-deno in a venv that is not activated)."""
    search = os.pathsep.join([os.environ.get("PATH", ""), str(Path(sys.executable).parent)])
    found = {name: shutil.which(name, path=search) for name in VALIDATORS}
    return {name: path for name, path in found.items() if path}


def validation_errors(dataset: str | os.PathLike, executable: str) -> list[dict[str, str]]:
    """The errors `executable` (a validator from find_validators) reports for `dataset`.

    :raises BadInputError: the validator did not run or printed no JSON report.
    """
    try:
        done = subprocess.run([executable, str(dataset), "--json"], capture_output=True, text=True,
                              timeout=TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise BadInputError(f"the BIDS validator {executable} did not run: {error}") from None
    try:
        report = json.loads(done.stdout[done.stdout.find("{"):])
    except ValueError:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise BadInputError(f"the BIDS validator {executable} printed no JSON report: {' / '.join(tail)}") from None
    return report_errors(report)


def report_errors(report: dict[str, Any]) -> list[dict[str, str]]:
    """The errors of a validator's JSON report (either validator's format) as {"code", "location"} dicts."""
    issues = report.get("issues", {})
    if "issues" in issues:  # Deno validator: one flat list with a severity each
        return [{"code": i.get("code", "?"), "location": i.get("location", "")}
                for i in issues["issues"] if i.get("severity") == "error"]
    return [{"code": e.get("key", "?"), "location": ", ".join(f.get("file", {}).get("relativePath", "")
                                                              for f in e.get("files", []) if f)}
            for e in issues.get("errors", [])]  # legacy validator: errors grouped by key, with their files
