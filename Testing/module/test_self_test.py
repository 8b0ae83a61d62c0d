"""The module's own Slicer self-test (M2DiffModuleTest), run here on real MRML with the real worker process, and
how it behaves in a fresh Slicer (no torch yet) and when the worker fails."""

import os
import stat
import subprocess
import sys
import time
import unittest
from types import SimpleNamespace

import pytest

import M2DiffModule
from conftest import sceneSnapshot
from M2DiffModuleLib import Dependencies, ProcessRunner, SelfTestData
from M2DiffModuleLib.EnhanceLogic import CancelledError, Device, EnhanceLogic, Orientations
from process_tree import runningInGroup

HERE = os.path.dirname(os.path.abspath(__file__))


def runSelfTest() -> unittest.TestResult:
    """Run ``M2DiffModuleTest`` as Slicer's ``runUnitTest`` does (a unittest runner), keeping its outcome."""
    result = unittest.TestResult()
    M2DiffModule.M2DiffModuleTest().run(result)
    return result


def putPythonSlicerOnPath(monkeypatch, folder, script: str) -> None:
    shim = os.path.join(folder, "PythonSlicer")
    with open(shim, "w") as stream:
        stream.write(script)
    os.chmod(shim, os.stat(shim).st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")


def test_module_self_test_enhances_a_small_subject_end_to_end(scene):
    M2DiffModule.M2DiffModuleTest().runTest()


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="checks process liveness through /proc (Linux)")
def test_cancel_of_the_real_worker_through_a_launcher_ends_its_tree_within_5_s(subject, manualTimer):
    # PythonSlicer as Slicer has it: a launcher process that starts the interpreter as a child and forwards no signal.
    command = [sys.executable, os.path.join(HERE, "fake_launcher.py"), "--ignore-sigterm",
               *EnhanceLogic().workerCommand()]
    before = sceneSnapshot(subject.ldPet.GetScene())
    logic = M2DiffModule.M2DiffModuleLogic(workerCommand=command, timerFactory=lambda: manualTimer)
    job = logic.process(subject.ldPet, subject.t1, subject.roi, steps=1, orientations=Orientations.AXIAL,
                        device=Device.CPU, weights=SelfTestData.tinyModel(subject.folder), waitForCompletion=False)
    progress, finished = [], []
    job.progress.connect(lambda fraction, message: progress.append(message))
    job.finished.connect(lambda result, error: finished.append(error))
    deadline = time.monotonic() + 120
    while not progress and not finished and time.monotonic() < deadline:
        manualTimer.tick()
        time.sleep(0.01)
    assert progress and not finished, "the worker sent no progress before it ended"
    launcher = job.process.pid
    assert len(runningInGroup(launcher)) >= 2  # the launcher and the worker

    cancelStart = time.monotonic()
    job.cancel()
    while not finished and time.monotonic() - cancelStart < 10:
        manualTimer.tick()
        time.sleep(0.01)

    assert time.monotonic() - cancelStart < 5.0 and runningInGroup(launcher) == []
    assert len(finished) == 1 and isinstance(finished[0], CancelledError)
    assert not os.path.exists(job.tempDir)
    assert sceneSnapshot(subject.ldPet.GetScene()) == before


def test_self_test_in_a_fresh_slicer_without_torch_skips_and_says_what_to_do(scene, tmp_path, monkeypatch):
    # -S: no site-packages, like Slicer's Python before the first Enhance installed torch and the engine's needs.
    putPythonSlicerOnPath(monkeypatch, tmp_path, f'#!/bin/sh\nexec "{sys.executable}" -S "$@"\n')
    result = runSelfTest()
    assert (result.errors, result.failures) == ([], [])
    [(_, reason)] = result.skipped
    assert "torch>=2.6 (not installed)" in reason and "numpy>=1.24 (not installed)" in reason
    assert "Click Enhance once" in reason
    assert scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == 0


def test_self_test_failure_shows_the_worker_stderr(scene, tmp_path, monkeypatch):
    # Slicer's Python as it is, except that the worker (-m ...) is the fake one failing with a user-facing error.
    putPythonSlicerOnPath(monkeypatch, tmp_path, f"""#!{sys.executable}
import os, sys
args = sys.argv[1:]
if args[:1] == ["-m"]:
    args = [{os.path.join(HERE, "fake_worker.py")!r}, "--mode", "fail", *args[2:]]
os.execv(sys.executable, [sys.executable, *args])
""")
    result = runSelfTest()
    [(_, traceback)] = result.errors + result.failures
    assert "PET volume is empty" in traceback
    assert "Worker log (stderr):\nfake worker: checked the PET voxels in validate.py" in traceback


def test_self_test_model_failure_shows_the_worker_stderr(tmp_path):
    python = tmp_path / "python"
    python.write_text("#!/bin/sh\necho \"ModuleNotFoundError: No module named 'M2DiffSlicer.model'\" >&2\nexit 1\n")
    python.chmod(0o755)
    with pytest.raises(RuntimeError, match="exit code 1(.|\n)*No module named 'M2DiffSlicer.model'"):
        SelfTestData.tinyModel(str(tmp_path), [str(python)])


def test_worker_requirements_are_read_from_the_worker_python_without_importing_torch(tmp_path):
    # The worker's real Python has everything; its check must not import torch (it reads metadata only).
    code = Dependencies._CHECK_CODE + "\nimport sys; assert 'torch' not in sys.modules, 'torch was imported'\n"
    completed = subprocess.run([sys.executable, "-c", code, "torch", "numpy"], capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr
    assert Dependencies.missingWorkerRequirements(sys.executable, SelfTestData.EnhanceLogic().workerEnvironment()) == []


def test_worker_requirement_too_old_is_named_with_its_installed_version(tmp_path, monkeypatch):
    monkeypatch.setattr(Dependencies, "TORCH_REQUIREMENT", ">=999")
    env = SelfTestData.EnhanceLogic().workerEnvironment()
    missing = Dependencies.missingWorkerRequirements(sys.executable, env)
    assert len(missing) == 1 and missing[0].startswith("torch>=999 (") and missing[0].endswith(" installed)")


def test_on_windows_the_kill_and_self_test_subprocesses_open_no_console_window(tmp_path, monkeypatch):
    calls = []

    def recordRun(args, **kwargs):
        calls.append((args, kwargs))
        stdout = '{"versions": {"torch": "2.6.0"}, "modules": {"SimpleITK": true, "M2DiffSlicer": true}}'
        return subprocess.CompletedProcess(args, 0, stdout=stdout, stderr="")

    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setattr(subprocess, "Popen", lambda args, **kwargs: calls.append((args, kwargs)))
    monkeypatch.setattr(subprocess, "run", recordRun)
    monkeypatch.setattr(Dependencies, "ENGINE_REQUIREMENTS", [])
    ProcessRunner.signalProcessTree(SimpleNamespace(pid=4321), force=False)
    Dependencies.missingWorkerRequirements("PythonSlicer.exe")
    SelfTestData.tinyModel(str(tmp_path), ["PythonSlicer.exe"])
    assert [args[0] for args, _ in calls] == ["taskkill", "PythonSlicer.exe", "PythonSlicer.exe"]
    for args, kwargs in calls:
        assert kwargs.get("creationflags", 0) & ProcessRunner.CREATE_NO_WINDOW, args
