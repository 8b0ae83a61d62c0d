"""`m2diff bids` end to end on a 2-participant PET-BIDS dataset, the official BIDS validator on its output, and
every bad input (clear message, exit code 2, nothing written)."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import bids_dataset
import enhance_subjects as es
from M2DiffSlicer.bids import derivatives, group, participant
from M2DiffSlicer.bids.layout import PET_REQUIRED_FIELDS
from M2DiffSlicer.bids.validator import find_validators, validation_errors
from M2DiffSlicer.cli import main
from M2DiffSlicer.imaging.atlas import load_atlas
from M2DiffSlicer.model.checkpoint import file_sha256

RUN_01 = "sub-01/ses-01/pet/sub-01_ses-01_trc-FDG"
RUN_02 = "sub-02/pet/sub-02_trc-FDG"
OUTPUT_FILES = sorted([
    ".bidsignore", "dataset_description.json",
    *(f"{run}_desc-{desc}_{kind}" for run in (RUN_01, RUN_02)
      for desc, kind in (("m2diff", "pet.nii.gz"), ("m2diff", "pet.json"), ("m2diff", "roi.tsv"),
                         ("m2diff", "roi.json"), ("m2diffstd", "pet.nii.gz"), ("m2diffstd", "pet.json"))),
    "group/m2diff_cohort_roi.tsv", "group/m2diff_cohort_roi.json", "group/m2diff_cohort_roi.png",
])


def _bids(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "M2DiffSlicer.cli", "bids", *map(str, args)],
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """The dataset, then both participants as two processes at once on one output folder (as a SLURM array
    would run them), then the group level."""
    root = tmp_path_factory.mktemp("bids_app")
    raw = bids_dataset.build_dataset(root / "raw")
    weights = es.tiny_checkpoint(root / "tiny.pt")
    out = root / "derivatives" / "m2diff"
    common = ["--weights", weights, "--steps", "1", "--uncertainty", "--nprocs", "1", "-w", root / "work"]
    jobs = [subprocess.Popen([sys.executable, "-m", "M2DiffSlicer.cli", "bids", raw, out, "participant",
                              "--participant-label", label, *common], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for label in ("sub-01", "02")]
    logs = [job.communicate(timeout=600) for job in jobs]
    assert [job.returncode for job in jobs] == [0, 0], logs
    finished = _bids(out.parent, out, "group")
    assert finished.returncode == 0, finished.stderr
    return {"raw": raw, "out": out, "weights": weights, "logs": [err for _, err in logs], "root": root}


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def _tsv(path: Path) -> list[dict]:
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream, delimiter="\t"))


def test_output_holds_exactly_the_derivative_files(app):
    assert _files(app["out"]) == OUTPUT_FILES
    assert not list((app["root"] / "work").iterdir())  # the work folders are removed


def test_dataset_description_declares_a_derivative_generated_by_m2diff(app):
    description = _json(app["out"] / "dataset_description.json")
    assert description["DatasetType"] == "derivative"
    (generated,) = description["GeneratedBy"]
    assert generated["Name"] == "M2Diff" and generated["Version"] and generated["CodeURL"].startswith("https://")
    assert description["SourceDatasets"] == [{"URL": app["raw"].resolve().as_uri()}]


def test_sidecar_carries_the_raw_required_fields_and_records_sources_and_model(app):
    raw = _json(app["raw"] / f"{RUN_01}_pet.json")
    sidecar = _json(app["out"] / f"{RUN_01}_desc-m2diff_pet.json")
    assert {field: sidecar[field] for field in PET_REQUIRED_FIELDS} == {field: raw[field] for field in PET_REQUIRED_FIELDS}
    assert sidecar["Sources"] == ["bids:raw:sub-01/ses-01/pet/sub-01_ses-01_trc-FDG_pet.nii.gz",
                                  "bids:raw:sub-01/ses-01/anat/sub-01_ses-01_T1w.nii.gz"]
    assert sidecar["SkullStripped"] is False and "Research use only" in sidecar["Description"]
    assert sidecar["M2DiffModel"]["Sha256"] == file_sha256(app["weights"])
    assert sidecar["M2DiffMode"] == "mri-guided" and isinstance(sidecar["M2DiffWarnings"], list)


def test_the_participant_without_t1w_is_enhanced_mri_free_and_says_so(app):
    sidecar = _json(app["out"] / f"{RUN_02}_desc-m2diff_pet.json")
    assert sidecar["Sources"] == ["bids:raw:sub-02/pet/sub-02_trc-FDG_pet.nii.gz"]
    assert sidecar["M2DiffMode"] == "mri-free" and "MRI-free" in sidecar["Description"]
    assert any("sub-02_trc-FDG: enhancing" in log and "MRI-free" in log for log in app["logs"])


def test_roi_table_has_one_row_per_atlas_region_and_its_columns_described(app):
    rows = _tsv(app["out"] / f"{RUN_01}_desc-m2diff_roi.tsv")
    assert list(rows[0]) == list(derivatives.ROI_COLUMNS)
    assert [row["name"] for row in rows] == [name for _, name in sorted(load_atlas().names.items())]
    assert all(float(row["input_mean"]) > 0 for row in rows)
    assert set(_json(app["out"] / f"{RUN_01}_desc-m2diff_roi.json")) == set(derivatives.ROI_COLUMNS)


def test_group_table_has_every_region_of_every_participant_and_a_figure(app):
    rows = _tsv(app["out"] / "group" / group.TABLE)
    regions = len(load_atlas().names)
    assert len(rows) == 2 * regions
    assert [row["participant_id"] for row in rows[::regions]] == ["sub-01", "sub-02"]
    assert rows[0]["session_id"] == "ses-01" and rows[-1]["session_id"] == "n/a"
    assert (app["out"] / "group" / group.FIGURE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_rerun_skips_finished_participants(app):
    before = {name: os.stat(app["out"] / name).st_mtime_ns for name in OUTPUT_FILES if name.startswith("sub-")}
    rerun = _bids(app["raw"], app["out"], "participant", "--weights", app["weights"], "--uncertainty")
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stderr.count("already done, skipped") == 2
    assert {name: os.stat(app["out"] / name).st_mtime_ns for name in before} == before


def test_overwrite_redoes_only_the_chosen_participant(app):
    names = [name for name in OUTPUT_FILES if name.startswith("sub-")]
    before = {name: os.stat(app["out"] / name).st_mtime_ns for name in names}
    rerun = _bids(app["raw"], app["out"], "participant", "--participant-label", "02", "--overwrite",
                  "--weights", app["weights"], "--steps", "1", "--uncertainty", "--skip-bids-validation")
    assert rerun.returncode == 0, rerun.stderr
    changed = {name for name in names if os.stat(app["out"] / name).st_mtime_ns != before[name]}
    assert changed == {name for name in names if name.startswith("sub-02/")}


@pytest.fixture(scope="module")
def dynamic_raw(app, tmp_path_factory):
    """The dataset with sub-02's PET as a 3-frame dynamic series (10-min frames from 0 s)."""
    import SimpleITK as sitk

    raw = tmp_path_factory.mktemp("dynamic") / "raw"
    subprocess.run(["cp", "-r", str(app["raw"]), str(raw)], check=True)
    pet = raw / f"{RUN_02}_pet.nii.gz"
    static = sitk.ReadImage(str(pet))
    sitk.WriteImage(sitk.JoinSeries([static * factor for factor in (0.8, 1.0, 1.2)]), str(pet))
    sidecar = _json(raw / f"{RUN_02}_pet.json")
    sidecar.update(FrameTimesStart=[0, 600, 1200], FrameDuration=[600, 600, 600])
    (raw / f"{RUN_02}_pet.json").write_text(json.dumps(sidecar))
    return raw


