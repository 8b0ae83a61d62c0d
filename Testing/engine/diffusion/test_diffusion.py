"""Diffusion identities (forward process, posterior, variance, respacing) and the M2Diff training loss."""

import math

import numpy as np
import pytest
import torch

from M2DiffSlicer.diffusion.gaussian_diffusion import GaussianDiffusion, LossWeights, get_beta_schedule, process_betas
from M2DiffSlicer.diffusion.respace import SpacedDiffusion, create_diffusion, space_timesteps

T = 1000


def closed_form_alpha_bar(betas, t):
    """prod_{s <= t} (1 - beta_s), computed independently of the diffusion tables; 1 for t = -1."""
    return math.prod(1.0 - float(b) for b in betas[: t + 1])


class FixedOutputModel:
    """Stand-in network that returns given decoder outputs and records how it was called."""

    def __init__(self, x0_pet, x0_mri=None, var_pet=None, var_mri=None):
        self.outputs = dict(x0_pet=x0_pet, x0_mri=x0_mri, var_pet=var_pet, var_mri=var_mri)
        self.calls = []

    def __call__(self, x_t, t, ld_pet, t1, t1_present):
        self.calls.append(dict(x_t=x_t, t=t, ld_pet=ld_pet, t1=t1, t1_present=t1_present))
        x0 = self.outputs["x0_pet"] if self.outputs["x0_mri"] is None else (
            self.outputs["x0_pet"] + self.outputs["x0_mri"]) / 2
        return dict(x0=x0, **self.outputs)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("step", [0, 300, 999])
def test_q_sample_moments_match_the_closed_form(schedule, step):
    diffusion = GaussianDiffusion(get_beta_schedule(schedule, T))
    n = 200_000
    x0 = torch.full((n, 1, 1, 1), 0.7, dtype=torch.float64)
    t = torch.full((n,), step, dtype=torch.long)
    x_t = diffusion.q_sample(x0, t, generator=torch.Generator().manual_seed(1))
    alpha_bar = closed_form_alpha_bar(diffusion.betas, step)
    mean, var = math.sqrt(alpha_bar) * 0.7, 1.0 - alpha_bar
    # 5 standard errors of the sample mean and of the sample variance (Gaussian: var * sqrt(2 / (n - 1))).
    assert abs(x_t.mean().item() - mean) < 5 * math.sqrt(var / n)
    assert abs(x_t.var().item() - var) < 5 * var * math.sqrt(2.0 / (n - 1))
    q_mean, q_var = diffusion.q_mean_variance(x0[:1], t[:1])
    assert q_mean.item() == pytest.approx(mean, rel=1e-12)
    assert q_var.item() == pytest.approx(var, rel=1e-12)


def test_q_sample_with_given_noise_is_the_reparameterised_formula():
    diffusion = GaussianDiffusion(get_beta_schedule("linear", T))
    x0 = torch.linspace(-1, 2, 32, dtype=torch.float64).reshape(2, 1, 4, 4)
    noise = torch.linspace(1, -1, 32, dtype=torch.float64).reshape(2, 1, 4, 4)
    t = torch.tensor([10, 700])
    x_t = diffusion.q_sample(x0, t, noise=noise)
    for i, step in enumerate(t.tolist()):
        ab = closed_form_alpha_bar(diffusion.betas, step)
        assert torch.allclose(x_t[i], math.sqrt(ab) * x0[i] + math.sqrt(1 - ab) * noise[i], atol=1e-12)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("step", [1, 2, 500, 999])
