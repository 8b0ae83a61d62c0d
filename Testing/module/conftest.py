"""pytest harness for M2DiffModule on slicer-core (real MRML), see ../../../shared/design/SLICER.md.

Before the module is imported, ``slicer_harness.install`` builds a real scene with the application's logics and
registers small stand-ins for the Qt/app layer. A ``PythonSlicer`` launcher shim on PATH runs this interpreter,
so the logic's default worker command (``PythonSlicer -m M2DiffSlicer.enhance.worker``) is what the tests exercise.
"""

import os
import stat
import sys
import tempfile

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
MODULE_DIR = os.path.join(REPO, "M2DiffModule")
for path in (HERE, MODULE_DIR):
    if path not in sys.path:
        sys.path.insert(0, path)

import slicer_harness  # noqa: E402

CORE = slicer_harness.install({"M2DiffModule": os.path.join(MODULE_DIR, "M2DiffModule.py")})


def _installPythonSlicerShim() -> str:
    binDir = tempfile.mkdtemp(prefix="M2DiffPythonSlicer-")
    shim = os.path.join(binDir, "PythonSlicer")
    with open(shim, "w") as stream:
        # Like Slicer's launcher, a separate process that starts the interpreter (here via exec).
        stream.write(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    os.chmod(shim, os.stat(shim).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    os.environ["PATH"] = binDir + os.pathsep + os.environ.get("PATH", "")
    return binDir


PYTHON_SLICER_DIR = _installPythonSlicerShim()


class ManualTimer:
    """``TimerProtocol`` driven by the test: ``tick()`` is one QTimer timeout."""

    def __init__(self) -> None:
        self.callback = None
        self.intervalMs = None

    def start(self, intervalMs, callback) -> None:
        self.intervalMs, self.callback = intervalMs, callback

    def stop(self) -> None:
        self.callback = None

    @property
    def active(self) -> bool:
        return self.callback is not None

    def tick(self) -> None:
        if self.callback is not None:
            self.callback()


@pytest.fixture
def scene():
    """The application's scene, cleared before and after the test (as Slicer's module tests do in setUp)."""
    import slicer

    slicer.mrmlScene.Clear()
    yield slicer.mrmlScene
    slicer.mrmlScene.Clear()


@pytest.fixture
def subject(scene):
    import shutil

    from M2DiffModuleLib import SelfTestData

    subject = SelfTestData.createSubject(scene)
    yield subject
    shutil.rmtree(subject.folder, ignore_errors=True)


@pytest.fixture
def fakeWorker():
    """``fakeWorker(mode, *extra)`` -> worker command for Testing/module/fake_worker.py in that mode."""
    def command(mode: str, *extra: str) -> list[str]:
        return [sys.executable, os.path.join(HERE, "fake_worker.py"), "--mode", mode, *extra]

    return command


@pytest.fixture
def manualTimer():
    return ManualTimer()


def sceneSnapshot(scene) -> list[tuple[str, str]]:
    """(ID, class) of every node, to assert that a failed or cancelled job added nothing."""
    return sorted((scene.GetNthNode(i).GetID(), scene.GetNthNode(i).GetClassName())
                  for i in range(scene.GetNumberOfNodes()))