def test_a_dynamic_pet_without_a_frame_window_is_refused_before_anything_is_written(dynamic_raw, tmp_path, capsys):
    error = _refused(capsys, dynamic_raw, tmp_path / "out", "participant", "--skip-bids-validation")
    assert "dynamic series (3 frames, 0-1800 s)" in error and "--frame-window" in error
    assert not (tmp_path / "out").exists()


def test_a_dynamic_pet_is_enhanced_over_its_frame_window(app, dynamic_raw, tmp_path):
    done = _bids(dynamic_raw, tmp_path / "out", "participant", "--participant-label", "02", "--frame-window",
                 "600", "1800", "--weights", app["weights"], "--steps", "1", "--skip-bids-validation")
    assert done.returncode == 0, done.stderr
    sidecar = _json(tmp_path / "out" / f"{RUN_02}_desc-m2diff_pet.json")
    assert (sidecar["FrameTimesStart"], sidecar["FrameDuration"]) == ([600.0], [1200.0])
    assert sidecar["M2DiffFramesAveraged"] == 2


def _validator():
    validators = find_validators()
    if "bids-validator-deno" not in validators:
        if os.environ.get("CI"):
            pytest.fail("CI must install the BIDS validator (make install: bids-validator-deno, [test] extra)")
        pytest.skip("bids-validator-deno is not installed here (pip install -e '.[test]' installs it)")
    return validators["bids-validator-deno"]


def test_the_official_bids_validator_finds_no_error_in_the_derivatives(app):
    assert validation_errors(app["out"], _validator()) == []


def test_the_official_bids_validator_does_catch_a_broken_derivative(app, tmp_path):
    broken = tmp_path / "broken"
    subprocess.run(["cp", "-r", str(app["out"]), str(broken)], check=True)
    # What the validator checks in a derivative dataset: names, NIfTI headers, dataset_description's schema
    # (it does not apply the raw PET sidecar rules to desc- files; the sidecar test above covers those).
    (broken / f"{RUN_02}_desc-m2diff_pet.nii.gz").write_bytes(b"not a nifti")
    (broken / f"{RUN_02}_m2diff_pet.json").write_text("{}")
    description = _json(broken / "dataset_description.json")
    del description["GeneratedBy"][0]["Name"]
    (broken / "dataset_description.json").write_text(json.dumps(description))
    errors = validation_errors(broken, _validator())
    found = {(error["code"], error["location"]) for error in errors}
    assert {("NIFTI_HEADER_UNREADABLE", f"/{RUN_02}_desc-m2diff_pet.nii.gz"),
            ("JSON_SCHEMA_VALIDATION_ERROR", "/dataset_description.json")} <= found
    assert f"/{RUN_02}_m2diff_pet.json" in {error["location"] for error in errors}  # a name no rule matches


