"""DDP helpers: sharding, the single-process context, gloo ranks training as one process, a failing rank."""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from M2DiffSlicer.diffusion.gaussian_diffusion import GaussianDiffusion, get_beta_schedule
from M2DiffSlicer.model.config import model_config
from M2DiffSlicer.model.unet import build_model
from M2DiffSlicer.training.distributed import DistContext, init_from_env, shutdown
from M2DiffSlicer.training.config import TrainMode
from M2DiffSlicer.training.trainer import Trainer, loss_leaves_parameters_unused, regression_loss
from test_data import write_subjects
from test_trainer import tiny_config


def test_shards_are_disjoint_equal_in_length_and_cover_all_but_a_remainder():
    items = list(range(11))
    shards = [DistContext(rank=r, world_size=3).shard(items) for r in range(3)]
    assert [len(s) for s in shards] == [3, 3, 3]
    assert sorted(sum(shards, [])) == sorted(set(sum(shards, [])))
    assert len(set(sum(shards, []))) == 9


def test_a_single_process_context_leaves_model_and_numbers_alone():
    context = init_from_env("cpu")
    model = torch.nn.Linear(2, 2)
    assert (context.rank, context.world_size, context.is_main) == (0, 1, True)
    assert context.wrap(model) is model
    assert context.mean({"loss": 2.0}) == {"loss": 2.0}
    assert context.shard([1, 2, 3]) == [1, 2, 3]


def test_an_unknown_device_is_rejected():
    with pytest.raises(ValueError, match="device"):
        init_from_env("tpu")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Two networks whose DDP needs differ: M2Diff's diffusion loss reaches every parameter; a regression of the
# released-code variant (x0 = the PET decoder's) leaves the MRI decoder without a gradient.
_EQUIVALENCE_CASES = {"m2diff-diffusion": ("m2diff", True), "released-code-regression": ("released-code", False)}
# Per step, T1 present for each of the 4 samples; at step 1 rank 1's half has no T1 at all.
_T1_PRESENT = ([True, False, False, True], [True, True, False, False])


def _sgd_steps(context: DistContext, variant: str, diffusion_mode: bool) -> dict[str, torch.Tensor]:
    """Two SGD steps of a tiny network on fixed batches of 4; a rank of `context` takes its half of each."""
    torch.manual_seed(0)
    model = build_model(dataclasses.replace(model_config("tiny", variant), dropout=0.0))
    with torch.no_grad():  # away from IDDPM's zero-initialised heads, so every layer gets a gradient at once
        for p in model.parameters():
            p.normal_(0.0, 0.1)
    mode = TrainMode.DIFFUSION if diffusion_mode else TrainMode.REGRESSION
    network = context.wrap(model, loss_leaves_parameters_unused(mode, model.config))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    diffusion = GaussianDiffusion(get_beta_schedule("linear", 100), variance=model.config.variance.value)
    part = slice(2 * context.rank, 2 * context.rank + 2) if context.distributed else slice(None)
    for step, present in enumerate(_T1_PRESENT):
        g = torch.Generator().manual_seed(step)
        target, ld_pet, t1, noise = (torch.randn(4, 1, 16, 16, generator=g)[part] for _ in range(4))
        cond = {"ld_pet": ld_pet, "t1": t1, "t1_present": torch.tensor(present)[part]}
        if diffusion_mode:
            t = torch.randint(0, 100, (4,), generator=g)[part]
            loss = diffusion.training_losses(network, target, t, cond, noise=noise)["loss"].mean()
        else:
            loss = regression_loss(network, target, cond, g)["loss"].mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.state_dict()


