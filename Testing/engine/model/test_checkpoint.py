"""Checkpoint round trip (float32 and float16 release weights), one read per load, every bad-checkpoint case."""

import builtins
import dataclasses
import fractions
import io
import json
from pathlib import Path

import pytest
import torch

from M2DiffSlicer.model.checkpoint import (
    FORMAT, CheckpointError, file_sha256, load_checkpoint, read_checkpoint, save_checkpoint,
)
from M2DiffSlicer.model.config import model_config
from M2DiffSlicer.model.unet import build_model
from M2DiffSlicer.errors import ModelError

SHAPE = (2, 1, 16, 16)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    config = model_config("tiny")
    model = build_model(config).eval()
    with torch.no_grad():  # the output convs start at zero; make every weight matter
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model, config


def _outputs(model):
    gen = torch.Generator().manual_seed(1)
    x_t, ld, t1 = (torch.randn(SHAPE, generator=gen) for _ in range(3))
    with torch.no_grad():
        return model(x_t, torch.tensor([10, 900]), ld, t1, None)["x0"]


def test_round_trip_restores_weights_config_and_meta_exactly(tiny, tmp_path):
    model, config = tiny
    path = tmp_path / "model.pt"
    sha = save_checkpoint(path, model, config, meta={"run": "test", "step": 3})
    assert sha == file_sha256(path)
    loaded, loaded_config, meta = load_checkpoint(path, expected_sha256=sha)
    assert loaded_config == config
    assert meta == {"run": "test", "step": 3}
    assert not loaded.training
    reference = model.state_dict()
    for name, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, reference[name]), name
    assert torch.equal(_outputs(loaded), _outputs(model))


def test_float16_release_weights_halve_the_file_and_load_as_float32_within_tolerance(tiny, tmp_path):
    model, config = tiny
    full, half = tmp_path / "full.pt", tmp_path / "half.pt"
    save_checkpoint(full, model, config)
    save_checkpoint(half, model, config, half=True)
    raw = torch.load(half, weights_only=True)
    assert all(t.dtype == torch.float16 for t in raw["state_dict"].values() if t.is_floating_point())
    assert half.stat().st_size < 0.6 * full.stat().st_size
    loaded, _, _ = load_checkpoint(half)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    for name, tensor in loaded.state_dict().items():
        # float16 keeps 11 significant bits: relative error <= 2**-11.
        assert torch.allclose(tensor, model.state_dict()[name], rtol=2**-11, atol=1e-7), name
    assert torch.allclose(_outputs(loaded), _outputs(model), atol=1e-2)


def test_saving_is_atomic_and_leaves_no_temporary_files(tiny, tmp_path):
    model, config = tiny
    path = tmp_path / "model.pt"
    path.write_bytes(b"previous")
    save_checkpoint(path, model, config)
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]
    assert torch.load(path, weights_only=True)["format"] == FORMAT


def _count_reads(monkeypatch) -> list[tuple[Path, str]]:
    """Record (resolved path, mode) of every open() for reading from now on (builtins.open and io.open)."""
    reads = []
    real_open = io.open

    def counting_open(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, Path)) and "r" in mode:
            reads.append((Path(file).resolve(), mode))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting_open)
    monkeypatch.setattr(io, "open", counting_open)
    return reads


def test_loading_with_a_sha256_reads_the_file_once_and_hashes_the_bytes_it_loads(tiny, tmp_path, monkeypatch):
    model, config = tiny
    path = tmp_path / "model.pt"
    reads = _count_reads(monkeypatch)
    sha = save_checkpoint(path, model, config)
    assert reads == []  # the sha256 comes from the bytes written, not from reading the file back
    loaded = read_checkpoint(path, expected_sha256=sha.upper())
    assert reads == [(path.resolve(), "rb")]
    assert loaded.sha256 == sha == file_sha256(path)
    assert torch.equal(_outputs(loaded.model), _outputs(model))


