"""M2DiffNet, ModelConfig and presets: parameter counts, output contract, MRI-free mode, validation."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from M2DiffSlicer.cli import main
from M2DiffSlicer.model.checkpoint import load_checkpoint
from M2DiffSlicer.model.config import HFFMode, ModelConfig, model_config
from M2DiffSlicer.model.unet import build_model
from M2DiffSlicer.options import VarianceType
from M2DiffSlicer.model.presets import PRESETS, VARIANTS
from M2DiffSlicer.resources import resource_path

SINGLE_DECODER = {"v1", "v2", "v4"}


def count_parameters(config: ModelConfig) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in build_model(config).parameters())


def inputs(n: int = 3, height: int = 32, width: int = 48, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "x_t": torch.randn(n, 1, height, width, generator=g),
        "t": torch.randint(0, 1000, (n,), generator=g),
        "ld_pet": torch.rand(n, 1, height, width, generator=g),
        "t1": torch.rand(n, 1, height, width, generator=g),
    }


def tiny_model(variant: str = "m2diff", **overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    config = dataclasses.replace(model_config("tiny", variant), **overrides)
    model = build_model(config).eval()
    # IDDPM zero-initialises every residual output and the heads; randomise so the outputs depend on the inputs.
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.2)
    return model


def test_released_code_paper_preset_counts_268_99_million_parameters():
    count = count_parameters(model_config("paper", "released-code"))
    assert abs(count - 268.99e6) <= 0.005 * 268.99e6


def test_single_task_paper_preset_counts_the_papers_124_05_million_iddpm_parameters():
    count = count_parameters(model_config("paper", "v1"))
    assert abs(count - 124.05e6) <= 0.005 * 124.05e6


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_variant_returns_the_contract_shapes(variant):
    model = tiny_model(variant)
    batch = inputs(height=32, width=48)
    with torch.no_grad():
        out = model(**batch, t1_present=torch.tensor([True, False, True]))
    assert set(out) == {"x0", "x0_pet", "x0_mri", "var_pet", "var_mri"}
    shape = (3, 1, 32, 48)
    learned = model.config.variance == VarianceType.LEARNED_RANGE
    assert out["x0"].shape == shape and out["x0_pet"].shape == shape
    assert (out["x0_mri"] is None) == (variant in SINGLE_DECODER)
    if out["x0_mri"] is not None:
        assert out["x0_mri"].shape == shape
    assert (out["var_pet"] is not None) == learned
    assert (out["var_mri"] is not None) == (learned and variant not in SINGLE_DECODER)


@pytest.mark.parametrize("hff", ["proj", "concat", "none"])
@pytest.mark.parametrize("variance", ["learned_range", "fixed_large"])
def test_each_fusion_mode_and_variance_type_runs_on_non_square_slices(hff, variance):
    model = tiny_model(hff=hff, variance=variance)
    with torch.no_grad():
        out = model(**inputs(n=2, height=48, width=32))
    channels = 2 if variance == "learned_range" else 1
    assert model.config.out_channels == channels
    assert out["x0"].shape == (2, 1, 48, 32)
    assert (out["var_mri"] is None) == (variance == "fixed_large")
    torch.testing.assert_close(out["x0"], 0.5 * (out["x0_pet"] + out["x0_mri"]))


def test_released_code_output_is_the_pet_decoder_alone():
    model = tiny_model("released-code")
    with torch.no_grad():
        out = model(**inputs())
    assert torch.equal(out["x0"], out["x0_pet"])
    assert not torch.allclose(out["x0_pet"], out["x0_mri"])


@pytest.mark.parametrize("variant", ["m2diff", "released-code", "v2", "v3", "v4"])
def test_mri_free_samples_output_the_pet_path_and_leave_present_samples_unchanged(variant):
    model = tiny_model(variant)
    batch = inputs(n=4)
    present = torch.tensor([True, False, True, False])
    with torch.no_grad():
        full = model(**batch)
        mixed = model(**batch, t1_present=present)
        free = model(**{**batch, "t1": None})
        garbage_t1 = model(**{**batch, "t1": torch.where(present[:, None, None, None], batch["t1"], torch.nan)},
                           t1_present=present)
    torch.testing.assert_close(mixed["x0"][present], full["x0"][present])
    torch.testing.assert_close(mixed["x0"][~present], mixed["x0_pet"][~present])
    torch.testing.assert_close(free["x0"], free["x0_pet"])
    # An absent sample's result does not depend on its (ignored) T1, nor on how absence is signalled.
    torch.testing.assert_close(mixed["x0"][~present], free["x0"][~present])
    torch.testing.assert_close(garbage_t1["x0"], mixed["x0"])
    # ...and the T1 does matter where it is present.
    assert not torch.allclose(full["x0"][~present], free["x0"][~present])


@pytest.mark.parametrize("variant", ["m2diff", "released-code", "v3", "v4"])
def test_a_batch_without_any_t1_gives_what_the_mri_free_call_gives(variant):
    # The MRI encoder runs even when no sample has a T1; its zeroed features must equal skipping it (t1 None).
    model = tiny_model(variant)
    batch = inputs(n=2)
    with torch.no_grad():
        none_present = model(**batch, t1_present=torch.tensor([False, False]))
        free = model(**{**batch, "t1": None})
    for key, value in free.items():
        if value is not None:
            torch.testing.assert_close(none_present[key], value, rtol=0, atol=0, msg=key)


@pytest.mark.parametrize("variant", ["m2diff", "released-code", "v3"])
def test_every_parameter_gets_a_finite_gradient_even_when_no_sample_has_a_t1(variant):
    # DDP runs without find_unused_parameters: every parameter must be in the graph whatever t1_present holds,
    # and an absent sample's NaN placeholder T1 must not reach the gradients. (v4's single decoder never reads
    # E2's middle block, with or without T1: Testing/engine/training covers it.)
    model = tiny_model(variant).train()
    batch = inputs(n=2)
    out = model(**{**batch, "t1": torch.full_like(batch["t1"], torch.nan)}, t1_present=torch.tensor([False, False]))
    sum(value.sum() for value in out.values() if value is not None).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name


@pytest.mark.parametrize("variant", ["m2diff", "released-code", "v2", "v3", "v4"])
def test_the_forward_pass_never_reads_a_tensor_value_on_the_host(variant, monkeypatch):
    # On a GPU each such read (bool(), .item(), .tolist()) waits for the queued kernels: a sync per call.
    model = tiny_model(variant)
    batch = inputs(n=2)

    def host_read(*args, **kwargs):
        raise AssertionError("the forward pass read a tensor value on the host")

    for name in ("__bool__", "item", "tolist"):
        monkeypatch.setattr(torch.Tensor, name, host_read)
    with torch.no_grad():
        model(**batch, t1_present=torch.tensor([True, False]))
        model(**batch, t1_present=torch.tensor([False, False]))


def test_the_shipped_checkpoint_gives_the_outputs_recorded_before_the_mri_branch_always_ran():
    # Recorded with the earlier network, which skipped E2 for a batch without T1 (`present.any()`): loading is
    # unchanged and so are both modes. rtol 1e-5: float32 sums of 10^4 pixels in another thread count's order.
    model, _, _ = load_checkpoint(resource_path("Models", "m2diff-small-sim.pt"))
    g = torch.Generator().manual_seed(3)
    x_t = torch.randn(2, 1, 112, 96, generator=g)
    ld_pet, t1 = (torch.rand(2, 1, 112, 96, generator=g) for _ in range(2))
    t = torch.tensor([999, 500])
    with torch.no_grad():
        mixed = model(x_t, t, ld_pet, t1, torch.tensor([True, False]))["x0"].double().sum(dim=(1, 2, 3))
        free = model(x_t, t, ld_pet, None)["x0"].double().sum()
    torch.testing.assert_close(mixed, torch.tensor([5111.9584216699, 5232.579083412886], dtype=torch.float64),
                               rtol=1e-5, atol=0)
    torch.testing.assert_close(free, torch.tensor(10534.805365849286, dtype=torch.float64), rtol=1e-5, atol=0)


def test_pet_only_variant_ignores_the_t1():
    model = tiny_model("v1")
    batch = inputs()
    with torch.no_grad():
        with_t1 = model(**batch)
        without = model(**{**batch, "t1": None})
    torch.testing.assert_close(with_t1["x0"], without["x0"])


def test_asymmetric_variant_gives_the_decoders_different_dropout():
    model = build_model(model_config("tiny", "v5"))
    dropout = {name.split(".")[0]: m.p for name, m in model.named_modules() if isinstance(m, torch.nn.Dropout)}
    assert dropout["pet_decoder"] == PRESETS["tiny"]["dropout"] > 0
    assert dropout["mri_decoder"] == 0.0


def test_input_size_not_divisible_by_the_downsampling_raises_value_error():
    model = tiny_model()
    with pytest.raises(ValueError, match="divisible by 2"):
        model(**inputs(height=33, width=32))


def test_mismatched_condition_shape_raises_value_error():
    model = tiny_model()
    batch = inputs()
    with pytest.raises(ValueError, match="t1"):
        model(**{**batch, "t1": batch["t1"][:, :, :16]})


def test_t1_present_that_is_not_a_bool_vector_raises_value_error():
    model = tiny_model()
    with pytest.raises(ValueError, match="t1_present"):
        model(**inputs(), t1_present=torch.tensor([1, 0, 1]))


@pytest.mark.parametrize(
    "field, value",
    [
        ("hff", "sum"),
        ("model_channels", 0),
        ("norm_groups", 3),
        ("attention_ds", (64,)),
        ("num_heads", 3),
        ("dropout", 1.5),
        ("image_size", (31, 32)),
        ("num_decoders", 3),
        ("residual", "yes"),
    ],
)
def test_bad_config_raises_value_error_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        dataclasses.replace(model_config("tiny"), **{field: value})


def test_inconsistent_variant_switches_raise_value_error():
    with pytest.raises(ValueError, match="t1_input"):
        dataclasses.replace(model_config("tiny", "v1"), hff="proj")
    with pytest.raises(ValueError, match="num_decoders"):
        dataclasses.replace(model_config("tiny"), output="mean", num_decoders=1)


def test_unknown_preset_or_variant_raises_value_error():
    with pytest.raises(ValueError, match="preset"):
        model_config("huge")
    with pytest.raises(ValueError, match="variant"):
        model_config("tiny", "v9")


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_config_survives_a_json_round_trip(variant):
    config = model_config("small", variant)
    again = ModelConfig.from_json(config.to_json())
    assert again == config
    assert isinstance(again.hff, HFFMode) and isinstance(again.channel_mult, tuple)


def test_config_from_dict_rejects_unknown_fields():
    data = model_config("tiny").to_dict()
    with pytest.raises(ValueError, match="colour"):
        ModelConfig.from_dict({**data, "colour": "red"})


def test_info_command_prints_configuration_and_parameter_count(capsys):
    assert main(["info", "--preset", "paper", "--variant", "released-code"]) == 0
    out = capsys.readouterr().out
    assert "hff: concat" in out
    assert "parameters: 268.99 M (268,986,626)" in out


def test_a_timestep_block_without_forward_cannot_be_built():
    from M2DiffSlicer.model.nn import TimestepBlock

    class Incomplete(TimestepBlock):
        pass

    with pytest.raises(TypeError, match="abstract"):
        Incomplete()


@pytest.mark.parametrize("variant", ["m2diff", "v1"])
def test_a_residual_network_adds_its_decoders_output_to_the_ld_pet(variant):
    direct, residual = tiny_model(variant), tiny_model(variant, residual=True)  # same seed: the same weights
    x = inputs()
    with torch.no_grad():
        a, b = direct(**x), residual(**x)
        torch.testing.assert_close(b["x0"], a["x0"] + x["ld_pet"])
        torch.testing.assert_close(b["x0_pet"], a["x0_pet"] + x["ld_pet"])
        if a["var_pet"] is not None:
            torch.testing.assert_close(b["var_pet"], a["var_pet"])  # the variance output is not offset
        residual.zero_x0_output_()
        torch.testing.assert_close(residual(**x)["x0"], x["ld_pet"])
