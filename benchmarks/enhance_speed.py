"""Speed and memory of `m2diff enhance` here, the levers that change them, and the distance to the CPU peak.

1. `m2diff enhance` end to end on --pet/--t1 (default the sample 2 mm brain, Resources/SampleData/sub-0007; three
   orientations, batch 16) for each K in --steps, each in its own process: wall time and peak resident memory.
2. Levers, measured on the network alone at the model grid's slice sizes: batch size, bf16 autocast,
   channels-last, torch threads (time per slice-step = one network evaluation of one slice).
3. Empty-slice skipping: slices sampled vs all slices of the model grid for this brain.
4. FLOPs per slice-step (torch.utils.flop_counter) x slice-steps per volume, against torch.matmul's measured
   GFLOP/s (float32 and bfloat16): the time the volume would take at the CPU's matmul peak.

The catalogue's default weights are timed (or --weights): the architecture users run, not a preset's bare one.

    python benchmarks/enhance_speed.py                       # default weights, K = 1, 10
    python benchmarks/enhance_speed.py --steps 1 5 10 20 --json enhance_speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


SAMPLE = REPO / "Resources" / "SampleData" / "sub-0007"


def run_enhance(weights: Path, steps: int, out: Path, pet: Path, t1: Path) -> dict:
    """One `m2diff enhance` process on `pet` with `t1`: wall seconds and peak RSS (GB) from wait4's rusage."""
    command = [sys.executable, "-m", "M2DiffSlicer", "enhance", "--pet", str(pet),
               "--t1", str(t1), "--out", str(out / f"enhanced_k{steps}.nii.gz"),
               "--weights", str(weights), "--steps", str(steps), "--report", str(out / f"report_k{steps}.json")]
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "PYTHONPATH": str(REPO)})
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"m2diff enhance failed with exit code {os.waitstatus_to_exitcode(status)}")
    report = json.loads((out / f"report_k{steps}.json").read_text())
    return {"pet": str(pet.relative_to(REPO) if pet.is_relative_to(REPO) else pet), "steps": steps, "wall_s": round(wall, 1), "peak_rss_gb": round(usage.ru_maxrss / 2**20, 2),
            "timings_s": report["timings_s"], "sampled_slices": report["sampled_slices"]}


def slice_step_seconds(model, shape, batch: int, bf16: bool, channels_last: bool, iterations: int) -> float:
    """Median seconds per slice of one batched network evaluation."""
    import torch

    x = torch.randn(batch, 1, *shape)
    t = torch.full((batch,), 500, dtype=torch.long)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    net = model.to(memory_format=memory_format)
    x = x.contiguous(memory_format=memory_format)
    times = []
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        net(x, t, x, x, None)  # warm-up
        for _ in range(iterations):
            start = time.perf_counter()
            net(x, t, x, x, None)
            times.append(time.perf_counter() - start)
    model.to(memory_format=torch.contiguous_format)
    return sorted(times)[len(times) // 2] / batch


def matmul_gflops(dtype_name: str, size: int = 1024, iterations: int = 10) -> float:
    import torch

    dtype = getattr(torch, dtype_name)
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    for _ in range(2):
        a @ b
    start = time.perf_counter()
    for _ in range(iterations):
        a @ b
    return 2 * size**3 * iterations / (time.perf_counter() - start) / 1e9


SHAPES = {"axial": (112, 96), "coronal": (96, 96), "sagittal": (96, 112)}  # the model grid's slices


def main() -> None:
    args = _parser().parse_args()
    import torch

    from M2DiffSlicer.model.catalogue import resolve_weights
    from M2DiffSlicer.model.checkpoint import read_checkpoint

    results: dict = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                                 "torch": torch.__version__, "threads": torch.get_num_threads(),
                                 "load_avg_at_start": os.getloadavg()}}
    path, sha256 = resolve_weights(args.weights)
    model = read_checkpoint(path, sha256, torch.device("cpu")).model.eval()
    results["weights"] = str(path.relative_to(REPO) if path.is_relative_to(REPO) else path)
    results["slices"] = sample_slice_counts()  # 3.
    flops = slice_step_flops(model)  # 4.
    results["flops"] = flops_report(flops, results["slices"]["sampled"])
    results["levers"] = levers(model, flops["axial"], args.lever_iterations)  # 2.
    results["end_to_end"] = [] if args.skip_end_to_end else end_to_end(path, args.steps, args.pet, args.t1)  # 1.
    results["machine"]["load_avg_at_end"] = os.getloadavg()
    print_report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=None, help="checkpoint path or catalogue id (default: the default)")
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--lever-iterations", type=int, default=2)
    parser.add_argument("--skip-end-to-end", action="store_true")
    parser.add_argument("--pet", type=Path, default=SAMPLE / "pet_ld_drf100.nii.gz",
                        help="LD-PET of the end-to-end runs (default: the sample 2 mm brain)")
    parser.add_argument("--t1", type=Path, default=SAMPLE / "t1.nii.gz", help="its T1")
    parser.add_argument("--json", default=None, help="also write the numbers here")
    return parser


