"""Write an enhanced volume (on its source series' grid) as a DICOM PET series derived from that series, as
`enhance --out-dicom` does; the Slicer module's "Export enhanced PET as DICOM" runs this."""

from __future__ import annotations

import argparse


def register(parser: argparse.ArgumentParser) -> None:
    """Add the `dicom` options."""
    parser.add_argument("--volume", required=True, help="the enhanced PET (NIfTI, NRRD, ...) on the source's grid")
    parser.add_argument("--source", required=True, help="folder holding the source DICOM PET series")
    parser.add_argument("--out", required=True, metavar="FOLDER", help="new series folder (absent or empty)")
    parser.add_argument("--volume-units", choices=("BQML", "SUVbw"), default="BQML",
                        help="what the volume's values are: the source's Bq/ml (default) or SUVbw, which is stored "
                             "back as Bq/ml through each slice's SUV factor")
    parser.add_argument("--weights", default=None,
                        help="checkpoint path or catalogue id that made the volume, named in DerivationDescription "
                             "(default: the catalogue default)")


def run(args: argparse.Namespace) -> int:
    """Print the series folder and the number of slices written."""
    from .. import __version__
    from ..enhance.dicom_output import derivation_text
    from ..imaging.dicom import check_series_destination, read_source_series, write_pet_series
    from ..imaging.volumes import read_image

    source = read_source_series(args.source)
    folder = check_series_destination(args.out)
    files = write_pet_series(read_image(args.volume), source, folder, derivation_text(args.weights),
                             f"M2DiffSlicer {__version__}", suv_bw=args.volume_units == "SUVbw")
    print(f"dicom: {folder} ({len(files)} slices)")
    return 0