def _expect_error(path, match, **kwargs):
    with pytest.raises(CheckpointError, match=match) as info:
        load_checkpoint(path, **kwargs)
    assert isinstance(info.value, ModelError)
    assert str(path) in str(info.value)


def test_missing_file_is_reported(tmp_path):
    _expect_error(tmp_path / "absent.pt", "not found")


def test_truncated_file_is_reported_as_corrupt(tiny, tmp_path):
    model, config = tiny
    path = tmp_path / "model.pt"
    save_checkpoint(path, model, config)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    _expect_error(path, "corrupt or truncated")


def test_random_bytes_are_reported_as_corrupt(tmp_path):
    path = tmp_path / "noise.pt"
    path.write_bytes(bytes(range(256)) * 40)
    _expect_error(path, "corrupt or truncated")


def test_a_bare_state_dict_is_not_an_m2diff_checkpoint(tiny, tmp_path):
    model, _ = tiny
    path = tmp_path / "bare.pt"
    torch.save(model.state_dict(), path)
    _expect_error(path, "not an m2diff checkpoint")


def test_a_pickle_with_arbitrary_objects_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "payload": fractions.Fraction(1, 3)}, path)
    _expect_error(path, "not an m2diff checkpoint.*refused")


def test_another_format_version_is_reported(tiny, tmp_path):
    model, config = tiny
    path = tmp_path / "v2.pt"
    torch.save({"format": "m2diff-checkpoint-v2", "config": config.to_json(), "state_dict": {}, "meta": "{}"}, path)
    _expect_error(path, "unsupported checkpoint format 'm2diff-checkpoint-v2'")


@pytest.mark.parametrize("other, match", [
    (dict(variant="v3"), "architecture mismatch.*unexpected keys: fusion"),  # no HFF blocks in v3
    (dict(variant="released-code"), "architecture mismatch.*shape mismatches"),  # 1 output channel, wider skips
])
def test_weights_for_another_architecture_are_reported(tiny, tmp_path, other, match):
    model, _ = tiny
    path = tmp_path / "mismatch.pt"
    save_checkpoint(path, model, model_config("tiny", **other))
    _expect_error(path, match)


def test_a_tampered_file_fails_its_sha256(tiny, tmp_path):
    model, config = tiny
    path = tmp_path / "model.pt"
    sha = save_checkpoint(path, model, config)
    other = save_checkpoint(tmp_path / "other.pt", model, config, meta={"changed": True})
    (tmp_path / "other.pt").replace(path)  # a different, still well-formed file under the expected name
    _expect_error(path, f"sha256 mismatch.*expected {sha}, got {other}", expected_sha256=sha)


def test_an_invalid_config_entry_is_reported(tiny, tmp_path):
    model, config = tiny
    path = tmp_path / "badconfig.pt"
    bad = dict(config.to_dict(), hff="sideways")
    torch.save({"format": FORMAT, "config": json.dumps(bad), "state_dict": model.state_dict(), "meta": "{}"}, path)
    _expect_error(path, "invalid config.*hff")


# ---- model catalogue ------------------------------------------------------------------------------------------


def _entry(**overrides):
    entry = {"id": "tiny-test", "version": "0.1", "preset": "tiny", "variant": "m2diff", "file": "tiny-test.pt",
             "sha256": "0" * 64, "default": True, "training": {"steps": 1}, "metrics": {}}
    entry.update(overrides)
    return entry


@pytest.fixture
def resources(tmp_path, monkeypatch):
    """A private Resources/ folder with the real schema and a catalogue the test writes."""
    from M2DiffSlicer.resources import resource_path

    models = tmp_path / "Models"
    models.mkdir()
    (models / "models-schema.json").write_text(resource_path("Models", "models-schema.json").read_text())
    monkeypatch.setenv("M2DIFF_RESOURCES", str(tmp_path))

    def write(entries):
        (models / "models.json").write_text(json.dumps(entries))
        return models

    return write


