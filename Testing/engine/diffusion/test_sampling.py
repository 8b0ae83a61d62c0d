"""The progressive sampler: DDIM/ancestral steps, determinism under a seed, MRI-free mode, with the tiny network."""

import math

import pytest
import torch

from M2DiffSlicer.model.config import model_config
from M2DiffSlicer.model.unet import build_model
from M2DiffSlicer.diffusion.respace import create_diffusion
from M2DiffSlicer.diffusion.sampling import sample, sample_progressive

SHAPE = (2, 1, 16, 16)


class OracleModel:
    """Returns the true x0 whatever it is given: the reverse process then must land exactly on x0."""

    def __init__(self, x0):
        self.x0 = x0

    def __call__(self, x_t, t, ld_pet, t1, t1_present):
        return {"x0": self.x0, "x0_pet": self.x0, "x0_mri": None, "var_pet": torch.zeros_like(self.x0),
                "var_mri": None}


def _oracle_case():
    gen = torch.Generator().manual_seed(0)
    x0 = torch.rand(SHAPE, generator=gen, dtype=torch.float64) * 2
    x_T = torch.randn(SHAPE, generator=gen, dtype=torch.float64)
    cond = {"ld_pet": torch.zeros(SHAPE, dtype=torch.float64), "t1": None, "t1_present": None}
    return x0, x_T, cond


@pytest.mark.parametrize("respacing", [None, "ddim10", "trailing5"])
def test_ddim_eta0_with_an_oracle_follows_the_deterministic_path_and_lands_on_x0(respacing):
    """With the true x0, eta = 0 keeps eps = (x_T - sqrt(ab_T) x0) / sqrt(1 - ab_T) fixed, so every state is
    sqrt(ab_s) x0 + sqrt(1 - ab_s) eps (DDIM eq. 12 with sigma = 0); over all T = 1000 steps when respacing is None."""
    x0, x_T, cond = _oracle_case()
    diffusion = create_diffusion(variance="fixed_large", respacing=respacing)
    ab = diffusion.alphas_cumprod
    eps = (x_T - math.sqrt(ab[-1]) * x0) / math.sqrt(1 - ab[-1])
    steps = list(sample_progressive(diffusion, OracleModel(x0), SHAPE, cond, method="ddim", x_T=x_T))
    assert [s["step"] for s in steps] == list(range(1, diffusion.num_timesteps + 1))
    assert all(s["total"] == diffusion.num_timesteps for s in steps)
    for s, index in zip(steps[:-1], reversed(range(diffusion.num_timesteps - 1))):
        expected = math.sqrt(ab[index]) * x0 + math.sqrt(1 - ab[index]) * eps
        assert torch.allclose(s["x_t"], expected, atol=1e-9), s["step"]
    assert torch.allclose(steps[-1]["x_t"], x0, atol=1e-12)
    assert torch.equal(steps[-1]["x0"], x0)


class RecordingOracle(OracleModel):
    def __init__(self, x0):
        super().__init__(x0)
        self.timesteps = []

    def __call__(self, x_t, t, *args):
        self.timesteps.append(int(t[0]))
        return super().__call__(x_t, t, *args)


class RecordingStates(RecordingOracle):
    def __init__(self, x0):
        super().__init__(x0)
        self.states = []

    def __call__(self, x_t, t, *args):
        self.states.append(x_t.clone())
        return super().__call__(x_t, t, *args)


def test_trailing_respacing_queries_the_model_from_pure_noise_down():
    """One trailing step asks the model at t = T - 1 (pure noise), never at t = 0 with pure noise."""
    x0, x_T, cond = _oracle_case()
    for steps, expected in ((1, [999]), (4, [999, 749, 499, 249])):
        oracle = RecordingOracle(x0)
        diffusion = create_diffusion(variance="fixed_large", respacing=f"trailing{steps}")
        final = sample(diffusion, diffusion.wrap_model(oracle), SHAPE, cond, method="ddim", x_T=x_T)
        assert oracle.timesteps == expected
        assert torch.equal(final, x0)


def test_ancestral_sampling_with_an_oracle_ends_exactly_on_x0():
    x0, _, cond = _oracle_case()
    diffusion = create_diffusion(variance="learned_range", respacing="10")
    final = sample(diffusion, OracleModel(x0), SHAPE, cond, method="ancestral",
                   generator=torch.Generator().manual_seed(1))
    assert torch.allclose(final, x0, atol=1e-12)


def test_ancestral_steps_add_the_models_variance():
    """One ancestral step from x_t with an oracle: x_{t-1} - posterior mean is noise with the model variance."""
    x0 = torch.zeros(4000, 1, 4, 4, dtype=torch.float64)
    cond = {"ld_pet": x0, "t1": None}
    diffusion = create_diffusion(variance="learned_range", respacing="2")  # steps 0 and 999
    x_T = torch.zeros_like(x0)
    first = next(sample_progressive(diffusion, OracleModel(x0), x0.shape, cond, method="ancestral", x_T=x_T,
                                    generator=torch.Generator().manual_seed(2)))
    # v = 0: log variance halfway between the posterior's and beta's.
    expected_var = math.exp(0.5 * (math.log(diffusion.betas[1]) + diffusion.posterior_log_variance_clipped[1]))
    n = first["x_t"].numel()
    assert abs(first["x_t"].var().item() - expected_var) < 5 * expected_var * math.sqrt(2.0 / (n - 1))
    assert abs(first["x_t"].mean().item()) < 5 * math.sqrt(expected_var / n)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = build_model(model_config("tiny")).eval()
    # The decoders' output convs start at zero (IDDPM); perturb them so that x0 and v depend on the inputs.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    gen = torch.Generator().manual_seed(5)
    cond = {"ld_pet": torch.rand(SHAPE, generator=gen), "t1": torch.rand(SHAPE, generator=gen),
            "t1_present": torch.tensor([True, True])}
    return model, cond


