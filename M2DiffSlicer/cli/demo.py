"""Enhance the bundled sample subject: enhanced PET, comparison PNG (LD | enhanced | SD | T1) and ROI table."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..enhance.job import EnhanceJob, InferenceOptions, option_fields
from ..options import add_dataclass_arguments, dataclass_values

SAMPLE = ("SampleData", "sub-0007")
JOB_OPTIONS = option_fields(EnhanceJob, ("weights",)) + option_fields(InferenceOptions, ("steps", "device"))


def register(parser: argparse.ArgumentParser) -> None:
    """Add the `demo` options."""
    parser.add_argument("--out", default="demo_output", help="folder for the outputs (created if missing)")
    add_dataclass_arguments(parser, EnhanceJob, JOB_OPTIONS[:1])
    add_dataclass_arguments(parser, InferenceOptions, JOB_OPTIONS[1:])
    parser.add_argument("--mri-free", action="store_true", help="ignore the T1 (MRI-free mode)")


def run(args: argparse.Namespace) -> int:
    """Run the sample through `enhance` and draw the comparison figure."""
    from ..errors import BadInputError
    from ..resources import resource_path
    from .enhance import run_with_progress

    sample = resource_path(*SAMPLE)
    if not (sample / "pet_ld_drf100.nii.gz").is_file():
        raise BadInputError(f"the sample subject is not installed: {sample}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t1 = None if args.mri_free else str(sample / "t1.nii.gz")
    job = EnhanceJob.from_dict({
        "pet": str(sample / "pet_ld_drf100.nii.gz"), "t1": t1, "output": str(out / "enhanced.nii.gz"),
        "transform_output": None if t1 is None else str(out / "t1_to_pet.tfm"), "roi_csv": str(out / "roi.csv"),
        "roi_json": str(out / "roi.json"), "report": str(out / "report.json"), **dataclass_values(args, JOB_OPTIONS)})
    result = run_with_progress(job)
    figure = out / "comparison.png"
    draw_comparison(sample, out / "enhanced.nii.gz", None if t1 is None else out / "t1_to_pet.tfm", figure)
    for name, path in {**result["outputs"], "comparison": str(figure)}.items():
        if path:
            print(f"{name}: {path}")
    print(f"elapsed: {result['elapsed_s']:.1f} s")
    return 0


def draw_comparison(sample: Path, enhanced_path: Path, transform_path: Path | None, figure_path: Path) -> None:
    """Three orientations through the head centre of LD | enhanced | SD | T1 (on the PET grid), one PET scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import SimpleITK as sitk

    ld = sitk.ReadImage(str(sample / "pet_ld_drf100.nii.gz"), sitk.sitkFloat32)
    panels = {"LD-PET (1 % dose)": ld, "enhanced": sitk.ReadImage(str(enhanced_path), sitk.sitkFloat32),
              "SD-PET (reference)": sitk.ReadImage(str(sample / "pet_sd.nii.gz"), sitk.sitkFloat32)}
    if transform_path is not None:
        t1 = sitk.ReadImage(str(sample / "t1.nii.gz"), sitk.sitkFloat32)
        panels["T1 (registered)"] = sitk.Resample(t1, ld, sitk.ReadTransform(str(transform_path)), sitk.sitkLinear)
    arrays = {name: sitk.GetArrayFromImage(image) for name, image in panels.items()}
    ld_array = arrays["LD-PET (1 % dose)"]
    centre = [int(round(c)) for c in np.argwhere(ld_array > 0.2 * ld_array.max()).mean(axis=0)]
    vmax = float(np.percentile(arrays["SD-PET (reference)"], 99.5))
    sz, sy, sx = ld.GetSpacing()[::-1]
    views = {"axial": (lambda a: a[centre[0]], sy / sx, "upper"),
             "coronal": (lambda a: a[:, centre[1]], sz / sx, "lower"),
             "sagittal": (lambda a: a[:, :, centre[2]], sz / sy, "lower")}
    fig, axes = plt.subplots(len(views), len(arrays), figsize=(3 * len(arrays), 3 * len(views)), squeeze=False)
    for row, (view, (cut, aspect, origin)) in enumerate(views.items()):
        for col, (name, array) in enumerate(arrays.items()):
            is_t1 = name.startswith("T1")
            axes[row, col].imshow(cut(array), cmap="gray" if is_t1 else "magma", aspect=aspect, origin=origin,
                                  vmin=0, vmax=float(np.percentile(array, 99.5)) if is_t1 else vmax)
            axes[row, col].set_axis_off()
            if row == 0:
                axes[row, col].set_title(name)
        axes[row, 0].text(-0.05, 0.5, view, transform=axes[row, 0].transAxes, rotation=90, va="center", ha="right")
    fig.tight_layout()
    fig.savefig(figure_path, dpi=100)
    plt.close(fig)