def test_the_shipped_catalogue_follows_its_schema():
    import jsonschema

    from M2DiffSlicer.model.catalogue import load_catalogue
    from M2DiffSlicer.resources import resource_path

    schema = json.loads(resource_path("Models", "models-schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(json.loads(resource_path("Models", "models.json").read_text()), schema)
    load_catalogue()


def test_without_a_default_model_resolve_weights_says_to_install_or_pass_weights(resources):
    from M2DiffSlicer.model.catalogue import resolve_weights

    resources([_entry(default=False)])
    with pytest.raises(ModelError, match="no default model.*install weights or pass --weights"):
        resolve_weights(None)


def test_the_default_entry_resolves_to_its_file_and_sha256_and_loads(tiny, resources):
    from M2DiffSlicer.model.catalogue import default_entry, resolve_weights

    model, config = tiny
    models = resources([])
    sha = save_checkpoint(models / "tiny-test.pt", model, config, half=True)
    resources([_entry(id="other", file="other.pt", default=False, sha256="1" * 64), _entry(sha256=sha),
               _entry(id="second-default", sha256="2" * 64)])
    assert default_entry().id == "tiny-test"  # the first default wins
    path, expected = resolve_weights(None)
    assert (path, expected) == (models / "tiny-test.pt", sha)
    loaded, loaded_config, _ = load_checkpoint(path, expected_sha256=expected)
    assert loaded_config == config


def test_weights_resolve_by_catalogue_id_or_by_path(tiny, resources, tmp_path):
    from M2DiffSlicer.model.catalogue import resolve_weights

    models = resources([_entry(id="by-id", file="by-id.pt", default=False)])
    (models / "by-id.pt").write_bytes(b"x")
    assert resolve_weights("by-id") == (models / "by-id.pt", "0" * 64)
    own = tmp_path / "mine.pt"
    own.write_bytes(b"x")
    assert resolve_weights(str(own)) == (own, None)
    with pytest.raises(ModelError, match="'nonexistent' are neither a file nor a catalogue id.*by-id"):
        resolve_weights("nonexistent")


def test_a_catalogued_model_whose_file_is_absent_is_reported(resources):
    from M2DiffSlicer.model.catalogue import resolve_weights

    resources([_entry()])
    with pytest.raises(ModelError, match="'tiny-test' is in the catalogue but its weights are not installed"):
        resolve_weights(None)


def test_a_missing_catalogue_is_reported(resources):
    from M2DiffSlicer.model.catalogue import load_catalogue

    with pytest.raises(ModelError, match="model catalogue not found"):
        load_catalogue()


BAD_CATALOGUES = [
    ({"not": "a list"}, "array"),
    ([_entry(sha256="abc")], "sha256"),
    ([{k: v for k, v in _entry().items() if k != "file"}], "'file' is a required property"),
    ([_entry(file="../escape.pt")], "file"),
    ([_entry(default="yes")], "default"),
    ([_entry(colour="red")], "colour"),
    ([_entry(), _entry()], "duplicate id 'tiny-test'"),
    ([_entry(preset="huge")], "unknown preset 'huge'"),
    ([_entry(variant="v9")], "unknown variant 'v9'"),
]


@pytest.mark.parametrize("entries, match", BAD_CATALOGUES)
def test_an_invalid_catalogue_is_rejected_naming_the_problem(resources, entries, match):
    from M2DiffSlicer.model.catalogue import load_catalogue

    resources(entries)
    with pytest.raises(ModelError, match=f"invalid model catalogue.*{match}"):
        load_catalogue()


def test_the_shipped_default_model_is_installed_intact_and_loads():
    """The committed release weights match their catalogue sha256 and build the catalogued network."""
    from M2DiffSlicer.model.catalogue import default_entry, resolve_weights

    entry = default_entry()
    path, expected = resolve_weights(None)
    assert expected == entry.sha256
    model, config, meta = load_checkpoint(path, expected_sha256=expected)
    catalogued = dataclasses.replace(model_config(entry.preset, entry.variant),
                                     residual=entry.training.get("residual", False))
    assert config.to_dict() == catalogued.to_dict()
    assert meta["train_config"]["mode"] == "diffusion"