@pytest.mark.parametrize("method, eta", [("ancestral", 0.0), ("ddim", 0.0), ("ddim", 1.0)])
def test_sampling_is_identical_for_one_seed_and_differs_between_seeds(tiny, method, eta):
    model, cond = tiny
    diffusion = create_diffusion(respacing="4")

    def run(seed):
        return sample(diffusion, model, SHAPE, cond, method=method, eta=eta,
                      generator=torch.Generator().manual_seed(seed))

    first, again, other = run(11), run(11), run(12)
    assert torch.isfinite(first).all()
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)


def test_mri_free_sampling_runs_and_equals_the_pet_path(tiny):
    """t1=None samples the same as a T1 marked absent for every sample (the PET path alone), and differs from
    sampling with the T1."""
    model, cond = tiny
    diffusion = create_diffusion(respacing="ddim4")

    def run(c):
        return sample(diffusion, model, SHAPE, c, method="ddim", generator=torch.Generator().manual_seed(3))

    mri_free = run({"ld_pet": cond["ld_pet"], "t1": None})
    absent = run(dict(cond, t1_present=torch.tensor([False, False])))
    with_t1 = run(cond)
    assert torch.isfinite(mri_free).all()
    assert torch.allclose(mri_free, absent, atol=1e-6)
    assert not torch.allclose(mri_free, with_t1, atol=1e-4)


def test_each_yielded_x0_is_the_models_final_estimate(tiny):
    model, cond = tiny
    diffusion = create_diffusion(respacing="3")
    x_T = torch.randn(SHAPE, generator=torch.Generator().manual_seed(4))
    x_t = x_T
    for step in sample_progressive(diffusion, model, SHAPE, cond, method="ddim", x_T=x_T):
        t = torch.full((SHAPE[0],), diffusion.timestep_map[diffusion.num_timesteps - step["step"]])
        with torch.no_grad():
            expected = model(x_t, t, cond["ld_pet"], cond["t1"], cond["t1_present"])["x0"]
        assert torch.allclose(step["x0"], expected, atol=1e-6)
        x_t = step["x_t"]


def test_sampling_runs_for_the_fixed_variance_released_code_variant():
    torch.manual_seed(0)
    model = build_model(model_config("tiny", "released-code")).eval()
    cond = {"ld_pet": torch.rand(SHAPE), "t1": torch.rand(SHAPE)}
    diffusion = create_diffusion(variance=model.config.variance, respacing="3")
    out = sample(diffusion, model, SHAPE, cond, method="ancestral", generator=torch.Generator().manual_seed(0))
    assert out.shape == SHAPE and torch.isfinite(out).all()


def test_sampling_leaves_gradient_mode_alone_between_steps(tiny):
    model, cond = tiny
    steps = sample_progressive(create_diffusion(respacing="2"), model, SHAPE, cond)
    next(steps)
    assert torch.is_grad_enabled()


@pytest.mark.parametrize("kwargs, message", [
    (dict(method="euler"), "method"),
    (dict(method="ancestral", eta=0.5), "eta"),
    (dict(eta=-1.0), "eta"),
    (dict(x_T=torch.zeros(1, 1, 16, 16)), "x_T"),
])
def test_bad_sampler_options_raise_value_errors_naming_them(kwargs, message):
    x0, _, cond = _oracle_case()
    with pytest.raises(ValueError, match=message):
        next(sample_progressive(create_diffusion(respacing="2"), OracleModel(x0), SHAPE, cond, **kwargs))


def test_a_truncated_process_starts_from_the_ld_pet_diffused_to_its_last_step():
    """x_T ~ q(x_79 | x_0 = LD-PET) drawn with the generator's first draw; the model is asked at t = 79, then 39."""
    ld_pet = torch.rand(SHAPE, generator=torch.Generator().manual_seed(3), dtype=torch.float64) + 0.5
    cond = {"ld_pet": ld_pet, "t1": None, "t1_present": None}
    oracle = RecordingStates(torch.zeros(SHAPE, dtype=torch.float64))
    diffusion = create_diffusion(variance="fixed_large", respacing="trailing2", truncate_at=80)
    sample(diffusion, diffusion.wrap_model(oracle), SHAPE, cond, generator=torch.Generator().manual_seed(7))
    assert oracle.timesteps == [79, 39]
    alpha_bar = math.prod(1 - (1e-4 + (0.02 - 1e-4) * s / 999) for s in range(80))  # the linear schedule to t = 79
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    expected = math.sqrt(alpha_bar) * ld_pet + math.sqrt(1 - alpha_bar) * noise
    torch.testing.assert_close(oracle.states[0], expected, rtol=0, atol=1e-9)

