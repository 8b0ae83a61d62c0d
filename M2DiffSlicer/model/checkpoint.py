"""M2Diff checkpoints: state dict + JSON config + JSON meta in one weights-only-safe .pt file, with sha256.

File layout (docs/DEVELOPING.md): `{"format": "m2diff-checkpoint-v1", "config": <ModelConfig JSON>,
"state_dict": {name: tensor}, "meta": <JSON>}`. Loading uses `torch.load(weights_only=True)`, so a file can hold
nothing but tensors and plain containers; a tampered file is caught by its sha256 before it is unpickled. The
file is read once: the bytes that are hashed are the bytes that are loaded (no window to swap the file between).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import pickle
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_path
from .config import ModelConfig
from .unet import build_model
from ..errors import ModelError

FORMAT = "m2diff-checkpoint-v1"
_MAX_LISTED = 5  # keys named in an architecture-mismatch message


class CheckpointError(ModelError):
    """A checkpoint is missing, unreadable, not ours, for another architecture or not the expected file."""


@dataclasses.dataclass(frozen=True)
class LoadedCheckpoint:
    """A checkpoint read by read_checkpoint: the rebuilt network and the sha256 of the bytes it came from."""

    model: torch.nn.Module  # eval mode, float32 parameters
    config: ModelConfig
    meta: dict[str, Any]
    sha256: str  # hex


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes (for a file that is not loaded here; read_checkpoint hashes what it loads)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_checkpoint(
    path: str | os.PathLike,
    model: torch.nn.Module,
    config: ModelConfig,
    meta: dict[str, Any] | None = None,
    half: bool = False,
) -> str:
    """Write model weights, config and meta atomically (temp file in the same folder, then rename).

    :param path: destination .pt file; its folder must exist.
    :param model: the network whose state dict is saved (tensors are copied to the CPU).
    :param config: the ModelConfig that builds this network.
    :param meta: JSON-serialisable information (training run, metrics, ...).
    :param half: store floating-point tensors as float16 (release weights: half the size); loading casts back.
    :return: hex sha256 of the written file.
    """
    state = {}
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().to("cpu")
        state[name] = (tensor.half() if half and tensor.is_floating_point() else tensor).clone()
    payload = {
        "format": FORMAT,
        "config": config.to_json(),
        "state_dict": state,
        "meta": json.dumps(meta or {}, sort_keys=True),
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getvalue()
    with atomic_path(path) as temp_path:
        with open(temp_path, "wb") as temp:
            temp.write(data)
            temp.flush()
            os.fsync(temp.fileno())
    return hashlib.sha256(data).hexdigest()


def load_checkpoint(
    path: str | os.PathLike, expected_sha256: str | None = None, device: str | torch.device = "cpu"
) -> tuple[torch.nn.Module, ModelConfig, dict[str, Any]]:
    """(network, ModelConfig, meta) of read_checkpoint, for callers that do not need the sha256."""
    loaded = read_checkpoint(path, expected_sha256, device)
    return loaded.model, loaded.config, loaded.meta


def read_checkpoint(
    path: str | os.PathLike, expected_sha256: str | None = None, device: str | torch.device = "cpu"
) -> LoadedCheckpoint:
    """Read a checkpoint written by save_checkpoint (one read of the file) and rebuild its network.

    :param path: the .pt file.
    :param expected_sha256: if given, the sha256 of the bytes read must match (checked before unpickling them).
    :param device: where the network's parameters go.
    :return: the network in eval mode with float32 parameters, its ModelConfig, meta and the bytes' sha256.
    :raises CheckpointError: missing, corrupt/truncated, not an m2diff checkpoint, architecture mismatch or
        sha256 mismatch; the message names the file and the problem.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise CheckpointError(f"{path} is unreadable ({type(error).__name__}: {error})") from None
    sha256 = hashlib.sha256(data).hexdigest()
    if expected_sha256 is not None and sha256 != expected_sha256.lower():
        raise CheckpointError(
            f"sha256 mismatch for {path}: expected {expected_sha256}, got {sha256}; the file was modified or is "
            "incomplete - reinstall or re-download the weights"
        )
    payload = _read_payload(path, data)
    try:
        config = ModelConfig.from_json(payload["config"])
        meta = json.loads(payload["meta"])
    except (TypeError, ValueError) as error:  # json.JSONDecodeError is a ValueError
        raise CheckpointError(f"{path} has an invalid config or meta entry: {error}") from None

    model = build_model(config)
    _check_architecture(path, model.state_dict(), payload["state_dict"])
    model.load_state_dict(payload["state_dict"])  # copies (and casts float16 release weights) into float32
    return LoadedCheckpoint(model.to(device).eval(), config, meta, sha256)


def _read_payload(path: Path, data: bytes) -> dict[str, Any]:
    """The checked top-level dict of the checkpoint bytes `data` read from `path` (named in errors)."""
    try:
        # Tensors are loaded on the CPU: the network is built there and moved afterwards.
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # The weights-only unpickler reports classes it will not build as "Unsupported global"; anything else
        # it cannot parse is damage.
        if "unsupported global" in str(error).lower():
            raise CheckpointError(
                f"{path} is not an m2diff checkpoint: it holds objects other than tensors and plain containers, "
                "which are refused for safety"
            ) from None
        raise CheckpointError(f"{path} is corrupt or truncated (unreadable pickle data)") from None
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise CheckpointError(f"{path} is corrupt or truncated ({type(error).__name__}: {error})") from None
    if not isinstance(payload, dict) or payload.get("format") is None:
        raise CheckpointError(f"{path} is not an m2diff checkpoint (no 'format' entry; expected {FORMAT!r})")
    if payload["format"] != FORMAT:
        raise CheckpointError(f"{path} has unsupported checkpoint format {payload['format']!r}; expected {FORMAT!r}")
    missing = [key for key in ("config", "state_dict", "meta") if key not in payload]
    if missing or not isinstance(payload["state_dict"], dict):
        problem = ", ".join(missing) if missing else "state_dict"
        raise CheckpointError(f"{path} is not a complete m2diff checkpoint (missing or invalid: {problem})")
    return payload


def _check_architecture(path: Path, expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor]) -> None:
    """CheckpointError listing missing/unexpected keys and shape differences between config and weights."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    reshaped = [
        f"{name} {_shape(found[name])} vs {_shape(expected[name])}"
        for name in sorted(set(expected) & set(found))
        if _shape(found[name]) != _shape(expected[name])
    ]
    if not (missing or unexpected or reshaped):
        return
    problems = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", reshaped)):
        if items:
            more = f" (+{len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else ""
            problems.append(f"{len(items)} {label}: {', '.join(items[:_MAX_LISTED])}{more}")
    raise CheckpointError(
        f"architecture mismatch in {path}: the weights do not fit the network its config describes; "
        + "; ".join(problems)
    )


def _shape(value: Any) -> tuple[int, ...] | str:
    return tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