def sample_slice_counts() -> dict:
    """Empty-slice skipping on the sample brain: {"sampled": {orientation: n}, "all": {orientation: n}}."""
    import SimpleITK as sitk

    from M2DiffSlicer.enhance.slice_inference import sampled_slice_indices
    from M2DiffSlicer.imaging.model_grid import ModelGrid, prepare_inputs
    from M2DiffSlicer.imaging.orientation import Orientation

    prepared = prepare_inputs(sitk.ReadImage(str(SAMPLE / "pet_ld_drf100.nii.gz")), None, None, ModelGrid())
    return {"sampled": {o.value: int(len(sampled_slice_indices(prepared.pet, o))) for o in Orientation},
            "all": {o.value: int(prepared.pet.shape[o.axis]) for o in Orientation}}


def slice_step_flops(model) -> dict[str, int]:
    """FLOPs of one network evaluation of one slice, per orientation (torch.utils.flop_counter)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    flops = {}
    for name, shape in SHAPES.items():
        x = torch.randn(1, 1, *shape)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x, torch.full((1,), 500, dtype=torch.long), x, x, None)
        flops[name] = counter.get_total_flops()
    return flops


def flops_report(flops: dict[str, int], sampled: dict[str, int]) -> dict:
    """FLOPs per volume and step against the measured matmul peaks (float32, bfloat16)."""
    per_step_volume = sum(flops[o] * sampled[o] for o in SHAPES)
    peak = {"float32": matmul_gflops("float32"), "bfloat16": matmul_gflops("bfloat16")}
    return {"gflop_per_slice_step": {k: round(v / 1e9, 3) for k, v in flops.items()},
            "gflop_per_volume_per_step": round(per_step_volume / 1e9, 1),
            "matmul_peak_gflops": {k: round(v, 1) for k, v in peak.items()},
            "seconds_per_step_at_fp32_peak": round(per_step_volume / 1e9 / peak["float32"], 1)}


def levers(model, axial_flops: int, iterations: int) -> list[dict]:
    """ms per axial slice-step for batch sizes and torch threads, and bf16 / channels-last at batch 16."""
    import torch

    rows = []
    threads_before = torch.get_num_threads()
    for threads in sorted({1, threads_before}):
        torch.set_num_threads(threads)
        for batch in (1, 8, 16, 32):
            for bf16 in (False, True):
                for channels_last in (False, True):
                    if (batch != 16 or threads != threads_before) and (bf16 or channels_last):
                        continue  # the precision/layout levers are measured at the default batch and threads
                    seconds = slice_step_seconds(model, SHAPES["axial"], batch, bf16, channels_last, iterations)
                    rows.append({"threads": threads, "batch": batch, "bf16": bf16, "channels_last": channels_last,
                                 "ms_per_slice_step": round(1000 * seconds, 1),
                                 "achieved_gflops": round(axial_flops / seconds / 1e9, 1)})
                    print(rows[-1], flush=True)
    torch.set_num_threads(threads_before)
    return rows


def end_to_end(weights: Path, steps: list[int], pet: Path, t1: Path) -> list[dict]:
    """`m2diff enhance` on `pet` and `t1` with `weights` for each K in `steps`."""
    runs = []
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        for k in steps:
            runs.append(run_enhance(weights, k, folder, pet, t1))
            print(runs[-1], flush=True)
    return runs


def print_report(results: dict) -> None:
    """The numbers as Markdown tables."""
    runs, f, machine = results["end_to_end"], results["flops"], results["machine"]
    print(f"\n## m2diff enhance, {results['weights']}, 3 orientations, batch 16\n")
    print("| input | K steps | wall s | peak RSS GB | sampling s |")
    print("|---|---|---|---|---|")
    for run in runs:
        print(f"| {run['pet']} | {run['steps']} | {run['wall_s']} | {run['peak_rss_gb']} | {run['timings_s'].get('infer_and_fuse')} |")
    print(f"\nslices sampled {results['slices']['sampled']} of {results['slices']['all']}; "
          f"{f['gflop_per_volume_per_step']} GFLOP per volume per step; "
          f"matmul peak {f['matmul_peak_gflops']} GFLOP/s -> {f['seconds_per_step_at_fp32_peak']} s per step at "
          "the fp32 peak")
    print("\n| threads | batch | bf16 | channels_last | ms / slice-step | GFLOP/s |")
    print("|---|---|---|---|---|---|")
    for lever in results["levers"]:
        print(f"| {lever['threads']} | {lever['batch']} | {lever['bf16']} | {lever['channels_last']} | "
              f"{lever['ms_per_slice_step']} | {lever['achieved_gflops']} |")
    print(f"\nload average start/end: {machine['load_avg_at_start']} / {machine['load_avg_at_end']}")


if __name__ == "__main__":
    main()