def test_posterior_mean_and_variance_equal_the_ddpm_closed_forms(schedule, step):
    diffusion = GaussianDiffusion(get_beta_schedule(schedule, T))
    betas = diffusion.betas
    x0 = torch.tensor([0.3, -0.8], dtype=torch.float64).reshape(2, 1, 1, 1)
    x_t = torch.tensor([1.1, 0.2], dtype=torch.float64).reshape(2, 1, 1, 1)
    t = torch.full((2,), step, dtype=torch.long)
    mean, var, log_var = diffusion.q_posterior_mean_variance(x0, x_t, t)

    ab, ab_prev, beta = closed_form_alpha_bar(betas, step), closed_form_alpha_bar(betas, step - 1), betas[step]
    # DDPM eq. 7.
    expected_mean = math.sqrt(ab_prev) * beta / (1 - ab) * x0 + math.sqrt(1 - beta) * (1 - ab_prev) / (1 - ab) * x_t
    expected_var = (1 - ab_prev) / (1 - ab) * beta
    assert torch.allclose(mean, expected_mean, rtol=1e-10)
    assert torch.allclose(var, torch.full_like(var, expected_var), rtol=1e-10)
    assert torch.allclose(log_var, torch.full_like(var, math.log(expected_var)), rtol=1e-10)


def test_posterior_at_t0_is_x0_with_log_variance_clipped_to_t1():
    diffusion = GaussianDiffusion(get_beta_schedule("linear", T))
    x0 = torch.full((1, 1, 2, 2), 0.4, dtype=torch.float64)
    x_t = torch.full((1, 1, 2, 2), -3.0, dtype=torch.float64)
    mean, var, log_var = diffusion.q_posterior_mean_variance(x0, x_t, torch.tensor([0]))
    assert torch.allclose(mean, x0, atol=1e-12)
    assert torch.all(var == 0)
    assert torch.allclose(log_var, torch.full_like(log_var, math.log(diffusion.posterior_variance[1])))


@pytest.mark.parametrize("step", [1, 400, 999])
def test_posterior_is_the_conditional_of_the_forward_process(step):
    """Draw x_{t-1} ~ q(.|x0), then x_t ~ q(x_t|x_{t-1}): x_{t-1} - posterior_mean is zero-mean with the
    posterior variance and uncorrelated with x_t."""
    diffusion = GaussianDiffusion(get_beta_schedule("cosine", T))
    n = 200_000
    gen = torch.Generator().manual_seed(3)
    x0 = torch.full((n, 1, 1, 1), 0.5, dtype=torch.float64)
    x_prev = diffusion.q_sample(x0, torch.full((n,), step - 1), generator=gen)
    beta = diffusion.betas[step]
    x_t = math.sqrt(1 - beta) * x_prev + math.sqrt(beta) * torch.randn(x0.shape, generator=gen, dtype=torch.float64)
    mean, var, _ = diffusion.q_posterior_mean_variance(x0, x_t, torch.full((n,), step))
    residual = (x_prev - mean).flatten()
    post_var = var[0].item()
    assert abs(residual.mean().item()) < 5 * math.sqrt(post_var / n)
    assert abs(residual.var().item() - post_var) < 5 * post_var * math.sqrt(2.0 / (n - 1))
    correlation = torch.corrcoef(torch.stack([residual, x_t.flatten()]))[0, 1].item()
    assert abs(correlation) < 5 / math.sqrt(n)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("respacing", ["10", "ddim10", "5,5,5", "1", "1000"])
def test_respaced_betas_reproduce_the_original_alphas_cumprod_at_kept_steps(schedule, respacing):
    base = GaussianDiffusion(get_beta_schedule(schedule, T))
    spaced = create_diffusion(schedule=schedule, respacing=respacing)
    kept = sorted(space_timesteps(T, respacing))
    assert spaced.timestep_map == kept
    # rtol 1e-8: the cosine schedule's last alpha_bar (~2e-9) passes through 1 - ratio, losing ~1e-16 / 1e-7.
    assert np.allclose(spaced.alphas_cumprod, base.alphas_cumprod[kept], rtol=1e-8, atol=0)


def test_space_timesteps_follow_the_documented_striding():
    assert space_timesteps(T, "ddim10") == set(range(0, 1000, 100))
    assert space_timesteps(T, "10") == {round(i * 999 / 9) for i in range(10)}
    sections = sorted(space_timesteps(T, "5,5,5"))
    assert len(sections) == 15 and sections[0] == 0 and sections[-1] == 999
    assert space_timesteps(T, [2, 3]) == space_timesteps(T, "2,3")


@pytest.mark.parametrize("bad", ["ddim600", "abc", "0", "", "600,600"])
def test_space_timesteps_rejects_impossible_requests_naming_the_argument(bad):
    with pytest.raises(ValueError, match="section_counts"):
        space_timesteps(T, bad)


