"""Enum options are parsed once, by one helper, with an error that names the argument and the choices."""

from __future__ import annotations

import pytest

from M2DiffSlicer.model.config import HFFMode, model_config
from M2DiffSlicer.training.data import load_subject
from M2DiffSlicer.options import parse_enum
from M2DiffSlicer.training.config import TrainConfig


def test_parse_enum_accepts_a_member_or_its_value():
    assert parse_enum(HFFMode, "concat", "hff") is HFFMode.CONCAT
    assert parse_enum(HFFMode, HFFMode.PROJ, "hff") is HFFMode.PROJ


def test_parse_enum_error_names_the_argument_the_choices_and_the_bad_value():
    with pytest.raises(ValueError, match=r"^hff must be one of 'proj', 'concat', 'none', got 'sum'$"):
        parse_enum(HFFMode, "sum", "hff")


def test_model_config_rejects_an_unknown_enum_value_by_field_name():
    base = model_config("tiny").to_dict()
    with pytest.raises(ValueError, match=r"^variance must be one of .*got 'learned'$"):
        type(model_config("tiny")).from_dict(dict(base, variance="learned"))


def test_train_config_rejects_an_unknown_mode_by_name():
    with pytest.raises(ValueError, match=r"^mode must be one of 'diffusion', 'regression', got 'gan'$"):
        TrainConfig(mode="gan")


def test_load_subject_rejects_an_unknown_cache_dtype_by_name(tmp_path):
    with pytest.raises(ValueError, match=r"^cache_dtype must be one of 'float16', 'float32', got 'int8'$"):
        load_subject(tmp_path, 100, cache_dtype="int8")


def test_json_round_trips_reject_unknown_fields_by_name():
    from M2DiffSlicer.model.config import ModelConfig, model_config
    from M2DiffSlicer.diffusion.gaussian_diffusion import LossWeights
    from M2DiffSlicer.training.config import TrainConfig

    with pytest.raises(ValueError, match="unknown ModelConfig field.*bogus"):
        ModelConfig.from_dict({**model_config("tiny").to_dict(), "bogus": 1})
    with pytest.raises(ValueError, match="unknown LossWeights field.*bogus"):
        LossWeights.from_dict({"bogus": 1.0})
    with pytest.raises(ValueError, match="unknown TrainConfig field.*bogus"):
        TrainConfig.from_json('{"bogus": 1}')
