"""Enhance a low-dose PET (with its T1, or MRI-free) onto the input's own grid and units, with a progress bar."""

from __future__ import annotations

import argparse
import sys

from ..enhance.job import EnhanceJob, InferenceOptions, option_fields
from ..options import add_dataclass_arguments, dataclass_values


def register(parser: argparse.ArgumentParser) -> None:
    """Add the `enhance` options: one flag per job.json key (EnhanceJob and InferenceOptions fields); --out may
    be left out when --out-dicom names the only output (dicom_output checks that one of them is given)."""
    add_dataclass_arguments(parser, EnhanceJob, option_fields(EnhanceJob), required=("pet",))
    add_dataclass_arguments(parser, InferenceOptions, option_fields(InferenceOptions))
    parser.add_argument("--out-dicom", default=None, metavar="FOLDER",
                        help="also write a DICOM PET series derived from the --pet DICOM series (automatic when "
                             "--pet is a DICOM series and --out a folder)")


def job_from_args(args: argparse.Namespace) -> EnhanceJob:
    """The EnhanceJob the options describe (BadInputError naming a bad option)."""
    return EnhanceJob.from_dict({**dataclass_values(args, option_fields(EnhanceJob)),
                                 **dataclass_values(args, option_fields(InferenceOptions))})


def run_with_progress(job) -> dict:
    """Run `job` with a tqdm bar on stderr; warnings are printed above it; returns the result event."""
    from tqdm import tqdm

    from ..enhance.pipeline import enhance_events

    result: dict = {}
    with tqdm(total=1000, unit="", file=sys.stderr, bar_format="{l_bar}{bar}| {elapsed}<{remaining} {postfix}",
              dynamic_ncols=True) as bar:
        for event in enhance_events(job):
            kind = event["event"]
            if kind == "start":
                bar.write(f"torch {event['torch']} on {event['device']} ({event['device_name']})", file=sys.stderr)
            elif kind == "warning":
                bar.write(f"warning: {event['message']}", file=sys.stderr)
            elif kind == "progress":
                bar.set_description(event["phase"], refresh=False)
                bar.set_postfix_str(event["message"], refresh=False)
                bar.update(int(event["fraction"] * 1000) - bar.n)
            elif kind == "result":
                result = event
    return result


def run(args: argparse.Namespace) -> int:
    """Print the written outputs and the elapsed time."""
    from ..enhance.dicom_output import dicom_output

    with dicom_output(args.pet, args.output, args.out_dicom) as dicom:  # checked before the enhance starts
        args.output = dicom.volume_path
        result = dicom.write(run_with_progress(job_from_args(args)), args.weights)
    for name, path in result["outputs"].items():
        if path:
            print(f"{name}: {path}")
    print(f"elapsed: {result['elapsed_s']:.1f} s")
    return 0