def test_spaced_diffusion_calls_the_model_with_original_timesteps():
    diffusion = create_diffusion(respacing="ddim10", variance="fixed_large")
    model = FixedOutputModel(torch.zeros(2, 1, 4, 4))
    cond = {"ld_pet": torch.zeros(2, 1, 4, 4), "t1": None, "t1_present": None}
    diffusion.p_mean_variance(model, torch.zeros(2, 1, 4, 4), torch.tensor([0, 9]), cond)
    diffusion.training_losses(model, torch.zeros(2, 1, 4, 4), torch.tensor([3, 9]), cond)
    assert model.calls[0]["t"].tolist() == [0, 900]
    assert model.calls[1]["t"].tolist() == [300, 900]
    assert isinstance(diffusion, SpacedDiffusion)


def test_learned_range_variance_lies_between_posterior_variance_and_beta():
    diffusion = GaussianDiffusion(get_beta_schedule("linear", T), variance="learned_range")
    t = torch.arange(1, T)
    x_t = torch.zeros(T - 1, 1, 2, 2, dtype=torch.float64)
    v = torch.rand(x_t.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2 - 1
    var = diffusion.model_log_variance(v, t, x_t).exp()
    low = torch.from_numpy(diffusion.posterior_variance[1:]).view(-1, 1, 1, 1)
    high = torch.from_numpy(diffusion.betas[1:]).view(-1, 1, 1, 1)
    assert torch.all(var >= low * (1 - 1e-12)) and torch.all(var <= high * (1 + 1e-12))
    ends = diffusion.model_log_variance(torch.stack([-torch.ones_like(x_t), torch.ones_like(x_t)]).flatten(0, 1),
                                        torch.cat([t, t]), torch.cat([x_t, x_t])).exp()
    assert torch.allclose(ends[: T - 1], low.expand_as(x_t), rtol=1e-10)
    assert torch.allclose(ends[T - 1:], high.expand_as(x_t), rtol=1e-10)


def test_fixed_large_variance_is_beta_after_the_first_step():
    diffusion = GaussianDiffusion(get_beta_schedule("cosine", T), variance="fixed_large")
    x_t = torch.zeros(3, 1, 2, 2, dtype=torch.float64)
    var = diffusion.model_log_variance(None, torch.tensor([0, 1, 999]), x_t).exp()[:, 0, 0, 0]
    expected = [diffusion.posterior_variance[1], diffusion.betas[1], diffusion.betas[999]]
    assert np.allclose(var.numpy(), expected, rtol=1e-12)


def test_p_mean_variance_uses_the_models_x0_in_the_posterior_and_clips_it_when_asked():
    diffusion = GaussianDiffusion(get_beta_schedule("linear", T), variance="learned_range")
    x0_pet = torch.linspace(-2, 3, 32, dtype=torch.float64).reshape(2, 1, 4, 4)
    model = FixedOutputModel(x0_pet, var_pet=torch.zeros_like(x0_pet))
    x_t = torch.ones_like(x0_pet)
    t = torch.tensor([5, 600])
    cond = {"ld_pet": x_t, "t1": None}
    out = diffusion.p_mean_variance(model, x_t, t, cond, clip_x0=(0.0, 1.0))
    clipped = x0_pet.clamp(0, 1)
    assert torch.equal(out["x0"], clipped)
    assert torch.allclose(out["mean"], diffusion.q_posterior_mean_variance(clipped, x_t, t)[0])
    mid = 0.5 * (np.log(diffusion.betas[t]) + diffusion.posterior_log_variance_clipped[t])
    assert np.allclose(out["log_variance"][:, 0, 0, 0].numpy(), mid)


def test_p_mean_variance_averages_decoder_variances_only_where_t1_is_present():
    diffusion = GaussianDiffusion(get_beta_schedule("linear", T), variance="learned_range")
    shape = (2, 1, 2, 2)
    model = FixedOutputModel(torch.zeros(shape), torch.zeros(shape), var_pet=-torch.ones(shape),
                             var_mri=torch.ones(shape))
    t = torch.tensor([100, 100])
    cond = {"ld_pet": torch.zeros(shape), "t1": torch.zeros(shape), "t1_present": torch.tensor([True, False])}
    log_var = diffusion.p_mean_variance(model, torch.zeros(shape), t, cond)["log_variance"][:, 0, 0, 0]
    mid = 0.5 * (math.log(diffusion.betas[100]) + diffusion.posterior_log_variance_clipped[100])
    assert log_var.tolist() == pytest.approx([mid, diffusion.posterior_log_variance_clipped[100]], rel=1e-6)


# ---- training loss on a hand-checked 2x1x4x4 example ------------------------------------------------------


def _loss_example(variance="learned_range", two_decoders=True, t1_present=(True, True), vlb=1.0):
    gen = torch.Generator().manual_seed(7)
    shape = (2, 1, 4, 4)
    x0, noise, x0_pet, x0_mri = (torch.randn(shape, generator=gen, dtype=torch.float64) for _ in range(4))
    var_pet, var_mri = (torch.rand(shape, generator=gen, dtype=torch.float64) * 2 - 1 for _ in range(2))
    model = FixedOutputModel(x0_pet, x0_mri if two_decoders else None, var_pet, var_mri if two_decoders else None)
    # vlb 1 (IDDPM's hybrid loss, not the default) so that the VLB terms show in the loss.
    diffusion = GaussianDiffusion(get_beta_schedule("linear", T), variance=variance, loss_weights=LossWeights(vlb=vlb))
    t = torch.tensor([0, 500])  # t = 0 exercises the Gaussian NLL, t = 500 the KL
    cond = {"ld_pet": torch.zeros(shape), "t1": torch.zeros(shape), "t1_present": torch.tensor(t1_present)}
    terms = diffusion.training_losses(model, x0, t, cond, noise=noise)
    return terms, diffusion, locals()


def _hand_vb(diffusion, x0, noise, x0_pred, v, i, step):
    """One sample's VLB term in bits per dim, from the closed forms with numpy."""
    betas = diffusion.betas
    ab = closed_form_alpha_bar(betas, step)
    x0_i, pred_i, v_i = x0[i].numpy(), x0_pred[i].numpy(), v[i].numpy()
    x_t = math.sqrt(ab) * x0_i + math.sqrt(1 - ab) * noise[i].numpy()
    ab_prev = closed_form_alpha_bar(betas, step - 1)
    c1, c2 = math.sqrt(ab_prev) * betas[step] / (1 - ab), math.sqrt(1 - betas[step]) * (1 - ab_prev) / (1 - ab)
    post_var_1 = (1 - closed_form_alpha_bar(betas, 0)) / (1 - closed_form_alpha_bar(betas, 1)) * betas[1]
    post_var = (1 - ab_prev) / (1 - ab) * betas[step] if step > 0 else post_var_1
    frac = (v_i + 1) / 2
    log_var = frac * math.log(betas[step]) + (1 - frac) * math.log(post_var)
    model_mean = c1 * pred_i + c2 * x_t
    if step == 0:
        nll = 0.5 * (math.log(2 * math.pi) + log_var + (x0_i - model_mean) ** 2 / np.exp(log_var))
        return nll.mean() / math.log(2)
    true_mean = c1 * x0_i + c2 * x_t
    kl = 0.5 * (-1 + log_var - math.log(post_var) + post_var / np.exp(log_var)
                + (true_mean - model_mean) ** 2 / np.exp(log_var))
    return kl.mean() / math.log(2)


def test_each_loss_term_matches_a_hand_computation():
    terms, diffusion, ex = _loss_example()
    x0, x0_pet, x0_mri = ex["x0"].numpy(), ex["x0_pet"].numpy(), ex["x0_mri"].numpy()
    mse_pet = ((x0 - x0_pet) ** 2).mean(axis=(1, 2, 3))
    mse_mri = ((x0 - x0_mri) ** 2).mean(axis=(1, 2, 3))
    consistency = ((x0_pet - x0_mri) ** 2).mean(axis=(1, 2, 3))
    vb_pet, vb_mri = (
        [_hand_vb(diffusion, ex["x0"], ex["noise"], ex[pred], ex[v], i, step) for i, step in enumerate([0, 500])]
        for pred, v in (("x0_pet", "var_pet"), ("x0_mri", "var_mri"))
    )
    assert np.allclose(terms["mse_pet"].numpy(), mse_pet, rtol=1e-10)
    assert np.allclose(terms["mse_mri"].numpy(), mse_mri, rtol=1e-10)
    assert np.allclose(terms["consistency"].numpy(), consistency, rtol=1e-10)
    assert np.allclose(terms["vb_pet"].numpy(), vb_pet, rtol=1e-8)
    assert np.allclose(terms["vb_mri"].numpy(), vb_mri, rtol=1e-8)
    expected = 0.4 * (mse_pet + mse_mri) + 0.2 * consistency + np.add(vb_pet, vb_mri)
    assert np.allclose(terms["loss"].numpy(), expected, rtol=1e-8)


def test_fixed_variance_loss_is_the_weighted_mse_without_vlb_terms():
    terms, _, ex = _loss_example(variance="fixed_large")
    x0, x0_pet, x0_mri = ex["x0"], ex["x0_pet"], ex["x0_mri"]
    expected = (0.4 * (((x0 - x0_pet) ** 2) + ((x0 - x0_mri) ** 2)) + 0.2 * (x0_pet - x0_mri) ** 2).mean((1, 2, 3))
    assert "vb_pet" not in terms and "vb_mri" not in terms
    assert torch.allclose(terms["loss"], expected, rtol=1e-10)


def test_mri_free_samples_count_only_the_pet_decoder():
    terms, diffusion, ex = _loss_example(t1_present=(True, False))
    full, _, _ = _loss_example(t1_present=(True, True))
    assert terms["mse_mri"][1] == 0 and terms["consistency"][1] == 0 and terms["vb_mri"][1] == 0
    assert torch.allclose(terms["loss"][1], 0.4 * terms["mse_pet"][1] + terms["vb_pet"][1])
    assert torch.allclose(terms["loss"][0], full["loss"][0])


def test_t1_none_makes_every_sample_mri_free():
    terms, diffusion, ex = _loss_example(t1_present=(True, True))
    ex["cond"]["t1"] = None
    none_terms = diffusion.training_losses(ex["model"], ex["x0"], ex["t"], ex["cond"], noise=ex["noise"])
    assert torch.allclose(none_terms["loss"], 0.4 * terms["mse_pet"] + terms["vb_pet"])


@pytest.mark.parametrize("two_decoders", [True, False])
def test_the_default_loss_is_the_papers_eq_9_without_vlb_terms(two_decoders):
    terms, diffusion, ex = _loss_example(two_decoders=two_decoders)
    default = GaussianDiffusion(diffusion.betas, variance=diffusion.variance)
    paper = default.training_losses(ex["model"], ex["x0"], ex["t"], ex["cond"], noise=ex["noise"])
    assert default.loss_weights == LossWeights(task=0.4, consistency=0.2, vlb=0.0, output=0.0)
    assert torch.all(paper["vb_pet"] != 0)  # the terms are computed (and logged), they just do not count
    if two_decoders:
        expected = 0.4 * (paper["mse_pet"] + paper["mse_mri"]) + 0.2 * paper["consistency"]
    else:
        expected = paper["mse_pet"]
    assert torch.allclose(paper["loss"], expected, rtol=1e-12)


def test_single_decoder_loss_is_its_mse_plus_vlb():
    terms, diffusion, ex = _loss_example(two_decoders=False)
    assert set(terms) == {"loss", "mse_pet", "vb_pet"}
    assert torch.allclose(terms["loss"], terms["mse_pet"] + terms["vb_pet"])


def test_vlb_trains_the_variance_but_not_the_x0_estimate():
    shape = (2, 1, 4, 4)
    x0_pet = torch.randn(shape, requires_grad=True)
    var_pet = torch.zeros(shape, requires_grad=True)
    diffusion = GaussianDiffusion(get_beta_schedule("linear", T))
    cond = {"ld_pet": torch.zeros(shape), "t1": None}
    model = FixedOutputModel(x0_pet, var_pet=var_pet)
    terms = diffusion.training_losses(model, torch.randn(shape), torch.tensor([0, 300]), cond)
    terms["vb_pet"].sum().backward()
    assert x0_pet.grad is None
    assert var_pet.grad is not None and var_pet.grad.abs().sum() > 0


def test_loss_weights_are_configurable_and_round_trip():
    weights = LossWeights(task=1.0, consistency=0.5, vlb=0.0)
    assert LossWeights.from_dict(weights.to_dict()) == weights
    with pytest.raises(ValueError, match="lambda3"):
        LossWeights.from_dict({"lambda3": 1.0})
    _, diffusion, ex = _loss_example()
    weighted = GaussianDiffusion(diffusion.betas, loss_weights=weights)
    terms = weighted.training_losses(ex["model"], ex["x0"], ex["t"], ex["cond"], noise=ex["noise"])
    assert torch.allclose(terms["loss"], terms["mse_pet"] + terms["mse_mri"] + 0.5 * terms["consistency"])


@pytest.mark.parametrize("two_decoders", [True, False])
def test_output_weight_adds_the_mse_of_the_output_sampling_uses(two_decoders):
    terms, diffusion, ex = _loss_example(two_decoders=two_decoders)
    weighted = GaussianDiffusion(diffusion.betas, variance=diffusion.variance, loss_weights=LossWeights(vlb=1.0, output=2.0))
    with_output = weighted.training_losses(ex["model"], ex["x0"], ex["t"], ex["cond"], noise=ex["noise"])
    mean = (ex["x0_pet"] + ex["x0_mri"]) / 2 if two_decoders else ex["x0_pet"]
    mse_output = ((ex["x0"] - mean) ** 2).mean((1, 2, 3))
    assert "mse_output" not in terms
    assert torch.allclose(with_output["mse_output"], mse_output)
    assert torch.allclose(with_output["loss"], terms["loss"] + 2.0 * mse_output)


@pytest.mark.parametrize("argument, kwargs", [
    ("variance", dict(variance="learned")),
    ("schedule", dict(schedule="quadratic")),
])
def test_unknown_options_raise_a_value_error_naming_the_argument(argument, kwargs):
    with pytest.raises(ValueError, match=argument):
        create_diffusion(**kwargs)


@pytest.mark.parametrize("variant", ["m2diff", "released-code", "v1", "v2", "v3", "v4", "v5"])
def test_training_losses_with_the_tiny_network_are_finite_per_sample_and_differentiable(variant):
    from M2DiffSlicer.model.config import model_config
    from M2DiffSlicer.model.unet import build_model

    torch.manual_seed(0)
    model = build_model(model_config("tiny", variant))
    diffusion = create_diffusion(variance=model.config.variance)
    shape = (3, 1, 16, 16)
    cond = {"ld_pet": torch.rand(shape), "t1": torch.rand(shape), "t1_present": torch.tensor([True, False, True])}
    terms = diffusion.training_losses(model, torch.rand(shape), torch.tensor([0, 10, 999]), cond)
    assert all(value.shape == (3,) and torch.isfinite(value).all() for value in terms.values())
    assert ("vb_pet" in terms) == (model.config.variance.value == "learned_range")
    assert ("mse_mri" in terms) == (model.config.num_decoders == 2)
    terms["loss"].mean().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_a_truncated_process_keeps_the_first_steps_of_the_schedule():
    full = get_beta_schedule("linear", T)
    cut = process_betas("linear", T, truncate_at=80)
    np.testing.assert_array_equal(cut, full[:80])
    np.testing.assert_array_equal(process_betas("linear", T), full)  # 0 keeps the whole process
    spaced = create_diffusion(respacing="trailing2", truncate_at=80)
    assert spaced.timestep_map == [39, 79]
    assert spaced.alphas_cumprod[-1] == pytest.approx(closed_form_alpha_bar(full, 79), rel=1e-12)
    for bad in (-1, T + 1):
        with pytest.raises(ValueError, match="truncate_at"):
            process_betas("linear", T, truncate_at=bad)
