"""Enhance a low-dose PET (with its T1, or MRI-free) onto the input's own grid and units, with a progress bar."""

from __future__ import annotations

import argparse
import sys

from ..options import DEFAULT_SAMPLING_STEPS

ORIENTATIONS = ("axial", "coronal", "sagittal")


def register(parser: argparse.ArgumentParser) -> None:
    """Add the `enhance` options (the EnhanceJob fields, docs/DEVELOPING.md "Worker protocol")."""
    parser.add_argument("--pet", required=True, help="low-dose PET: NIfTI, NRRD or a DICOM series folder")
    parser.add_argument("--t1", default=None, help="T1 MRI of the same subject (omit for MRI-free mode)")
    parser.add_argument("--out", required=True, help="enhanced PET to write (.nii.gz, .nrrd, ...)")
    parser.add_argument("--weights", default=None, help="checkpoint path or catalogue id (default: catalogue default)")
    parser.add_argument("--steps", type=int, default=DEFAULT_SAMPLING_STEPS, help="sampling steps K (respaced DDIM)")
    parser.add_argument("--orientations", nargs="+", default=list(ORIENTATIONS), choices=ORIENTATIONS,
                        help="slice stacks to sample and fuse")
    parser.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=16, help="slices per network call")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast of the network")
    parser.add_argument("--channels-last", action="store_true", help="NHWC memory layout for the network")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--uncertainty", default=None, metavar="U",
                        help="also write the per-voxel spread across orientations/decoders here")
    parser.add_argument("--roi", default=None, help="ROI labelmap (default: the built-in lobar atlas)")
    parser.add_argument("--roi-out", default=None, metavar="CSV", help="write the ROI table as CSV")
    parser.add_argument("--roi-json", default=None, help="write the ROI table as JSON")
    parser.add_argument("--transform", default=None, help="known T1->PET transform (.tfm); skips registration")
    parser.add_argument("--transform-out", default=None, help="write the T1->PET transform used (.tfm)")
    parser.add_argument("--report", default=None, metavar="JSON", help="write a JSON report of the run")


def job_from_args(args: argparse.Namespace):
    """The EnhanceJob the options describe."""
    from ..enhance.pipeline import EnhanceJob

    return EnhanceJob(pet=args.pet, t1=args.t1, output=args.out, weights=args.weights, steps=args.steps,
                      orientations=list(args.orientations), device=args.device, seed=args.seed,
                      batch_size=args.batch_size, bf16=args.bf16, channels_last=args.channels_last,
                      threads=args.threads,
                      uncertainty_output=args.uncertainty, roi=args.roi, roi_csv=args.roi_out,
                      roi_json=args.roi_json, transform=args.transform, transform_output=args.transform_out,
                      report=args.report)


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
    result = run_with_progress(job_from_args(args))
    for name, path in result["outputs"].items():
        if path:
            print(f"{name}: {path}")
    print(f"elapsed: {result['elapsed_s']:.1f} s")
    return 0
