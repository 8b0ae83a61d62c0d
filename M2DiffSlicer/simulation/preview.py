"""Preview PNG of a subject folder: T1 (resampled with the saved transform), SD-PET and LD-PET in three orientations."""

from __future__ import annotations

from pathlib import Path

from ..subject_files import SD_FILE, T1_FILE, TRANSFORM_FILE, ld_file


def write_preview(folder: str | Path, png: str | Path, drf: float = 100) -> Path:
    """Render `folder`'s T1 / SD / LD(drf) through the brain centre (axial, coronal, sagittal) into `png`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import SimpleITK as sitk

    folder, png = Path(folder), Path(png)
    sd = sitk.ReadImage(str(folder / SD_FILE))
    ld = sitk.ReadImage(str(folder / ld_file(drf)))
    t1 = sitk.Resample(sitk.ReadImage(str(folder / T1_FILE), sitk.sitkFloat32), sd,
                       sitk.ReadTransform(str(folder / TRANSFORM_FILE)), sitk.sitkLinear, 0.0)
    arrays = [sitk.GetArrayFromImage(image) for image in (t1, sd, ld)]
    brain = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "brain_pet.nii.gz"))) > 0
    z, y, x = (int(round(c)) for c in np.argwhere(brain).mean(0))
    pet_max = float(np.percentile(arrays[1][brain], 99.5))
    titles = ["T1 (saved transform)", "SD-PET", f"LD-PET DRF {drf:g}"]
    figure, axes = plt.subplots(3, 3, figsize=(9, 9), facecolor="black")
    for column, (array, title) in enumerate(zip(arrays, titles)):
        vmax = float(np.percentile(array, 99.5)) if column == 0 else pet_max
        cmap = "gray" if column == 0 else "hot"
        # Physical orientation: axial seen from the feet (LPS rows = posterior down), others with superior up.
        for row, view in enumerate((array[z], array[:, y][::-1], array[:, :, x][::-1])):
            axis = axes[row, column]
            axis.imshow(view, cmap=cmap, vmin=0, vmax=vmax, aspect="equal", interpolation="nearest")
            axis.set_axis_off()
        axes[0, column].set_title(title, color="white")
    figure.suptitle(f"{folder.name}  (simulated; PET in Bq/ml, common window)", color="white")
    figure.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(png, dpi=80, facecolor="black")
    plt.close(figure)
    return png
