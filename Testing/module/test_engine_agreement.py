"""The module's copies of engine facts (it never imports the engine) agree with the engine: exit codes, option
defaults and choices, and the job.json keys the Logic writes."""

import dataclasses
import inspect
import os
import shutil
from pathlib import Path

import pytest

from M2DiffSlicer.enhance.job import EnhanceJob as EngineJob
from M2DiffSlicer.enhance.job import InferenceOptions
from M2DiffSlicer.errors import ExitCode as EngineExitCode
from M2DiffSlicer.imaging.orientation import Orientation
from M2DiffModuleLib.EnhanceLogic import Device, EnhanceSettings, Orientations
from M2DiffModuleLib.ProcessRunner import ExitCode as ModuleExitCode


def test_module_exit_codes_have_the_engines_names_and_values():
    assert {m.name: m.value for m in ModuleExitCode} == {m.name: m.value for m in EngineExitCode}


def test_module_defaults_are_the_engines_inference_defaults():
    engine, module = InferenceOptions(), EnhanceSettings()
    assert module.steps == engine.steps
    assert module.seed == engine.seed
    assert module.batchSize == engine.batch_size
    assert module.device.value == engine.device.value
    assert module.orientations.value == tuple(o.value for o in engine.orientations)
    assert module.uncertainty == engine.uncertainty


def test_module_choices_are_engine_choices():
    assert {d.value for d in Device} == {c.value for c in type(InferenceOptions().device)}
    for choice in Orientations:
        assert set(choice.value) <= {o.value for o in Orientation}


def test_logic_process_defaults_are_the_settings_defaults():
    from M2DiffModule import M2DiffModuleLogic

    parameters = inspect.signature(M2DiffModuleLogic.process).parameters
    for field in dataclasses.fields(EnhanceSettings):
        assert parameters[field.name].default == field.default, field.name


@pytest.mark.parametrize("uncertainty", [False, True])
def test_the_job_file_the_logic_writes_is_read_by_the_engine_as_meant(subject, uncertainty):
    from M2DiffModuleLib.EnhanceLogic import EnhanceJob as ModuleJob
    from M2DiffModuleLib.EnhanceLogic import EnhanceLogic

    settings = EnhanceSettings(steps=3, orientations=Orientations.AXIAL, device=Device.CPU, seed=7, batchSize=5,
                               uncertainty=uncertainty)
    job = ModuleJob(EnhanceLogic(), {"ldPet": subject.ldPet, "t1": subject.t1, "roi": None, "output": None},
                    settings, showResult=False)  # the constructor writes job.json; nothing is started
    try:
        engine_job = EngineJob.from_file(os.path.join(job.tempDir, "job.json"))
    finally:
        shutil.rmtree(job.tempDir, ignore_errors=True)
    assert engine_job.options == InferenceOptions(steps=3, orientations=("axial",), device="cpu", seed=7,
                                                  batch_size=5, uncertainty=uncertainty)
    assert (engine_job.uncertainty_output is not None) == uncertainty
    assert engine_job.t1 is not None and engine_job.pet.endswith("pet.nii.gz")


def test_the_worker_requirements_the_module_installs_are_the_engines():
    import tomllib

    from M2DiffModuleLib.Dependencies import ENGINE_REQUIREMENTS, PACKAGES_TO_SKIP

    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    engine = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    slicer_brings = {name.lower() for name in PACKAGES_TO_SKIP}
    needed = {r.replace(" ", "") for r in engine if r.split(">")[0].split("=")[0].lower() not in slicer_brings}
    assert needed - {"matplotlib>=3.7"} == set(ENGINE_REQUIREMENTS)
