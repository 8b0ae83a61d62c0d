"""Inference's fast modes: bfloat16 autocast (not float16) and channels-last, each close to float32."""

from __future__ import annotations

import pytest
import torch

from M2DiffSlicer.enhance.slice_inference import _RecordingModel
from M2DiffSlicer.model.config import model_config
from M2DiffSlicer.model.unet import build_model

CPU = torch.device("cpu")


class _AutocastProbe(torch.nn.Module):
    """Records the autocast state the network is called under and returns the contract's dict."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[bool, torch.dtype]] = []

    def forward(self, x_t, t, ld_pet, t1=None, t1_present=None):
        self.seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
        return {"x0": x_t.bfloat16(), "x0_pet": x_t, "x0_mri": None, "var_pet": None, "var_mri": None}


def _inputs(height: int = 32, width: int = 32) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    x_t = torch.randn(2, 1, height, width, generator=g)
    ld_pet, t1 = (torch.rand(2, 1, height, width, generator=g) for _ in range(2))
    return x_t, torch.tensor([10, 900]), ld_pet, t1, torch.tensor([True, False])


@pytest.mark.parametrize("bf16", [True, False])
def test_the_fast_mode_calls_the_network_under_bfloat16_autocast_and_returns_float32(bf16):
    probe = _AutocastProbe()
    out = _RecordingModel(probe, CPU, bf16=bf16, channels_last=False)(*_inputs())
    enabled, dtype = probe.seen[0]
    assert enabled == bf16
    if bf16:
        assert dtype == torch.bfloat16  # float16's 5 exponent bits overflow where bfloat16 keeps float32's range
    assert out["x0"].dtype == torch.float32  # the diffusion maths stays in float32


@pytest.fixture(scope="module")
def tiny_network() -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(model_config("tiny")).eval()
    with torch.no_grad():  # away from IDDPM's zero-initialised heads, so the output depends on every layer
        for p in model.parameters():
            p.normal_(0.0, 0.1)
    return model


@pytest.mark.parametrize("bf16, channels_last, tolerance", [
    # Channels-last changes only the order of float32 reductions: relative error ~1e-6 (measured 2.7e-6).
    (False, True, 2e-5),
    # bfloat16 keeps 8 significant bits (relative rounding 2**-9 per operation); over the tiny network's ~20
    # layers the relative L2 error measured 1.9e-2 (2.6e-3 for the shipped small model, whose outputs are larger).
    (True, False, 5e-2),
    (True, True, 5e-2),
])
def test_bf16_and_channels_last_outputs_are_close_to_float32(tiny_network, bf16, channels_last, tolerance):
    inputs = _inputs()
    with torch.no_grad():
        reference = _RecordingModel(tiny_network, CPU, bf16=False, channels_last=False)(*inputs)["x0"]
        network = tiny_network.to(memory_format=torch.channels_last) if channels_last else tiny_network
        fast = _RecordingModel(network, CPU, bf16=bf16, channels_last=channels_last)(*inputs)["x0"]
    tiny_network.to(memory_format=torch.contiguous_format)
    assert fast.dtype == torch.float32 and fast.is_contiguous()
    error = float((fast - reference).norm() / reference.norm())
    assert error < tolerance, error
    if bf16:
        assert error > 1e-4, "the network ran in float32: no bfloat16 rounding"
