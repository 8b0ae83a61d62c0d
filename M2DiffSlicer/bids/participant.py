"""The participant level of the BIDS App: every PET run of the chosen participants, enhanced into derivatives.

One participant per process is the unit that scales out (a SLURM array task each): a run shares nothing with
other runs but the identical dataset-level files, works in its own temporary folder, and is skipped when all
its outputs exist (unless overwrite). Everything a run can refuse (labels, sidecars, the output folder, the
weights) is checked for all runs before the first enhance starts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import SimpleITK as sitk

from ..atomic import write_text_atomic
from ..errors import BadInputError
from ..model.provenance import weights_provenance
from . import derivatives
from .frames import chosen_frames, static_image
from .layout import PetRun, pet_runs, read_dataset_description, select_participants

Log = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class BidsAppOptions:
    """What `m2diff bids` was asked to do (paths, selection, and the enhance settings passed to each job)."""

    bids_dir: Path
    output_dir: Path
    participant_labels: list[str] | None = None
    session_labels: list[str] | None = None
    work_dir: Path | None = None
    overwrite: bool = False
    uncertainty: bool = False
    frame_window: tuple[float, float] | None = None
    job_values: dict[str, Any] = dataclasses.field(default_factory=dict)  # job.json keys: weights, steps, ...

    @property
    def weights(self) -> str | None:
        return self.job_values.get("weights")


def run_participant_level(options: BidsAppOptions, log: Log) -> list[Path]:
    """Enhance every selected PET run not yet finished; returns the enhanced PET files (written or kept).

    :raises M2DiffError: BadInputError (dataset, labels, sidecars, output folder), ModelError, ...; nothing of
        a failed run is left in the output folder.
    """
    raw = read_dataset_description(options.bids_dir)
    runs = selected_runs(options)
    _job(options.output_dir, runs[0], options)  # the enhance options are checked before any file is written
    check_output_dir(options.output_dir, options.bids_dir)
    provenance = weights_provenance(options.weights)
    derivatives.write_dataset_files(options.output_dir, options.bids_dir, raw)
    written = []
    for run in runs:
        outputs = derivatives.run_outputs(options.output_dir, run)
        if outputs.finished(options.uncertainty) and not options.overwrite:
            log(f"{run.stem}: already done, skipped (--overwrite redoes it)")
        else:
            enhance_run(run, outputs, options, provenance, log)
        written.append(outputs.pet)
    return written


def selected_runs(options: BidsAppOptions) -> list[PetRun]:
    """The PET runs of the selected participants and sessions, their sidecars checked."""
    subjects = select_participants(options.bids_dir, options.participant_labels)
    runs = [run for subject in subjects for run in pet_runs(options.bids_dir, subject, options.session_labels)]
    if not runs:
        sessions = f" in session(s) {', '.join(options.session_labels)}" if options.session_labels else ""
        raise BadInputError(f"no sub-*/[ses-*/]pet/*_pet.nii[.gz] for participant(s) {', '.join(subjects)}{sessions}")
    for run in runs:
        chosen_frames(run.path, run.sidecar, options.frame_window)  # a dynamic run without a window: refused now
    return runs


def check_output_dir(output_dir: Path, bids_dir: Path) -> None:
    """The output folder can be created and written, and is not the raw dataset itself."""
    if output_dir.resolve() == bids_dir.resolve():
        raise BadInputError("the output folder must not be the BIDS dataset itself (use e.g. BIDS_DIR/derivatives/m2diff)")
    if output_dir.exists() and not output_dir.is_dir():
        raise BadInputError(f"output folder {output_dir} exists and is not a folder")
    existing = next(p for p in (output_dir, *output_dir.parents) if p.exists())
    if not os.access(existing, os.W_OK | os.X_OK):
        raise BadInputError(f"cannot write the output folder {output_dir}: {existing} is not writable")


def enhance_run(run: PetRun, outputs: derivatives.RunOutputs, options: BidsAppOptions,
                provenance: dict[str, Any], log: Log) -> None:
    """Enhance one PET run in a work folder, then write its derivative files (the enhanced PET last)."""
    log(f"{run.stem}: enhancing {run.path.name} " + (f"with {run.t1w.name}" if run.t1w else
                                                     "MRI-free (no T1w in the session)"))
    with _work_folder(options.work_dir, run.stem) as work:
        static = static_image(run.path, run.sidecar, options.frame_window)
        sitk.WriteImage(static.image, str(work / "pet.nii.gz"), useCompression=True)
        job = _job(work, run, options)
        warnings = _run_job(job, run.stem, log)
        table = json.loads((work / "roi.json").read_text(encoding="utf-8"))
        timing = {"FrameTimesStart": static.frame_times_start, "FrameDuration": static.frame_duration}
        record = {**provenance, "frames": static.frames_used}
        _write_outputs(outputs, work, run, timing, record, warnings, table, options)
    log(f"{run.stem}: wrote {outputs.pet}")


def _job(work: Path, run: PetRun, options: BidsAppOptions):
    from ..enhance.job import EnhanceJob

    return EnhanceJob.from_dict({
        "pet": str(work / "pet.nii.gz"), "t1": str(run.t1w) if run.t1w else None,
        "output": str(work / "enhanced.nii.gz"), "roi_json": str(work / "roi.json"),
        "uncertainty_output": str(work / "std.nii.gz") if options.uncertainty else None, **options.job_values})


def _run_job(job, name: str, log: Log) -> list[str]:
    """Run the enhance job, logging each phase once and every warning; returns the warnings."""
    from ..enhance.pipeline import enhance_events

    warnings, phases = [], set()
    for event in enhance_events(job):
        if event["event"] == "warning":
            warnings.append(event["message"])
            log(f"{name}: warning: {event['message']}")
        elif event["event"] == "progress" and event["phase"] not in phases:
            phases.add(event["phase"])
            log(f"{name}: {event['phase']}")
    return warnings


def _write_outputs(outputs: derivatives.RunOutputs, work: Path, run: PetRun, timing: dict, record: dict,
                   warnings: list[str], table: dict, options: BidsAppOptions) -> None:
    """Each file atomically, the enhanced PET last; a failure removes the run's files (no partial run)."""
    outputs.pet.parent.mkdir(parents=True, exist_ok=True)
    try:
        derivatives.write_json(outputs.roi_json, derivatives.roi_columns_sidecar())
        write_text_atomic(outputs.roi_tsv, derivatives.tsv_text(derivatives.roi_rows(table),
                                                                list(derivatives.ROI_COLUMNS)))
        derivatives.write_json(outputs.pet_json, derivatives.pet_sidecar(run, timing, record, warnings,
                                                                          options.bids_dir))
        if options.uncertainty:
            derivatives.write_json(outputs.uncertainty_json, derivatives.pet_sidecar(
                run, timing, record, warnings, options.bids_dir, uncertainty=True))
            derivatives.copy_atomic(work / "std.nii.gz", outputs.uncertainty)
        derivatives.copy_atomic(work / "enhanced.nii.gz", outputs.pet)
    except BaseException:
        for path in outputs.required(options.uncertainty):
            path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def _work_folder(work_dir: Path | None, stem: str) -> Iterator[Path]:
    """A fresh folder for one run's intermediate files (under -w/--work-dir when given), removed afterwards."""
    if work_dir is not None:
        work_dir.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f"m2diff-{stem}-", dir=work_dir))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
