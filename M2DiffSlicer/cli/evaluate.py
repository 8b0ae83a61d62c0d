"""Compare a predicted PET with a reference PET: PSNR/SSIM/NMSE (2D-slice means and 3D) and regional bias, as JSON."""

from __future__ import annotations

import argparse


def register(parser: argparse.ArgumentParser) -> None:
    """Add the `evaluate` options."""
    parser.add_argument("--pred", required=True, help="predicted / enhanced PET volume")
    parser.add_argument("--ref", required=True, help="reference (SD) PET volume on the same grid")
    parser.add_argument("--mask", default=None,
                        help="brain mask volume (nonzero = brain); default: ref >= 15%% of its 99.9th percentile")
    parser.add_argument("--roi", default=None, help="labelmap for regional mean bias (e.g. roi_pet.nii.gz)")


def run(args: argparse.Namespace) -> int:
    """Print one JSON object with the metrics."""
    import json

    import SimpleITK as sitk

    from ..errors import BadInputError
    from ..imaging.metrics import default_mask, evaluate
    from ..imaging.volumes import read_image

    pred = sitk.GetArrayFromImage(read_image(args.pred)).astype("float64")
    ref = sitk.GetArrayFromImage(read_image(args.ref)).astype("float64")
    mask = (sitk.GetArrayFromImage(read_image(args.mask)) > 0) if args.mask else default_mask(ref)
    labels = sitk.GetArrayFromImage(read_image(args.roi)) if args.roi else None
    try:
        result = evaluate(pred, ref, mask, labels)
    except (ValueError, TypeError) as error:
        raise BadInputError(str(error)) from error
    result.update({"pred": args.pred, "ref": args.ref, "mask": args.mask or "default: ref >= 0.15 x p99.9",
                   "convention": "both images / max(ref in mask); SSIM Gaussian sigma 1.5; 2D = axial slice means"})
    print(json.dumps(result, indent=1))
    return 0
