"""`m2diff simulate`: the domain flags, the DRF list with the continuous DRF, held-out configurations."""

from __future__ import annotations

import json

import pytest

from M2DiffSlicer.cli import main
from M2DiffSlicer.cli.simulate import parse_drfs


def test_randomise_writes_the_drf_list_plus_one_continuous_drf_and_records_the_domain(tmp_path):
    assert main(["simulate", "--out", str(tmp_path), "--reduced", "--randomise", "--drf", "1,20",
                 "--workers", "1", "--seed", "1234"]) == 0
    folder = tmp_path / "sub-1234"
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["domain"]["name"] == "randomised"
    random_drf = meta["domain"]["drawn"]["random_drf"]
    assert 2 <= random_drf <= 200 and meta["drfs"]["ld_drf001"] == 1 and meta["drfs"]["ld_drf020"] == 20
    for name in meta["drfs"]:
        assert (folder / f"pet_{name}.nii.gz").is_file()
    assert len(meta["drfs"]) == 3 and meta["held_out"] is None


def test_held_out_scanner_is_recorded_and_cannot_be_randomised(tmp_path, capsys):
    assert main(["simulate", "--out", str(tmp_path), "--reduced", "--scanner", "sharp", "--drf", "100",
                 "--workers", "1", "--seed", "9001"]) == 0
    meta = json.loads((tmp_path / "sub-9001" / "meta.json").read_text())
    assert meta["held_out"] == "scanner=sharp,fov=brain" and meta["config"]["psf_fwhm_mm"] == 3.0
    assert main(["simulate", "--out", str(tmp_path), "--randomise", "--scanner", "sharp"]) == 2
    assert "cannot be randomised" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [(["--domain", "wild"], "--domain must be one of"),
                                           (["--scanner", "blurry"], "scanner='blurry'"),
                                           (["--drf", "0.5"], "drfs")])
def test_unknown_domain_scanner_or_a_dose_below_one_is_a_bad_input(tmp_path, capsys, argv, message):
    assert main(["simulate", "--out", str(tmp_path), *argv]) == 2
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_drf_list_keeps_integers_as_integers():
    assert parse_drfs("20, 100,37.5") == (20, 100, 37.5)
    assert all(isinstance(d, int) for d in parse_drfs("4,10"))
