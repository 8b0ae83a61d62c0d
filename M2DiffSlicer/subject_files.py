"""File names inside a subject folder (docs/DEVELOPING.md "Subject folders"), shared by the simulator that
writes them and the training and benchmark code that read them."""

from __future__ import annotations

SD_FILE = "pet_sd.nii.gz"
T1_FILE = "t1.nii.gz"
TRANSFORM_FILE = "t1_to_pet.tfm"
META_FILE = "meta.json"


def ld_name(drf: float) -> str:
    """Image name of a low-dose level: 'ld_drf020' for DRF 20 (today's names), 'ld_drf037p42' for DRF 37.42."""
    if float(drf).is_integer():
        return f"ld_drf{int(drf):03d}"
    return f"ld_drf{drf:06.2f}".replace(".", "p")


def ld_file(drf: float) -> str:
    """File name of the LD-PET at dose reduction factor `drf`: 'pet_ld_drf004.nii.gz', 'pet_ld_drf037p42.nii.gz'."""
    return f"pet_{ld_name(drf)}.nii.gz"