def test_the_raw_test_dataset_is_valid_bids_too(app):
    assert validation_errors(app["raw"], _validator()) == []


def _refused(capsys, *args) -> str:
    assert main(["bids", *map(str, args)]) == 2
    return capsys.readouterr().err


def test_a_folder_without_dataset_description_is_refused(tmp_path, capsys):
    (tmp_path / "raw" / "sub-01").mkdir(parents=True)
    error = _refused(capsys, tmp_path / "raw", tmp_path / "out", "participant")
    assert "has no dataset_description.json" in error and not (tmp_path / "out").exists()


def test_an_unknown_participant_label_is_refused_before_anything_is_written(app, tmp_path, capsys):
    error = _refused(capsys, app["raw"], tmp_path / "out", "participant", "--participant_label", "sub-09",
                     "--skip-bids-validation")
    assert "sub-09" not in error and "09 (present: 01, 02)" in error and not (tmp_path / "out").exists()


def test_a_sidecar_missing_required_fields_is_refused_before_anything_is_written(app, tmp_path, capsys):
    raw = tmp_path / "raw"
    subprocess.run(["cp", "-r", str(app["raw"]), str(raw)], check=True)
    sidecar = raw / f"{RUN_02}_pet.json"
    data = _json(sidecar)
    del data["InjectedRadioactivity"]
    sidecar.write_text(json.dumps(data))
    error = _refused(capsys, raw, tmp_path / "out", "participant", "--skip-bids-validation")
    assert "lacks required field(s): InjectedRadioactivity" in error and not (tmp_path / "out").exists()


def test_an_output_path_that_is_a_file_is_refused(app, tmp_path, capsys):
    (tmp_path / "out").write_text("not a folder")
    error = _refused(capsys, app["raw"], tmp_path / "out", "participant", "--skip-bids-validation")
    assert "is not a folder" in error and (tmp_path / "out").read_text() == "not a folder"


def test_an_unwritable_output_folder_is_refused(app, tmp_path, capsys, monkeypatch):
    # CI runs as root, for whom every folder is writable: the permission answer is what is under test.
    monkeypatch.setattr(participant.os, "access", lambda path, mode: False)
    error = _refused(capsys, app["raw"], tmp_path / "out", "participant", "--skip-bids-validation")
    assert "is not writable" in error and not (tmp_path / "out").exists()


def test_an_invalid_enhance_option_is_refused_before_anything_is_written(app, tmp_path, capsys):
    error = _refused(capsys, app["raw"], tmp_path / "out", "participant", "--steps", "0", "--skip-bids-validation")
    assert "steps must be an integer >= 1" in error and not (tmp_path / "out").exists()


def test_the_input_dataset_itself_is_refused_as_output(app, capsys):
    error = _refused(capsys, app["raw"], app["raw"], "participant", "--skip-bids-validation")
    assert "must not be the BIDS dataset itself" in error


def test_the_group_level_without_participant_results_is_refused(tmp_path, capsys):
    error = _refused(capsys, tmp_path / "raw", tmp_path, "group")
    assert "run the participant level first" in error and not (tmp_path / "group").exists()


def test_input_validation_errors_stop_the_participant_level(app, tmp_path, capsys):
    _validator()
    raw = tmp_path / "raw"
    subprocess.run(["cp", "-r", str(app["raw"]), str(raw)], check=True)
    (raw / "sub-02" / "pet" / "sub-02_trc-FDG_pet.nii.gz").write_bytes(b"not a nifti")
    error = _refused(capsys, raw, tmp_path / "out", "participant")
    assert "error(s) in" in error and "--skip-bids-validation" in error and not (tmp_path / "out").exists()


def test_a_failure_while_writing_a_run_leaves_none_of_its_files(app, tmp_path, monkeypatch):
    out = tmp_path / "out"
    run = participant.selected_runs(participant.BidsAppOptions(app["raw"], out, participant_labels=["02"]))[0]
    outputs = derivatives.run_outputs(out, run)
    work = tmp_path / "work"
    work.mkdir()
    (work / "enhanced.nii.gz").write_bytes(b"x")

    def disk_full(source, destination):
        raise OSError("disk full")

    monkeypatch.setattr(derivatives, "copy_atomic", disk_full)
    options = participant.BidsAppOptions(app["raw"], out)
    table = {"rows": []}
    with pytest.raises(OSError, match="disk full"):
        participant._write_outputs(outputs, work, run, {"FrameTimesStart": [0], "FrameDuration": [1]},
                                   {"id": None, "version": None, "sha256": "0", "file": "w", "frames": 1}, [],
                                   table, options)
    assert not any(path.exists() for path in outputs.required(uncertainty=True))
