"""Training loop: config round-trips, the loss falls, exact resumption, checkpoints, both training modes."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from M2DiffSlicer.diffusion.loss_weights import LossWeights
from M2DiffSlicer.errors import BadInputError
from M2DiffSlicer.model import checkpoint
from M2DiffSlicer.training.trainer import Trainer, train
from M2DiffSlicer.training.config import TrainConfig, add_config_arguments, config_from_arguments
from test_data import TINY_GRID, write_subjects


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_subjects")
    write_subjects(root, count=3, drfs=(100,))
    return root


def tiny_config(data_dir, out, **overrides) -> TrainConfig:
    values = dict(
        data=[str(data_dir)], out=str(out), cache=str(data_dir.parent / "cache"), val_subjects=["sub-0003"],
        preset="tiny", grid_spacing_mm=TINY_GRID.spacing_mm, grid_size=list(TINY_GRID.size_xyz),
        batch_size=4, lr=2e-3, ema_rate=0.9, steps=6, log_interval=2, val_interval=3, checkpoint_interval=3,
        val_timesteps=[100, 500], val_batches=2, threads=1, seed=1,
    )
    values.update(overrides)
    return TrainConfig(**values)


def test_train_config_round_trips_through_json_and_generated_flags():
    config = TrainConfig(data=["a", "b"], drf=[20, 100], flip=False, lr=3e-4, mode="regression")
    assert TrainConfig.from_json(config.to_json()) == config
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    assert config_from_arguments(parser.parse_args([])) == TrainConfig()
    args = parser.parse_args(["--data", "a", "b", "--drf", "20", "100", "--no-flip", "--lr", "3e-4",
                              "--mode", "regression"])
    assert config_from_arguments(args) == config


@pytest.mark.parametrize(
    "field, value", [("mode", "gan"), ("ema_rate", 1.0), ("t1_dropout", 1.5), ("batch_size", 0),
                     ("val_timesteps", [1000]), ("lr", 0.0), ("lr_decay_start", 10000), ("lr_decay_start", -1)]
)
def test_a_bad_train_option_raises_value_error_naming_it(field, value):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{field: value})


@pytest.mark.parametrize(
    "field, value", [("schedule", "quadratic"), ("orientations", ["oblique"]), ("cache_dtype", "int8")]
)
def test_a_bad_choice_is_refused_when_the_trainer_starts(tmp_path, field, value):
    # Checked before any data is read: the data folder does not even exist.
    with pytest.raises(ValueError, match=field):
        Trainer(TrainConfig(data=[str(tmp_path / "missing")], out=str(tmp_path / "run"), **{field: value}))


def test_unknown_json_fields_are_rejected():
    with pytest.raises(ValueError, match="learning_rate"):
        TrainConfig.from_json(json.dumps({"learning_rate": 1.0}))


@pytest.mark.parametrize("mode, patch_size", [("diffusion", 0), ("regression", 0), ("regression", 8)])
def test_training_loss_falls_on_a_tiny_dataset(data_dir, tmp_path, mode, patch_size):
    steps = 20
    # ema_rate 0: the validated EMA model is the trained model, so validate() measures this run's progress on
    # fixed batches, timesteps and noise (training losses at random t jump by 100x between steps). Validation
    # always runs on whole slices, so with patches it also shows that what patches taught carries to slices.
    config = tiny_config(data_dir, tmp_path, mode=mode, steps=steps, log_interval=1, val_interval=0,
                         checkpoint_interval=steps, t1_dropout=0.0, ema_rate=0.0, patch_size=patch_size)
    trainer = Trainer(config)
    before = trainer.validate()["val_loss"]
    losses = [record["loss"] for record in trainer.run()]
    after = trainer.validate()["val_loss"]
    assert after < 0.5 * before, (before, after)
    assert np.median(losses[-8:]) < np.median(losses[:8])
    lines = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == list(range(1, steps + 1))
    assert {"loss", "lr", "step_s", "elapsed_s", "grad_norm"} <= set(lines[0])


def test_a_vanishing_learning_rate_leaves_the_validation_loss_where_it_was(data_dir, tmp_path):
    # The control of the test above: its comparison must fail when the optimiser does not learn.
    config = tiny_config(data_dir, tmp_path, steps=20, log_interval=20, val_interval=0, checkpoint_interval=20,
                         lr=1e-12, t1_dropout=0.0, ema_rate=0.0)
    trainer = Trainer(config)
    before = trainer.validate()["val_loss"]
    for _ in trainer.run():
        pass
    assert trainer.validate()["val_loss"] == pytest.approx(before, rel=1e-3)


@pytest.mark.parametrize("lr_decay_start", [0, 2])
def test_resuming_continues_exactly_like_an_uninterrupted_run(data_dir, tmp_path, lr_decay_start):
    straight = train(tiny_config(data_dir, tmp_path / "straight", steps=6, lr_decay_start=lr_decay_start))
    train(tiny_config(data_dir, tmp_path / "resumed", steps=3))  # the first part may run without the decay
    resumed = Trainer(tiny_config(data_dir, tmp_path / "resumed", steps=6, lr_decay_start=lr_decay_start))
    assert resumed.step == 3
    for _ in resumed.run():
        pass
    assert resumed.step == straight.step == 6
    for name in ("model", "ema"):
        a, b = getattr(straight, name).state_dict(), getattr(resumed, name).state_dict()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=f"{name}.{key}")
    initial = Trainer(tiny_config(data_dir, tmp_path / "fresh", steps=6)).model.state_dict()
    assert any(not torch.equal(initial[k], straight.model.state_dict()[k]) for k in initial)
    log = [json.loads(line) for line in (tmp_path / "resumed" / "log.jsonl").read_text().splitlines()]
    straight_log = [json.loads(line) for line in (tmp_path / "straight" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [r["step"] for r in straight_log]
    assert log[-1]["val_loss"] == pytest.approx(straight_log[-1]["val_loss"], rel=1e-5)


def test_the_learning_rate_falls_linearly_to_zero_from_lr_decay_start(data_dir, tmp_path):
    trainer = train(tiny_config(data_dir, tmp_path, steps=6, lr_decay_start=2, log_interval=1, val_interval=0))
    logged = [json.loads(line)["lr"] for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    # Step s (logged as s + 1) runs at lr * (6 - s) / 4 once s >= 2.
    assert logged == pytest.approx([2e-3, 2e-3, 2e-3, 1.5e-3, 1e-3, 0.5e-3])
    assert trainer.learning_rate(6) == 0.0


def test_resuming_with_another_architecture_is_refused(data_dir, tmp_path):
    train(tiny_config(data_dir, tmp_path, steps=1))
    with pytest.raises(ValueError, match="variant"):
        Trainer(tiny_config(data_dir, tmp_path, steps=2, variant="v1"))


def test_best_weights_follow_the_validation_x0_error_not_the_training_objective(data_dir, tmp_path):
    trainer = Trainer(tiny_config(data_dir, tmp_path))
    best = tmp_path / "checkpoints" / "best.pt"
    trainer.save({"val_loss": 1.0, "val_mse": 0.5, "val_mse_mri_free": 0.6})
    trainer.step = 1
    trainer.save({"val_loss": 0.1, "val_mse": 0.9, "val_mse_mri_free": 0.9})  # lower objective, worse x0
    assert checkpoint.load_checkpoint(best)[2]["step"] == 0
    trainer.step = 2
    trainer.save({"val_loss": 2.0, "val_mse": 0.4, "val_mse_mri_free": 0.9})
    assert checkpoint.load_checkpoint(best)[2]["step"] == 2


def test_validation_uses_fixed_noise_and_writes_the_best_ema_weights(data_dir, tmp_path):
    trainer = train(tiny_config(data_dir, tmp_path, steps=3, val_interval=3))
    assert trainer.validate() == trainer.validate()
    validation = trainer.validate()
    assert min(validation.values()) > 0
    assert validation["val_mse"] != validation["val_mse_mri_free"]  # the MRI-free path is scored separately
    model, _, meta = checkpoint.load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    for key, value in trainer.ema.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value)
    assert meta["val_loss"] == pytest.approx(validation["val_loss"])
    state = torch.load(tmp_path / "checkpoints" / "state.pt", weights_only=True)
    assert state["step"] == 3 and TrainConfig.from_json(state["config"]) == trainer.config


def test_held_out_subjects_must_exist_and_leave_something_to_train(data_dir, tmp_path):
    with pytest.raises(ValueError, match="sub-0099"):
        Trainer(tiny_config(data_dir, tmp_path, val_subjects=["sub-0099"]))
    with pytest.raises(ValueError, match="nothing is left"):
        Trainer(tiny_config(data_dir, tmp_path, val_subjects=["sub-0001", "sub-0002", "sub-0003"]))


def test_a_patch_size_the_network_cannot_halve_down_is_refused(data_dir, tmp_path):
    with pytest.raises(ValueError, match="patch_size=7 must be a multiple of 2"):
        Trainer(tiny_config(data_dir, tmp_path, patch_size=7))


def test_every_dose_trains_on_each_subjects_listed_levels_and_validates_on_the_drf_list(tmp_path):
    folders = write_subjects(tmp_path / "data", count=3, drfs=(4, 37.42, 100))
    for folder in folders:
        (folder / "meta.json").write_text('{"drfs": {"ld_drf004": 4, "ld_drf037p42": 37.42}, "held_out": null}')
    trainer = Trainer(tiny_config(tmp_path / "data", tmp_path / "run", cache=str(tmp_path / "cache"),
                                  every_dose=True, drf=[100]))
    assert sorted({s.drf for s in trainer.train_set.subjects}) == [4.0, 37.42]
    assert [s.drf for s in trainer.val_set.subjects] == [100.0]


def test_subjects_of_a_held_out_test_configuration_are_never_trained_on(tmp_path):
    folders = write_subjects(tmp_path / "data", count=3, drfs=(100,))
    (folders[1] / "meta.json").write_text('{"drfs": {"ld_drf100": 100}, "held_out": "scanner=sharp,fov=brain"}')
    with pytest.raises(BadInputError, match=r"sub-0002 \(scanner=sharp,fov=brain\)"):
        Trainer(tiny_config(tmp_path / "data", tmp_path / "run", cache=str(tmp_path / "cache")))


def test_a_truncated_process_trains_only_its_timesteps(data_dir, tmp_path):
    trainer = Trainer(tiny_config(data_dir, tmp_path, truncate_at=50, val_timesteps=[0, 49]))
    seen = []
    network = trainer.network

    def recording(x_t, t, *args):
        seen.extend(int(s) for s in t)
        return network(x_t, t, *args)

    trainer.network = recording
    for _ in range(3):
        trainer.train_step()
    assert seen and max(seen) < 50
    with pytest.raises(ValueError, match="val_timesteps"):
        tiny_config(data_dir, tmp_path, truncate_at=50, val_timesteps=[100])
    with pytest.raises(ValueError, match="truncate_at"):
        tiny_config(data_dir, tmp_path, truncate_at=1001)


def test_resuming_with_another_truncation_is_refused(data_dir, tmp_path):
    train(tiny_config(data_dir, tmp_path, steps=1))
    with pytest.raises(ValueError, match="truncate_at"):
        Trainer(tiny_config(data_dir, tmp_path, steps=2, truncate_at=600))


def test_init_weights_start_a_new_run_and_a_resumed_run_keeps_its_own(data_dir, tmp_path):
    source = train(tiny_config(data_dir, tmp_path / "source", steps=2, val_interval=0))
    weights = tmp_path / "source" / "checkpoints" / "ema.pt"
    tuned = Trainer(tiny_config(data_dir, tmp_path / "tuned", steps=2, seed=5, init_weights=str(weights)))
    fresh = Trainer(tiny_config(data_dir, tmp_path / "fresh", steps=2, seed=5)).model.state_dict()
    for name in ("model", "ema"):
        for key, value in source.ema.state_dict().items():
            torch.testing.assert_close(getattr(tuned, name).state_dict()[key], value, msg=f"{name}.{key}")
    assert any(not torch.equal(fresh[k], v) for k, v in source.ema.state_dict().items())
    for _ in tuned.run():
        pass
    resumed = Trainer(tiny_config(data_dir, tmp_path / "tuned", steps=3, seed=5, init_weights=str(weights)))
    assert resumed.step == 2
    for key, value in tuned.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[key], value, msg=key)
    with pytest.raises(ValueError, match="init_weights"):
        Trainer(tiny_config(data_dir, tmp_path / "other", variant="v1", init_weights=str(weights)))


@pytest.mark.parametrize("variant", ["m2diff", "v2"])
def test_diffusion_started_from_regression_weights_begins_at_the_regression_prediction(data_dir, tmp_path, variant):
    source = train(tiny_config(data_dir, tmp_path / "regression", steps=2, val_interval=0, mode="regression",
                               variant=variant))
    weights = tmp_path / "regression" / "checkpoints" / "ema.pt"
    tuned = Trainer(tiny_config(data_dir, tmp_path / "diffusion", init_weights=str(weights), variant=variant))
    target, cond = tuned.train_set.collate(tuned._epoch(0)[0], np.random.default_rng(0), 0.0, False)
    zeros_t = torch.zeros(target.shape[0], dtype=torch.long)
    tuned.model.eval()
    source.ema.eval()
    with torch.no_grad():
        regression = source.ema(torch.zeros_like(target), zeros_t, cond["ld_pet"], cond["t1"], cond["t1_present"])
        noisy = tuned.model(torch.randn_like(target), zeros_t, cond["ld_pet"], cond["t1"], cond["t1_present"])
    torch.testing.assert_close(noisy["x0"], regression["x0"])
    # Without the zeroing, the untrained x_t weights would pass the noise through.
    assert not torch.equal(source.ema.pet_encoder.input_blocks[0][0].weight[:, 0],
                           tuned.model.pet_encoder.input_blocks[0][0].weight[:, 0])


def test_m2diff_train_and_the_api_train_the_same_default_loss_the_papers(data_dir, tmp_path):
    defaults = TrainConfig()
    assert (defaults.vlb_weight, defaults.output_loss_weight) == (LossWeights().vlb, LossWeights().output) == (0, 0)
    assert Trainer(tiny_config(data_dir, tmp_path)).diffusion.loss_weights == LossWeights()


def test_vlb_weight_scales_the_variance_terms_of_the_training_loss(data_dir, tmp_path):
    for weight in (0.0, 2.0):
        trainer = Trainer(tiny_config(data_dir, tmp_path / str(weight), vlb_weight=weight))
        terms = trainer.train_step()
        assert terms["vb_pet"] != 0
        task = 0.4 * (terms["mse_pet"] + terms["mse_mri"]) + 0.2 * terms["consistency"]
        assert terms["loss"] == pytest.approx(task + weight * (terms["vb_pet"] + terms["vb_mri"]), rel=1e-5)
    with pytest.raises(ValueError, match="vlb_weight"):
        tiny_config(data_dir, tmp_path, vlb_weight=-1.0)


def test_a_residual_run_started_from_direct_weights_begins_at_the_ld_pet(data_dir, tmp_path):
    train(tiny_config(data_dir, tmp_path / "direct", steps=2, val_interval=0))
    weights = tmp_path / "direct" / "checkpoints" / "ema.pt"
    tuned = Trainer(tiny_config(data_dir, tmp_path / "residual", init_weights=str(weights), residual=True))
    assert tuned.model_config.residual
    target, cond = tuned.train_set.collate(tuned._epoch(0)[0], np.random.default_rng(0), 0.0, False)
    tuned.model.eval()
    with torch.no_grad():
        out = tuned.model(torch.randn_like(target), torch.full((target.shape[0],), 500), cond["ld_pet"], cond["t1"],
                          cond["t1_present"])
    torch.testing.assert_close(out["x0"], cond["ld_pet"])
    for _ in tuned.run():
        pass
    residual_weights = tmp_path / "residual" / "checkpoints" / "ema.pt"
    assert checkpoint.load_checkpoint(residual_weights)[1].residual
    with pytest.raises(ValueError, match="residual=False"):  # a residual network cannot start a direct one
        Trainer(tiny_config(data_dir, tmp_path / "back", init_weights=str(residual_weights)))
