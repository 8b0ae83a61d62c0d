"""The model catalogue (Resources/Models/models.json) as the panel shows it: read with json only, so the Slicer
process never imports torch or the engine to list the models."""

from __future__ import annotations

import dataclasses
import json
import os

# Model choice meaning "the file in modelFile" rather than a catalogue entry.
OTHER_MODEL_FILE = "other-file"


@dataclasses.dataclass(frozen=True)
class CatalogueModel:
    """One catalogue entry: ``path`` is the checkpoint's absolute path, ``training``/``metrics`` the raw records."""

    id: str
    version: str
    path: str
    default: bool
    training: dict
    metrics: dict

    @property
    def label(self) -> str:
        return f"{self.id} {self.version}"


def loadCatalogue(resourcesDir: str) -> list[CatalogueModel]:
    """The catalogue's entries in file order; raise ``ValueError`` naming the file when it is unreadable."""
    path = os.path.join(resourcesDir, "Models", "models.json")
    try:
        with open(path, encoding="utf-8") as stream:
            entries = json.load(stream)
        return [CatalogueModel(entry["id"], entry["version"], os.path.join(os.path.dirname(path), entry["file"]),
                               bool(entry.get("default", False)), entry["training"], entry["metrics"])
                for entry in entries]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"The model catalogue {path} cannot be read: {error}") from error


def defaultModelId(models: list[CatalogueModel]) -> str:
    """The first entry marked default (what the engine uses without ``--weights``), else "other file"."""
    return next((model.id for model in models if model.default), OTHER_MODEL_FILE)


def findModel(models: list[CatalogueModel], modelId: str) -> CatalogueModel | None:
    return next((model for model in models if model.id == modelId), None)


def _metricsText(metrics: dict) -> str:
    """Held-out scores per dose-reduction factor, e.g. "DRF 100: PSNR 33.18 dB, SSIM 0.960, lobar SUVR bias 2.1 %"."""
    parts = []
    for key, scores in metrics.items():
        if not (key.startswith("drf") and isinstance(scores, dict)):
            continue
        text = f"DRF {key[3:]}: PSNR {scores['psnr_2d']:.2f} dB, SSIM {scores['ssim_2d']:.3f}"
        if "suvr_abs_bias_lobar_pct" in scores:
            text += f", lobar SUVR bias {scores['suvr_abs_bias_lobar_pct']:.1f} %"
        parts.append(text)
    subjects = metrics.get("subjects", [])
    return "; ".join(parts) + (f" ({len(subjects)} held-out simulated subjects)" if subjects else "")


def provenance(model: CatalogueModel) -> dict[str, str]:
    """What the panel states about a catalogue model: ``trainedOn`` and ``heldOut`` (plain text)."""
    training = model.training
    trainedOn = str(training.get("data", "unknown data"))
    if training.get("every_dose"):
        trainedOn += " at every low-dose level each subject has"
    elif training.get("drf"):
        trainedOn += " at dose-reduction factor " + ", ".join(f"{drf:g}" for drf in training["drf"])
    return {"trainedOn": trainedOn, "heldOut": _metricsText(model.metrics)}


def modelNotice(models: list[CatalogueModel], modelId: str) -> str:
    """The panel's text for the chosen model: the research-use notice first, then where the model comes from."""
    from slicer.i18n import tr as _

    notice = _("Research use only: not for diagnosis or treatment decisions.")
    model = findModel(models, modelId)
    if model is None:
        return notice + " " + _("Model file of your own: its training data and accuracy are not known to this module.")
    facts = provenance(model)
    # The catalogue records training data in words; the simulator's subjects are named as such.
    if "simulated" in facts["trainedOn"].lower():
        notice += " " + _("This model was trained on simulated data only, not on patient scans.")
    return "\n".join([
        notice,
        _("Model: {label}").format(label=model.label),
        _("Trained on: {data}").format(data=facts["trainedOn"]),
        _("Held-out results: {metrics}").format(metrics=facts["heldOut"] or _("none recorded")),
    ])
