"""A stand-in engine worker speaking the protocol of docs/DEVELOPING.md ("Worker protocol"), for module tests.

It is the injected seam for behaviours the real worker cannot be made to show on demand: a failure with a given
error event, an internal error (engine bug) with its traceback on stderr, a crash without any event, and a long run
with a grandchild process (to test that Cancel kills the whole tree), optionally deaf to SIGTERM like a worker stuck
in a long native call. Its "ok" mode writes outputs with known
values: enhanced = 1.5 x input on the input grid, a fixed rigid transform, and ROI statistics computed from the
labelmap so tests can compare the table with exact numbers.

    python fake_worker.py --mode ok|fail|internal|crash|slow [--pid-file F] [--ignore-sigterm] [--keep-json F] \
        --job job.json
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import SimpleITK as sitk

ENHANCE_FACTOR = 1.5
TRANSFORM = {"angles": (0.05, -0.02, 0.1), "translation": (3.0, -2.0, 1.5), "center": (1.0, 2.0, 3.0)}


def emit(**event) -> None:
    print(json.dumps(event), flush=True)


def roiRows(pet: np.ndarray, enhanced: np.ndarray, labels: np.ndarray, voxelMl: float) -> list[dict]:
    rows = []
    for label in sorted(int(v) for v in np.unique(labels) if v != 0):
        mask = labels == label
        stats = {}
        for key, image in (("input", pet), ("enhanced", enhanced)):
            values = image[mask]
            stats[key] = {"mean": float(values.mean()), "std": float(values.std()), "max": float(values.max()),
                          "peak": float(np.percentile(values, 95)), "suvr": float(values.mean() / image[labels > 0].mean())}
        rows.append({"label": label, "name": f"Region {label}", "volume_ml": float(mask.sum() * voxelMl),
                     "voxels": int(mask.sum()), **stats,
                     "change_pct": {k: 100.0 * (stats["enhanced"][k] / stats["input"][k] - 1.0) for k in ("mean", "suvr")}})
    return rows


def runOk(job: dict, keepJson: str | None) -> None:
    emit(event="start", torch="0.0-fake", cuda_build=None, device="cpu", device_name="fake CPU", memory_gb=1.0,
         arch_ok=True)
    pet = sitk.ReadImage(job["pet"], sitk.sitkFloat32)
    for step in range(3):
        emit(event="progress", phase="infer", step=step + 1, total=3, fraction=(step + 1) / 4, message=f"axial {step + 1}/3")
    enhanced = sitk.Cast(pet * ENHANCE_FACTOR, sitk.sitkFloat32)
    outputs = dict.fromkeys(("output", "uncertainty_output", "transform_output", "roi_csv", "roi_json", "report"))
    sitk.WriteImage(enhanced, job["output"])
    outputs["output"] = job["output"]
    if job.get("uncertainty_output"):
        sitk.WriteImage(sitk.Cast(pet * 0.1, sitk.sitkFloat32), job["uncertainty_output"])
        outputs["uncertainty_output"] = job["uncertainty_output"]
    if job.get("t1") and job.get("transform_output"):
        transform = sitk.Euler3DTransform(TRANSFORM["center"], *TRANSFORM["angles"], TRANSFORM["translation"])
        sitk.WriteTransform(transform, job["transform_output"])
        outputs["transform_output"] = job["transform_output"]
    if job.get("roi"):
        labels = sitk.GetArrayFromImage(sitk.ReadImage(job["roi"]))
        rows = roiRows(sitk.GetArrayFromImage(pet), sitk.GetArrayFromImage(enhanced), labels,
                       float(np.prod(pet.GetSpacing())) / 1000.0)
        with open(job["roi_json"], "w") as stream:
            json.dump({"reference_region": "whole ROI", "images": ["input", "enhanced"], "rows": rows}, stream)
        outputs["roi_json"] = job["roi_json"]
    if keepJson:
        # The geometry of every input file, to check that each reached the worker where Slicer shows it.
        files = {}
        for key in ("pet", "t1", "roi"):
            if job.get(key):
                image = sitk.ReadImage(job[key])
                files[key] = {"origin": image.GetOrigin(), "spacing": image.GetSpacing(),
                              "direction": image.GetDirection()}
        with open(keepJson, "w") as stream:
            json.dump({"job": job, "rows": rows if job.get("roi") else None, "files": files}, stream)
    emit(event="warning", message="fake worker: no model was run")
    emit(event="result", outputs=outputs, registration={"metric": -0.5, "iterations": 10}, elapsed_s=0.1)


def runSlow(job: dict, pidFile: str, ignoreSigterm: bool) -> None:
    if ignoreSigterm:
        # Set before the grandchild starts, which inherits it: only SIGKILL ends either of them.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # A grandchild that outlives us unless the whole process group is killed.
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    with open(pidFile, "w") as stream:
        json.dump({"worker": os.getpid(), "grandchild": child.pid}, stream)
    emit(event="start", torch="0.0-fake", cuda_build=None, device="cpu", device_name="fake CPU", memory_gb=1.0,
         arch_ok=True)
    with open(job["output"] + ".partial", "w") as stream:
        stream.write("partial")
    for step in range(600):
        emit(event="progress", phase="infer", step=step + 1, total=600, fraction=step / 600, message="slow")
        time.sleep(0.1)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=["ok", "fail", "internal", "crash", "slow"], required=True)
    parser.add_argument("--pid-file", help="slow mode: where to write the worker and grandchild pids")
    parser.add_argument("--ignore-sigterm", action="store_true", help="slow mode: only SIGKILL stops the worker")
    parser.add_argument("--keep-json", help="ok mode: copy of the job and ROI rows, kept after the temp dir goes")
    parser.add_argument("--job", required=True)
    args = parser.parse_args()
    with open(args.job) as stream:
        job = json.load(stream)
    if args.mode == "ok":
        runOk(job, args.keep_json)
        return 0
    if args.mode == "fail":
        print("fake worker: checked the PET voxels in validate.py", file=sys.stderr, flush=True)
        emit(event="start", torch="0.0-fake", cuda_build=None, device="cpu", device_name="fake CPU", memory_gb=1.0,
             arch_ok=True)
        emit(event="error", type="BadInputError", message="PET volume is empty (all voxels are 0)", exit_code=2)
        return 2
    if args.mode == "internal":
        print('Traceback (most recent call last):\n  File "roi.py", line 9\nZeroDivisionError: float division by zero',
              file=sys.stderr)
        emit(event="error", type="ZeroDivisionError", message="float division by zero", exit_code=1)
        return 1
    if args.mode == "crash":
        print("Traceback (most recent call last):\nSegmentation fault in fake worker", file=sys.stderr)
        return 139
    runSlow(job, args.pid_file, args.ignore_sigterm)
    return 0


if __name__ == "__main__":
    sys.exit(main())
