"""ROI uptake table (mean, std, max, 1 ml peak, volume, SUVR, % change) for several PET images side by side."""

from __future__ import annotations

import argparse

DEFAULT_NAMES = ("input", "enhanced", "reference")


def register(parser: argparse.ArgumentParser) -> None:
    """Add the `roi` options."""
    parser.add_argument("--images", nargs="+", required=True,
                        help="PET volumes; the first is the baseline for %% change, the others are read on its grid")
    parser.add_argument("--names", nargs="+", default=None,
                        help="one name per image (default: input enhanced reference)")
    rois = parser.add_mutually_exclusive_group()
    rois.add_argument("--labels", default=None, help="labelmap volume (0 = background); default: built-in atlas")
    rois.add_argument("--t1", default=None,
                      help="subject T1 for the built-in lobar atlas (without --labels or --t1 the atlas is "
                           "registered to the first PET, MRI-free)")
    parser.add_argument("--label-names", default=None,
                        help='JSON {"1": "name", ...} or {"labels": {...}} naming the --labels values')
    parser.add_argument("--t1-to-pet", default=None,
                        help="T1 -> PET transform file (ITK resampling convention); default: registered here")
    parser.add_argument("--reference-region", default="cerebellum",
                        help="SUVR reference: a label number or a name matched as a substring (default: "
                             "cerebellum); 'none' skips SUVR")
    parser.add_argument("--csv", default=None, help="output CSV (one row per ROI per image)")
    parser.add_argument("--json", default=None, help="output JSON (DEVELOPING.md 'ROI JSON')")


def run(args: argparse.Namespace) -> int:
    """Compute the table, write the requested outputs and print one summary line per ROI."""
    import SimpleITK as sitk

    from ..errors import BadInputError
    from ..imaging.roi import roi_table, write_roi_csv, write_roi_json
    from ..imaging.validation import check_output_paths
    from ..imaging.volumes import read_image

    names = args.names or list(DEFAULT_NAMES[: len(args.images)])
    if len(names) != len(args.images) or len(set(names)) != len(names):
        raise BadInputError(f"--names needs {len(args.images)} distinct names, one per image; got {names}")
    if args.label_names and not args.labels:
        raise BadInputError("--label-names names the values of --labels; give --labels too")
    check_output_paths([args.csv, args.json], inputs=[*args.images, args.labels or "", args.t1 or ""])
    images = {name: read_image(path) for name, path in zip(names, args.images)}
    pet = images[names[0]]
    if args.labels:
        labels = read_image(args.labels)
        label_names = _read_label_names(args.label_names) if args.label_names else None
    else:
        from ..imaging.atlas import atlas_labels_for_subject
        from ..imaging.registration import register_rigid

        t1 = read_image(args.t1) if args.t1 else None
        t1_to_pet = None
        if t1 is not None:
            t1_to_pet = (sitk.ReadTransform(args.t1_to_pet) if args.t1_to_pet
                         else register_rigid(pet, t1).transform)
        labels, label_names, _ = atlas_labels_for_subject(pet, t1, t1_to_pet)
    reference = None if args.reference_region.lower() == "none" else args.reference_region
    table = roi_table(images, labels, label_names, reference_region=reference)
    if args.json:
        write_roi_json(table, args.json)
    if args.csv:
        write_roi_csv(table, args.csv)
    for row in table["rows"]:
        values = "  ".join(f"{name} {row[name]['mean']:.4g}" for name in names)
        print(f"{row['label']:>4} {row['name']:<28} {row['volume_ml']:8.1f} ml  {values}")
    return 0


def _read_label_names(path: str) -> dict[int, str]:
    import json

    from ..errors import BadInputError

    try:
        data = json.loads(open(path).read())
    except (OSError, ValueError) as error:
        raise BadInputError(f"--label-names {path}: not a readable JSON file ({error})") from error
    data = data.get("labels", data) if isinstance(data, dict) else None
    if not isinstance(data, dict):
        raise BadInputError(f'--label-names {path}: expected {{"1": "name", ...}}')
    return {int(k): str(v) for k, v in data.items()}
