"""One training step's parts: the EMA update, gradient clipping, and which parameters the loss leaves unused."""

from __future__ import annotations

import pytest
import torch

from M2DiffSlicer.diffusion.gaussian_diffusion import GaussianDiffusion, get_beta_schedule
from M2DiffSlicer.model.config import model_config
from M2DiffSlicer.model.presets import VARIANTS
from M2DiffSlicer.model.unet import build_model
from M2DiffSlicer.training.config import TrainMode
from M2DiffSlicer.training.trainer import Trainer, loss_leaves_parameters_unused, regression_loss
from test_trainer import data_dir, tiny_config  # noqa: F401 (data_dir is a fixture)


def _parameters(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def test_the_ema_after_two_steps_is_the_closed_form_of_its_update(data_dir, tmp_path):
    # ema_s = d ema_{s-1} + (1 - d) p_s from ema_0 = p_0, so after two steps ema = d^2 p0 + d(1-d) p1 + (1-d) p2.
    d = 0.75
    trainer = Trainer(tiny_config(data_dir, tmp_path, ema_rate=d, val_interval=0))
    p0 = _parameters(trainer.model)
    trainer.train_step()
    p1 = _parameters(trainer.model)
    trainer.train_step()
    p2 = _parameters(trainer.model)
    ema = dict(trainer.ema.named_parameters())
    assert any(not torch.equal(p1[k], p2[k]) for k in p2)
    for key in p0:
        expected = d * d * p0[key] + d * (1 - d) * p1[key] + (1 - d) * p2[key]
        torch.testing.assert_close(ema[key], expected, rtol=1e-5, atol=1e-7, msg=key)


def _norms_seen_by_the_optimizer(trainer: Trainer, steps: int) -> tuple[list[float], list[float]]:
    """(gradient norm logged per step, before clipping; total gradient norm when optimizer.step() runs)."""
    seen = []
    step = trainer.optimizer.step

    def recording_step(*args, **kwargs):
        grads = [p.grad for p in trainer.model.parameters() if p.grad is not None]
        seen.append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))))
        return step(*args, **kwargs)

    trainer.optimizer.step = recording_step
    logged = [trainer.train_step()["grad_norm"] for _ in range(steps)]
    return logged, seen


def test_the_optimizer_sees_the_gradient_clipped_to_the_configured_norm(data_dir, tmp_path):
    max_norm = 1e-3  # far below the tiny network's gradient norms (~0.1-10), so every step is clipped
    logged, seen = _norms_seen_by_the_optimizer(
        Trainer(tiny_config(data_dir, tmp_path / "clipped", grad_clip=max_norm, val_interval=0)), steps=2)
    assert min(logged) > 10 * max_norm
    assert seen == pytest.approx([max_norm] * 2, rel=1e-3)
    # grad_clip 0 disables clipping: the optimizer gets the gradient as computed.
    logged, seen = _norms_seen_by_the_optimizer(
        Trainer(tiny_config(data_dir, tmp_path / "unclipped", grad_clip=0.0, val_interval=0)), steps=2)
    assert seen == pytest.approx(logged, rel=1e-5)


def _parameters_without_gradient(mode: TrainMode, variant: str) -> list[str]:
    config = model_config("tiny", variant)
    model = build_model(config)
    with torch.no_grad():  # away from IDDPM's zero-initialised heads, so a used parameter's gradient is not None
        for p in model.parameters():
            p.normal_(0.0, 0.1)
    x = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    cond = {"ld_pet": x, "t1": x, "t1_present": torch.tensor([True, False])}
    if mode == TrainMode.DIFFUSION:
        diffusion = GaussianDiffusion(get_beta_schedule("linear", 100), variance=config.variance.value)
        terms = diffusion.training_losses(model, x, torch.tensor([5, 50]), cond)
    else:
        terms = regression_loss(model, x, cond, torch.Generator())
    terms["loss"].mean().backward()
    return [name for name, p in model.named_parameters() if p.grad is None]


@pytest.mark.parametrize("mode", list(TrainMode))
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_ddp_looks_for_unused_parameters_exactly_when_the_loss_leaves_some(mode, variant):
    unused = _parameters_without_gradient(mode, variant)
    assert loss_leaves_parameters_unused(mode, model_config("tiny", variant)) == bool(unused), unused
