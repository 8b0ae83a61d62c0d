"""Render the module's side-by-side comparison to a PNG without a GPU or a display.

Runs M2DiffModule's real logic on real MRML (slicer-core, with the test harness standing in for Slicer's Qt/app
layer): loads a subject, enhances it through the worker process (or takes an already enhanced volume), lets the
logic set up its linked comparison layout, then renders each slice view through Slicer's own slice pipeline
(vtkMRMLSliceLogic reslice + blend, the images Slicer's slice views display) and tiles them.

    python scripts/render_comparison.py --subject Resources/SampleData/sub-0007 --weights model.pt \
        --out docs/images/comparison.png
    python scripts/render_comparison.py --enhanced enhanced.nii.gz   # from `m2diff enhance`, no inference here
"""

import argparse
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(REPO, "Testing", "module"), os.path.join(REPO, "M2DiffModule"), REPO]

from M2DiffSlicer.options import DEFAULT_SAMPLING_STEPS  # noqa: E402  (after the path set-up above)


def parseArgs(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subject", default=os.path.join(REPO, "Resources", "SampleData", "sub-0007"),
                        help="subject folder with pet_ld_drf100.nii.gz (or --pet) and t1.nii.gz")
    parser.add_argument("--pet", help="low-dose PET file (default: <subject>/pet_ld_drf100.nii.gz)")
    parser.add_argument("--reference", help="optional standard-dose PET shown as a last panel "
                                            "(default: <subject>/pet_sd.nii.gz when present)")
    parser.add_argument("--enhanced", help="already enhanced PET on the LD grid: skip running the worker")
    parser.add_argument("--weights", help="model checkpoint (.pt); default: the catalogue's default model")
    parser.add_argument("--steps", type=int, default=DEFAULT_SAMPLING_STEPS,
                        help="sampling steps (default: the shipped default)")
    parser.add_argument("--axial-only", action="store_true", help="run the model in the axial orientation only")
    parser.add_argument("--size", type=int, default=320, help="pixels per panel side")
    parser.add_argument("--out", default=os.path.join(REPO, "docs", "images", "comparison.png"))
    return parser.parse_args(argv)


def renderView(applicationLogic, layoutName: str, size: int):
    """RGBA array [size x size x 4] of one slice view as the module left it, from its slice logic's blended
    reslice output; orientation and field of view are the module's (nothing is forced here)."""
    import numpy as np
    from vtk.util.numpy_support import vtk_to_numpy

    sliceLogic = applicationLogic.GetSliceLogicByLayoutName(layoutName)
    sliceNode = sliceLogic.GetSliceNode()
    # A square panel like the square default view: Slicer keeps the field of view's aspect on a resize.
    sliceNode.SetDimensions(size, size, 1)
    producer = sliceLogic.GetImageDataConnection().GetProducer()
    producer.Update()
    image = producer.GetOutputDataObject(0)
    columns, rows, _ = image.GetDimensions()
    rgba = vtk_to_numpy(image.GetPointData().GetScalars()).reshape(rows, columns, -1)
    return np.flipud(rgba)  # VTK's first row is the bottom of the view


def main(argv=None) -> int:
    args = parseArgs(argv)
    import numpy as np

    import slicer_harness
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    core = slicer_harness.install({"M2DiffModule": os.path.join(REPO, "M2DiffModule", "M2DiffModule.py")})
    from M2DiffModule import M2DiffModuleLogic
    from M2DiffModuleLib import ComparisonLayout, ResultNodes, VolumeIO
    from M2DiffModuleLib.EnhanceLogic import Orientations

    volumes = core.logics["Volumes"]
    ldPet = volumes.AddArchetypeVolume(args.pet or os.path.join(args.subject, "pet_ld_drf100.nii.gz"),
                                       "Low-dose PET", 0)
    t1 = volumes.AddArchetypeVolume(os.path.join(args.subject, "t1.nii.gz"), "T1", 0)
    petColors = ResultNodes.petColorNodeId(core.scene)
    if args.enhanced:
        # The same display steps the logic takes after a run.
        enhanced = volumes.AddArchetypeVolume(args.enhanced, "Enhanced PET", 0)
        VolumeIO.showInPetColors(ldPet, petColors)
        VolumeIO.applyPetDisplay(ldPet, enhanced, petColors)
        t1Title = "T1"
    else:
        logic = M2DiffModuleLogic(workerCommand=[sys.executable, "-m", "M2DiffSlicer.enhance.worker"])
        orientations = Orientations.AXIAL if args.axial_only else Orientations.ALL
        result = logic.process(ldPet, t1, steps=args.steps, orientations=orientations, weights=args.weights)
        enhanced = result.outputVolume
        # The panel says which model made it: a picture from an untrained test model must not pass for a result.
        enhanced.SetName(f"Enhanced PET ({os.path.basename(args.weights) if args.weights else 'default model'})")
        t1Title = "T1 (registered)"
    reference = args.reference or os.path.join(args.subject, "pet_sd.nii.gz")
    panels = [("Red", ldPet.GetName()), ("Yellow", enhanced.GetName()), ("Green", t1Title)]
    if os.path.exists(reference):
        referenceVolume = volumes.AddArchetypeVolume(reference, "Standard-dose PET (reference)", 0)
        compositeNodes = ComparisonLayout.showComparison(core.scene, [ldPet, enhanced, t1, referenceVolume])
        panels.append(("Slice4", referenceVolume.GetName()))
        VolumeIO.applyPetDisplay(ldPet, referenceVolume, petColors)
        assert len(compositeNodes) == 4
    else:
        ComparisonLayout.showComparison(core.scene, [ldPet, enhanced, t1, None])

    images = [renderView(core.applicationLogic, name, args.size) for name, _ in panels]
    figure, axes = plt.subplots(1, len(images), figsize=(3.2 * len(images), 3.6), facecolor="black")
    for axis, image, (_, title) in zip(np.atleast_1d(axes), images, panels):
        axis.imshow(image[..., :3])
        axis.set_title(title, color="white", fontsize=10)
        axis.axis("off")
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    figure.savefig(args.out, dpi=100, facecolor="black")
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
