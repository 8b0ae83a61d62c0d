"""The PET-BIDS reader on real layouts (bids-examples pet001, pet004, pet005) and the frame-window averaging."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from M2DiffSlicer.bids import layout
from M2DiffSlicer.bids.frames import static_image
from M2DiffSlicer.errors import BadInputError

EXAMPLES = Path(__file__).parent / "data" / "bids-examples"


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    """The copied example metadata with empty placeholder images, as bids-examples itself ships them."""
    root = tmp_path_factory.mktemp("examples")
    for name in ("pet001", "pet004", "pet005"):
        shutil.copytree(EXAMPLES / name, root / name)
    for image in (EXAMPLES / "images.txt").read_text().split():
        (root / image).touch()
    return root


def _summary(root, subject="01"):
    return [(run.stem, str(run.relative_folder()), run.t1w.name if run.t1w else None)
            for run in layout.pet_runs(root, subject)]


def test_pet001_run_with_tracer_entity_session_and_uncompressed_t1w(examples):
    assert _summary(examples / "pet001") == [
        ("sub-01_ses-01_trc-CIMBI36", "sub-01/ses-01/pet", "sub-01_ses-01_T1w.nii")]


def test_pet004_run_without_session_or_t1w_is_mri_free(examples):
    assert _summary(examples / "pet004") == [("sub-01", "sub-01/pet", None)]


def test_pet005_two_sessions_each_with_its_own_t1w_and_a_task_entity(examples):
    assert _summary(examples / "pet005") == [
        ("sub-01_ses-baseline", "sub-01/ses-baseline/pet", "sub-01_ses-baseline_T1w.nii.gz"),
        ("sub-01_ses-intervention_task-eyes", "sub-01/ses-intervention/pet", "sub-01_ses-intervention_T1w.nii.gz")]


def test_session_labels_select_runs_with_or_without_the_prefix(examples):
    for label in ("intervention", "ses-intervention"):
        (run,) = layout.pet_runs(examples / "pet005", "01", [label])
        assert run.session == "intervention"


def test_the_real_sidecars_pass_the_required_field_check(examples):
    (run,) = layout.pet_runs(examples / "pet001", "01")
    assert run.sidecar["TracerName"] == "CIMBI-36" and len(run.sidecar["FrameDuration"]) > 1


def test_participant_labels_are_accepted_with_or_without_sub(examples):
    assert layout.select_participants(examples / "pet005", ["sub-01"]) == ["01"]
    assert layout.select_participants(examples / "pet005", ["01", "sub-01"]) == ["01"]
    assert layout.select_participants(examples / "pet005", None) == ["01"]


def test_an_unknown_participant_label_names_the_present_ones(examples):
    with pytest.raises(BadInputError, match=r"not in .*: 07 \(present: 01\)"):
        layout.select_participants(examples / "pet005", ["07"])


def test_a_sidecar_at_the_dataset_root_is_inherited_and_the_file_level_one_wins(examples, tmp_path):
    root = shutil.copytree(examples / "pet004", tmp_path / "pet004")
    (root / "pet.json").write_text(json.dumps({"InstitutionName": "root level", "Units": "kBq/mL"}))
    (run,) = layout.pet_runs(root, "01")
    assert run.sidecar["InstitutionName"] == "root level"
    assert run.sidecar["Units"] == "Bq/mL"  # the run's own sidecar overrides the inherited value


def test_a_sidecar_missing_required_fields_names_them(examples, tmp_path):
    root = shutil.copytree(examples / "pet004", tmp_path / "pet004")
    sidecar = root / "sub-01" / "pet" / "sub-01_pet.json"
    data = json.loads(sidecar.read_text())
    del data["TracerRadionuclide"], data["FrameDuration"]
    sidecar.write_text(json.dumps(data))
    with pytest.raises(BadInputError, match="lacks required field.*TracerRadionuclide, FrameDuration"):
        layout.pet_runs(root, "01")


def test_a_pet_image_without_any_sidecar_is_refused(tmp_path):
    (tmp_path / "sub-01" / "pet").mkdir(parents=True)
    (tmp_path / "sub-01" / "pet" / "sub-01_pet.nii.gz").touch()
    with pytest.raises(BadInputError, match="has no JSON sidecar"):
        layout.pet_runs(tmp_path, "01")


def test_a_folder_without_dataset_description_is_not_a_bids_dataset(tmp_path):
    with pytest.raises(BadInputError, match="no dataset_description.json"):
        layout.read_dataset_description(tmp_path)


def _dynamic(tmp_path, frames=(1.0, 2.0, 4.0)):
    array = np.stack([np.full((3, 4, 5), value, np.float32) for value in frames])
    image = sitk.JoinSeries([sitk.GetImageFromArray(a) for a in array])
    path = tmp_path / "dyn_pet.nii.gz"
    sitk.WriteImage(image, str(path))
    return path, {"FrameTimesStart": [0, 60, 180], "FrameDuration": [60, 120, 300]}


def test_a_dynamic_series_without_a_frame_window_is_refused_with_the_option_to_use(tmp_path):
    path, sidecar = _dynamic(tmp_path)
    with pytest.raises(BadInputError, match="dynamic series \\(3 frames, 0-480 s\\).*--frame-window"):
        static_image(path, sidecar, None)


def test_the_frame_window_mean_weights_each_frame_by_its_duration(tmp_path):
    path, sidecar = _dynamic(tmp_path)
    static = static_image(path, sidecar, (60.0, 480.0))
    assert static.frames_used == 2
    assert static.frame_times_start == [60.0] and static.frame_duration == [420.0]
    np.testing.assert_allclose(sitk.GetArrayFromImage(static.image), (2.0 * 120 + 4.0 * 300) / 420)
    assert static.image.GetDimension() == 3


def test_a_frame_window_holding_no_whole_frame_is_refused(tmp_path):
    path, sidecar = _dynamic(tmp_path)
    with pytest.raises(BadInputError, match="holds no whole frame"):
        static_image(path, sidecar, (10.0, 50.0))


def test_frame_timing_that_does_not_match_the_image_is_refused(tmp_path):
    path, sidecar = _dynamic(tmp_path)
    with pytest.raises(BadInputError, match="has 3 frames but its sidecar times 2"):
        static_image(path, {"FrameTimesStart": [0, 60], "FrameDuration": [60, 120]}, (0.0, 480.0))