def _ddp_worker(rank: int, world_size: int, port: int, data_dir: str, out: str, result_dir: str) -> None:
    """One rank of the two-rank job both DDP tests read: a Trainer run, then the SGD cases of _sgd_steps."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    context = init_from_env("cpu", timeout_s=30.0)  # a rank left waiting in a collective fails instead of hanging
    trainer = Trainer(tiny_config(Path(data_dir), out, steps=4, log_interval=2, val_interval=4,
                                  checkpoint_interval=4), context)
    initial = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    batches = [[(r.volume, r.orientation.value, r.index) for r in b] for b in trainer._epoch(0)]
    for _ in trainer.run():
        pass
    sgd = {name: _sgd_steps(context, *case) for name, case in _EQUIVALENCE_CASES.items()}
    torch.save({"initial": initial, "final": trainer.model.state_dict(), "batches": batches, "sgd": sgd},
               Path(result_dir) / f"rank{rank}.pt")
    shutdown(context)


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> tuple[Path, list[dict]]:
    """(run folder, each rank's results) of one two-rank gloo job (_ddp_worker); spawned once for the module."""
    root = tmp_path_factory.mktemp("ddp")
    data_dir = root / "data"
    data_dir.mkdir()
    write_subjects(data_dir, count=3, drfs=(100,))
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(data_dir), str(root / "run"), str(root)), nprocs=2, join=True)
    return root / "run", [torch.load(root / f"rank{r}.pt", weights_only=True) for r in range(2)]


def test_two_gloo_processes_keep_identical_replicas_that_learn_from_different_batches(two_ranks):
    run, results = two_ranks
    final0, final1 = results[0]["final"], results[1]["final"]
    for key in final0:
        torch.testing.assert_close(final0[key], final1[key], rtol=0, atol=1e-6, msg=key)
    assert any(not torch.equal(results[0]["initial"][k], final0[k]) for k in final0)
    # Each rank trained on its own half of the epoch's batches.
    batches0, batches1 = results[0]["batches"], results[1]["batches"]
    assert len(batches0) == len(batches1) > 0
    assert not {tuple(map(tuple, b)) for b in batches0} & {tuple(map(tuple, b)) for b in batches1}
    # Only the main rank wrote the run folder.
    assert (run / "checkpoints" / "state.pt").is_file()
    assert len((run / "log.jsonl").read_text().splitlines()) == 2


def test_two_ranks_on_halves_of_a_batch_train_as_one_process_on_the_whole_batch(two_ranks):
    ranks = [result["sgd"] for result in two_ranks[1]]
    for name, case in _EQUIVALENCE_CASES.items():
        alone = _sgd_steps(DistContext(), *case)
        for key, value in alone.items():
            # DDP averages the two half-batch gradients in float32, in another order than one backward over the
            # batch: rounding differences of ~1e-7 relative, times lr 0.05; a missing average would differ by ~lr.
            for rank in ranks:
                torch.testing.assert_close(rank[name][key], value, rtol=1e-5, atol=1e-6, msg=f"{name} {key}")


# Run by torchrun as a real `m2diff train` job whose Trainer fails on rank 1 while rank 0 waits in a collective
# (as it would in DDP's gradient all-reduce) that rank 1 never joins.
_FAILING_RANK_JOB = """
import signal
import sys
import torch
import torch.distributed as dist
import M2DiffSlicer.training.trainer as trainer_module
from M2DiffSlicer.cli import main

signal.alarm(90)  # safety net: a rank that hangs is gone after 90 s, not after the 30-minute timeout

class TrainerFailingOnRank1:
    def __init__(self, config, context):
        if context.rank == 1:
            raise RuntimeError("rank 1 fails")
        dist.all_reduce(torch.ones(1))

trainer_module.Trainer = TrainerFailingOnRank1
sys.exit(main(["train", "--device", "cpu", "--out", sys.argv[1]]))
"""


def test_a_failing_rank_ends_the_whole_torchrun_job_within_seconds(tmp_path):
    script, log = tmp_path / "job.py", tmp_path / "job.log"
    script.write_text(_FAILING_RANK_JOB)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
               "--master-port", str(_free_port()), str(script), str(tmp_path / "run")]
    started = time.monotonic()
    with open(log, "wb") as output:  # a file, not a pipe: a hung rank cannot block reading it
        job = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        try:
            job.wait(timeout=45)
        except subprocess.TimeoutExpired:
            job.terminate()  # torchrun passes SIGTERM on to its ranks
            job.wait(timeout=30)
            pytest.fail("the job was still running 45 s after start: the other rank waited for the failed one")
    elapsed = time.monotonic() - started
    assert job.returncode != 0
    assert "rank 1 fails" in log.read_text()
    # Starting three Python processes that import torch: 7 s on 2 idle cores, 14 s under a load of 8. A stall
    # would last the process group's 30-minute timeout.
    assert elapsed < 30, f"{elapsed:.1f} s"
