"""BIDS App: enhance the PET of a PET-BIDS dataset into BIDS-Derivatives (participant level), then tabulate the
cohort (group level). Usage: m2diff bids BIDS_DIR OUTPUT_DIR participant|group [options]."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..enhance.job import EnhanceJob, InferenceOptions, option_fields
from ..options import add_dataclass_arguments, dataclass_values

LEVELS = ("participant", "group")
# The enhance settings each participant job takes, as `m2diff enhance` defines them (--nprocs sets threads).
PATH_OPTIONS = option_fields(EnhanceJob, ("weights",))
INFERENCE_OPTIONS = option_fields(InferenceOptions, ("steps", "orientations", "device", "seed", "batch_size"))


def register(parser: argparse.ArgumentParser) -> None:
    """The BIDS-Apps positional arguments and options (both --a-b and --a_b spellings, as PETPrep accepts)."""
    parser.add_argument("bids_dir", type=Path, help="the raw PET-BIDS dataset (read only)")
    parser.add_argument("output_dir", type=Path, help="the derivatives folder, e.g. BIDS_DIR/derivatives/m2diff")
    parser.add_argument("analysis_level", choices=LEVELS,
                        help="participant: enhance each PET run; group: cohort ROI table and figure")
    parser.add_argument("--participant-label", "--participant_label", nargs="+", default=None, metavar="LABEL",
                        help="participants to process, with or without 'sub-' (default: all)")
    parser.add_argument("--session-label", "--session_label", nargs="+", default=None, metavar="LABEL",
                        help="sessions to process, with or without 'ses-' (default: all)")
    parser.add_argument("--skip-bids-validation", "--skip_bids_validation", action="store_true",
                        help="do not run the BIDS validator on BIDS_DIR (it runs when one is installed)")
    parser.add_argument("--nprocs", "--n_cpus", type=int, default=None, metavar="N",
                        help="CPU threads for the network (default: torch's choice)")
    parser.add_argument("-w", "--work-dir", "--work_dir", type=Path, default=None,
                        help="folder for intermediate files (default: the system's temporary folder)")
    parser.add_argument("--frame-window", "--frame_window", nargs=2, type=float, default=None,
                        metavar=("START", "END"),
                        help="dynamic (4D) PET: average the frames inside [START, END] s from TimeZero")
    parser.add_argument("--uncertainty", action="store_true", help="also write the per-voxel uncertainty map")
    parser.add_argument("--overwrite", action="store_true", help="redo runs whose outputs already exist")
    add_dataclass_arguments(parser, EnhanceJob, PATH_OPTIONS)
    add_dataclass_arguments(parser, InferenceOptions, INFERENCE_OPTIONS)


def run(args: argparse.Namespace) -> int:
    """Run the chosen level; print the files written."""
    from ..bids import group, participant

    if args.analysis_level == "group":
        for path in group.run_group_level(args.output_dir).values():
            print(path)
        return 0
    if not args.skip_bids_validation:
        _validate_input(args.bids_dir)
    options = participant.BidsAppOptions(
        bids_dir=args.bids_dir, output_dir=args.output_dir, participant_labels=args.participant_label,
        session_labels=args.session_label, work_dir=args.work_dir, overwrite=args.overwrite,
        uncertainty=args.uncertainty, frame_window=tuple(args.frame_window) if args.frame_window else None,
        job_values={**dataclass_values(args, PATH_OPTIONS + INFERENCE_OPTIONS), "threads": args.nprocs})
    for path in participant.run_participant_level(options, log=_log):
        print(path)
    return 0


def _validate_input(bids_dir: Path) -> None:
    """BadInputError listing the validator's errors (the first validator found), or a note that none is installed."""
    from ..bids.layout import read_dataset_description
    from ..bids.validator import find_validators, validation_errors
    from ..errors import BadInputError

    read_dataset_description(bids_dir)  # the plain message for a folder that is no BIDS dataset at all
    validators = find_validators()
    if not validators:
        _log("no BIDS validator installed (pip install bids-validator-deno); only the layout checks run")
        return
    name, executable = next(iter(validators.items()))
    errors = validation_errors(bids_dir, executable)
    if errors:
        listed = "; ".join(f"{e['code']} {e['location']}".strip() for e in errors[:5])
        raise BadInputError(f"{name} finds {len(errors)} error(s) in {bids_dir}: {listed} "
                            "(--skip-bids-validation to run anyway)")


def _log(message: str) -> None:
    print(f"m2diff bids: {message}", file=sys.stderr, flush=True)
