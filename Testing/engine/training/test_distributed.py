"""DDP helpers: sharding, the single-process context, and two gloo processes training in lockstep."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from M2DiffSlicer.training.distributed import DistContext, init_from_env, shutdown
from M2DiffSlicer.training.trainer import Trainer
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


def _ddp_worker(rank: int, world_size: int, port: int, data_dir: str, out: str, result_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    context = init_from_env("cpu")
    trainer = Trainer(tiny_config(Path(data_dir), out, steps=4, log_interval=2, val_interval=4,
                                  checkpoint_interval=4), context)
    initial = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    batches = [[(r.volume, r.orientation.value, r.index) for r in b] for b in trainer._epoch(0)]
    for _ in trainer.run():
        pass
    torch.save({"initial": initial, "final": trainer.model.state_dict(), "batches": batches},
               Path(result_dir) / f"rank{rank}.pt")
    shutdown(context)


def test_two_gloo_processes_keep_identical_replicas_that_learn_from_different_batches(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    write_subjects(data_dir, count=3, drfs=(100,))
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(data_dir), str(tmp_path / "run"), str(tmp_path)), nprocs=2,
             join=True)
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    final0, final1 = results[0]["final"], results[1]["final"]
    for key in final0:
        torch.testing.assert_close(final0[key], final1[key], rtol=0, atol=1e-6, msg=key)
    assert any(not torch.equal(results[0]["initial"][k], final0[k]) for k in final0)
    # Each rank trained on its own half of the epoch's batches.
    batches0, batches1 = results[0]["batches"], results[1]["batches"]
    assert len(batches0) == len(batches1) > 0
    assert not {tuple(map(tuple, b)) for b in batches0} & {tuple(map(tuple, b)) for b in batches1}
    # Only the main rank wrote the run folder.
    assert (tmp_path / "run" / "checkpoints" / "state.pt").is_file()
    assert len((tmp_path / "run" / "log.jsonl").read_text().splitlines()) == 2
