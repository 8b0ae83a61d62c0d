"""Engine speed on this machine: training step time, inference time per slice-step and peak memory per preset.

Each preset runs in its own subprocess so that its peak resident memory (ru_maxrss) is its own. A training step is
the full M2Diff diffusion step of `m2diff train` (uniform t, multi-task + VLB loss, backward, gradient clipping,
Adam); an inference slice-step is one batched network evaluation divided by the batch size (a 10-step sampler
costs 10 of them per slice and orientation).

    python benchmarks/engine_speed.py                                   # small fully, paper briefly
    python benchmarks/engine_speed.py --threads 1                       # on a busy shared machine
    python benchmarks/engine_speed.py --presets small --json small.json
    python benchmarks/engine_speed.py --presets paper --train-iters 2 --infer-iters 2

Prints a Markdown table and writes the numbers as JSON (default: engine_speed.json).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

# Per preset: the slice shape it is made for, training batch, inference batch and default iteration counts.
SETTINGS = {
    "tiny": dict(shape=(32, 32), train_batch=8, infer_batch=16, train_iters=10, infer_iters=10),
    "small": dict(shape=(112, 96), train_batch=8, infer_batch=16, train_iters=10, infer_iters=10),
    # The paper preset (269 M parameters at 256 x 256) takes tens of seconds per step on a CPU: batch 1, few runs.
    "paper": dict(shape=(256, 256), train_batch=1, infer_batch=1, train_iters=2, infer_iters=2),
}


def _median_seconds(function, iterations: int) -> float:
    function()  # warm-up: allocator, first-call kernels
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def measure(preset: str, variant: str, train_iters: int, infer_iters: int, threads: int) -> dict:
    """Run one preset's measurements in this process and return them."""
    import torch

    if threads:
        torch.set_num_threads(threads)

    from M2DiffSlicer.model.config import model_config
    from M2DiffSlicer.model.unet import build_model

    settings = SETTINGS[preset]
    config = model_config(preset, variant)
    torch.manual_seed(0)
    model = build_model(config)
    h, w = settings["shape"]
    train_s = _train_step_seconds(model, config, settings, train_iters)
    infer_s = _infer_seconds(model, settings, infer_iters)
    return {
        "preset": preset,
        "variant": variant,
        "parameters_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "slice": f"{h}x{w}",
        "train_batch": settings["train_batch"],
        "train_step_s": train_s,
        "train_iters": train_iters,
        "infer_batch": settings["infer_batch"],
        "infer_s_per_slice_step": infer_s / settings["infer_batch"],
        "infer_iters": infer_iters,
        # Linux reports ru_maxrss in KiB.
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }


def _random_batch(n: int, shape: tuple[int, int]):
    """(x [n, 1, H, W], cond) of uniform noise, with T1 present in ~70 % of the samples."""
    import torch

    x = torch.rand(n, 1, *shape)
    cond = {"ld_pet": torch.rand(n, 1, *shape), "t1": torch.rand(n, 1, *shape), "t1_present": torch.rand(n) > 0.3}
    return x, cond


def _train_step_seconds(model, config, settings: dict, iterations: int) -> float:
    """Median seconds of one full diffusion training step (loss, backward, clipping, Adam)."""
    import torch

    from M2DiffSlicer.diffusion.gaussian_diffusion import GaussianDiffusion, get_beta_schedule

    diffusion = GaussianDiffusion(get_beta_schedule("linear"), variance=config.variance.value)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    x0, cond = _random_batch(settings["train_batch"], settings["shape"])

    def train_step():
        model.train()
        t = torch.randint(0, diffusion.num_timesteps, (x0.shape[0],))
        loss = diffusion.training_losses(model, x0, t, cond)["loss"].mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    seconds = _median_seconds(train_step, iterations)
    optimizer.zero_grad(set_to_none=True)
    return seconds


def _infer_seconds(model, settings: dict, iterations: int) -> float:
    """Median seconds of one batched network evaluation at t = 500 with the T1 present."""
    import torch

    x_t, cond = _random_batch(settings["infer_batch"], settings["shape"])
    cond["t1_present"] = torch.ones(x_t.shape[0], dtype=torch.bool)
    t = torch.full((x_t.shape[0],), 500, dtype=torch.long)
    model.eval()

    def infer_step():
        with torch.inference_mode():
            model(x_t, t, cond["ld_pet"], cond["t1"], cond["t1_present"])

    return _median_seconds(infer_step, iterations)


def markdown(results: list[dict]) -> str:
    """The results as a Markdown table."""
    lines = [
        "| preset | params (M) | slice | train batch | train step (s) | infer s / slice-step (batch) | peak RSS (GB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['preset']} ({r['variant']}) | {r['parameters_m']:.2f} | {r['slice']} | {r['train_batch']} | "
            f"{r['train_step_s']:.3f} | {r['infer_s_per_slice_step']:.4f} ({r['infer_batch']}) | "
            f"{r['peak_rss_gb']:.2f} |"
        )
    return "\n".join(lines)


def _measure_in_subprocess(preset: str, args: argparse.Namespace) -> dict:
    """`measure` of one preset in a fresh process (`--one`), so that its peak memory is its own."""
    command = [sys.executable, __file__, "--one", preset, "--variant", args.variant]
    for flag, value in (("--train-iters", args.train_iters), ("--infer-iters", args.infer_iters),
                        ("--threads", args.threads)):
        if value:
            command += [flag, str(value)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    result = json.loads(output.strip().splitlines()[-1])
    print(f"measured {preset}", file=sys.stderr)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["small", "paper"], choices=list(SETTINGS))
    parser.add_argument("--variant", default="m2diff")
    parser.add_argument("--train-iters", type=int, help="timed training steps (default: per preset)")
    parser.add_argument("--infer-iters", type=int, help="timed inference calls (default: per preset)")
    # On a shared machine more threads than idle cores make OpenMP barriers spin: pass 1 there.
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", default="engine_speed.json", help="where to write the results")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure this preset in this process
    args = parser.parse_args(argv)

    if args.one:
        settings = SETTINGS[args.one]
        result = measure(args.one, args.variant, args.train_iters or settings["train_iters"],
                         args.infer_iters or settings["infer_iters"], args.threads)
        print(json.dumps(result))
        return 0

    results = [_measure_in_subprocess(preset, args) for preset in args.presets]
    report = {"machine": platform.processor() or platform.machine(), "python": platform.python_version(),
              "results": results}
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
