"""One Enhance job: inputs to files, the engine worker process, results back into the scene.

The module talks to the engine only through the worker protocol of docs/DEVELOPING.md ("Worker protocol"):
``<python> -m M2DiffSlicer.enhance.worker --job job.json`` with JSON-line events on stdout.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence

from . import ResultNodes, VolumeIO
from .ResultNodes import EnhanceResult
from .ProcessRunner import ExitCode, QtTimer, TimerProtocol, WorkerProcess


class Device(enum.Enum):
    """Where the worker runs the network; ``AUTO`` takes the GPU when the worker finds a usable one."""

    AUTO = "auto"
    GPU = "cuda"
    CPU = "cpu"

    def label(self) -> str:
        return {"AUTO": "Auto (GPU if usable)", "GPU": "GPU (CUDA)", "CPU": "CPU"}[self.name]


class Orientations(enum.Enum):
    """Slice orientations the 2D model is run in; several are fused after stripe removal."""

    ALL = ("axial", "coronal", "sagittal")
    AXIAL = ("axial",)

    def label(self) -> str:
        return {"ALL": "Axial + coronal + sagittal (fused)", "AXIAL": "Axial only (3x faster)"}[self.name]


class WorkerError(RuntimeError):
    """The worker failed; ``errorType`` and ``exitCode`` are the worker's, the message is shown to the user and
    ``stderrTail`` (the last lines the worker wrote to stderr) goes into details and bug reports."""

    def __init__(self, message: str, errorType: str = "M2DiffError", exitCode: int = ExitCode.INTERNAL,
                 stderrTail: str = "") -> None:
        super().__init__(message)
        self.errorType = errorType
        self.exitCode = exitCode
        self.stderrTail = stderrTail


class CancelledError(WorkerError):
    """The user cancelled the job; nothing was added to the scene."""

    def __init__(self) -> None:
        super().__init__("Enhancement cancelled", "CancelledError", ExitCode.CANCELLED)


class Signal:
    """Minimal signal: ``connect(callback)`` and ``emit(*args)`` (callbacks run on the polling thread)."""

    def __init__(self) -> None:
        self._callbacks: list[Callable] = []

    def connect(self, callback: Callable) -> None:
        self._callbacks.append(callback)

    def emit(self, *args) -> None:
        for callback in self._callbacks:
            callback(*args)


@dataclasses.dataclass
class EnhanceSettings:
    """Engine options of one job (mirrors the job.json keys). The defaults are the engine's InferenceOptions
    defaults (Testing/module/test_engine_agreement.py checks them; the module never imports the engine)."""

    steps: int = 1
    orientations: Orientations = Orientations.ALL
    device: Device = Device.AUTO
    seed: int = 0
    uncertainty: bool = False
    weights: str | None = None
    batchSize: int = 16

    def __post_init__(self) -> None:
        if not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"steps must be a positive integer, got {self.steps!r}")
        if not isinstance(self.orientations, Orientations):
            raise ValueError(f"orientations must be an Orientations value, got {self.orientations!r}")
        if not isinstance(self.device, Device):
            raise ValueError(f"device must be a Device value, got {self.device!r}")
        if self.batchSize < 1:
            raise ValueError(f"batchSize must be a positive integer, got {self.batchSize!r}")
        if self.weights is not None and not os.path.isfile(self.weights):
            raise ValueError(f"weights must be an existing .pt model file, got {self.weights!r}")


def defaultWorkerCommand() -> list[str]:
    """``PythonSlicer -m M2DiffSlicer.enhance.worker``: the worker runs in Slicer's Python, in its own process."""
    pythonSlicer = shutil.which("PythonSlicer")
    if pythonSlicer is None:
        raise RuntimeError("PythonSlicer was not found on PATH; it is needed to run the M2Diff worker")
    return [pythonSlicer, "-m", "M2DiffSlicer.enhance.worker"]


def _firstFolderWith(relativePath: str) -> str | None:
    """The installed module's folder (the extension build puts everything next to M2DiffModule.py) or, in a
    source checkout, the repository root, whichever contains ``relativePath``."""
    moduleDir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for candidate in (moduleDir, os.path.dirname(moduleDir)):
        if os.path.exists(os.path.join(candidate, relativePath)):
            return candidate
    return None


def engineSearchPath() -> str | None:
    """Folder holding the ``M2DiffSlicer`` package."""
    return _firstFolderWith(os.path.join("M2DiffSlicer", "__init__.py"))


def resourcesDir() -> str:
    """The ``Resources`` folder (UI, icons, models, sample data, atlas)."""
    folder = _firstFolderWith(os.path.join("Resources", "UI", "M2DiffModule.ui"))
    if folder is None:
        raise RuntimeError("M2DiffModule's Resources folder is missing: the extension is not installed correctly")
    return os.path.join(folder, "Resources")


class EnhanceJob:
    """A running job. Signals: ``progress(fraction, message)``, ``log(text)``, ``finished(result | None, error | None)``."""

    def __init__(self, logic: "EnhanceLogic", inputs: dict, settings: EnhanceSettings, showResult: bool) -> None:
        self.progress = Signal()
        self.log = Signal()
        self.finished = Signal()
        self.result: EnhanceResult | None = None
        self.error: Exception | None = None
        self._logic = logic
        self._inputs = inputs
        self._settings = settings
        self._showResult = showResult
        self._timer: TimerProtocol | None = None
        self._resultEvent: dict | None = None
        self._errorEvent: dict | None = None
        self._startEvent: dict = {}
        self._warnings: list[str] = []
        self._labelNames: dict[int, str] = {}
        self._tempDir = tempfile.mkdtemp(prefix="M2Diff-")
        try:
            jobPath = self._writeJob()
        except Exception:
            shutil.rmtree(self._tempDir, ignore_errors=True)
            raise
        self.process = WorkerProcess(logic.workerCommand() + ["--job", jobPath], self._onEvent, self._onFinished,
                                     env=logic.workerEnvironment())

    @property
    def tempDir(self) -> str:
        return self._tempDir

    @property
    def running(self) -> bool:
        return not self.process.finished

    def _path(self, *parts: str) -> str:
        return os.path.join(self._tempDir, *parts)

    def _writeJob(self) -> str:
        ldPet, t1, roi = self._inputs["ldPet"], self._inputs["t1"], self._inputs["roi"]
        os.makedirs(self._path("in"))
        os.makedirs(self._path("out"))
        VolumeIO.writeVolume(ldPet, self._path("in", "pet.nii.gz"))
        if t1 is not None:
            # Where the user placed the T1 relative to the PET (their transforms folded in), so the registration
            # starts from their alignment; the result nodes need the same matrix.
            self._inputs["t1ToPetFrame"] = VolumeIO.writeVolumeInFrame(t1, ldPet.GetParentTransformNode(),
                                                                       self._path("in", "t1.nii.gz"), "T1 MRI")
        if roi is not None:
            self._labelNames = VolumeIO.writeRoiLabelmap(roi, ldPet, self._path("in", "roi.nii.gz"))
        settings = self._settings
        job = {
            "pet": self._path("in", "pet.nii.gz"),
            "t1": self._path("in", "t1.nii.gz") if t1 is not None else None,
            "roi": self._path("in", "roi.nii.gz") if roi is not None else None,
            "output": self._path("out", "enhanced.nii.gz"),
            "uncertainty_output": self._path("out", "uncertainty.nii.gz") if settings.uncertainty else None,
            "transform_output": self._path("out", "t1_to_pet.tfm") if t1 is not None else None,
            "roi_csv": self._path("out", "roi.csv"),
            "roi_json": self._path("out", "roi.json"),
            "report": self._path("out", "report.json"),
            "weights": settings.weights,
            "steps": settings.steps,
            "orientations": list(settings.orientations.value),
            "device": settings.device.value,
            "seed": settings.seed,
            "batch_size": settings.batchSize,
        }
        jobPath = self._path("job.json")
        with open(jobPath, "w", encoding="utf-8") as jobFile:
            json.dump(job, jobFile, indent=1)
        return jobPath

    def start(self, timer: TimerProtocol | None) -> None:
        """Launch the worker; with a timer, poll it from the timer (GUI), else the caller calls ``wait()``."""
        self.process.start()
        self._timer = timer
        if timer is not None:
            timer.start(100, self.process.poll)

    def wait(self) -> None:
        self.process.wait()

    @property
    def cancelRequested(self) -> bool:
        return self.process.cancelled

    def cancel(self, force: bool = False) -> None:
        """Stop the worker's process tree without waiting for it (the GUI stays live); once every process has
        ended, the next poll emits ``finished`` with a ``CancelledError`` and no node is added. ``force`` kills
        the tree at once and removes the job's files, for when no poll will follow (Slicer closing)."""
        self.process.cancel(force)
        if force:
            shutil.rmtree(self._tempDir, ignore_errors=True)

    def _onEvent(self, event: dict) -> None:
        kind = event.get("event")
        if kind == "progress":
            self.progress.emit(float(event.get("fraction", 0.0)), str(event.get("message", event.get("phase", ""))))
        elif kind == "start":
            self._startEvent = event
            self.log.emit(describeWorker(event, self._settings.device))
        elif kind == "warning":
            self._warnings.append(str(event.get("message", "")))
            self.log.emit(f"Warning: {event.get('message', '')}")
        elif kind == "result":
            self._resultEvent = event
        elif kind == "error":
            self._errorEvent = event
        else:
            self.log.emit(str(event.get("message", event)))

    def _onFinished(self, exitCode: int, stderrText: str) -> None:
        if self._timer is not None:
            self._timer.stop()
        try:
            if exitCode == ExitCode.CANCELLED:
                raise CancelledError()
            if exitCode != ExitCode.OK or self._resultEvent is None:
                raise self._workerError(exitCode, stderrText)
            self.result = ResultNodes.addResultNodesOrRaise(self._inputs, self._resultEvent, self._startEvent,
                                                            self._warnings, self._labelNames, self._showResult)
        except Exception as error:
            self.error = error
        finally:
            shutil.rmtree(self._tempDir, ignore_errors=True)
        if self.error is None:
            self.progress.emit(1.0, "done")
        self.finished.emit(self.result, self.error)

    def _workerError(self, exitCode: int, stderrText: str) -> WorkerError:
        tail = "\n".join(stderrText.strip().splitlines()[-15:])
        if self._errorEvent is not None:
            message = str(self._errorEvent.get("message", ""))
            code = int(self._errorEvent.get("exit_code", exitCode))
            if code == ExitCode.INTERNAL and tail:
                # An engine bug rather than a user-fixable problem: the traceback is what a bug report needs.
                message = f"{message}\n\nWorker log:\n{tail}"
            return WorkerError(message, str(self._errorEvent.get("type", "")), code, tail)
        return WorkerError(f"The M2Diff worker stopped with exit code {exitCode} without a result.\n{tail}",
                           "M2DiffError", exitCode, tail)


def describeWorker(startEvent: dict, requested: Device) -> str:
    """One plain sentence about where the model runs, e.g. that it fell back to the CPU and why."""
    device = startEvent.get("device", "?")
    text = (f"Worker: torch {startEvent.get('torch', '?')} (CUDA build {startEvent.get('cuda_build') or 'none'}), "
            f"running on {device} ({startEvent.get('device_name', '?')}, {startEvent.get('memory_gb', '?')} GB)")
    if device == "cpu" and requested != Device.CPU:
        reason = "this GPU's architecture is not supported by the installed torch" \
            if startEvent.get("arch_ok") is False else "no usable CUDA GPU was found"
        text += f". Running on the CPU because {reason}: expect minutes, not seconds."
    return text


class EnhanceLogic:
    """Creates jobs and turns their results into scene nodes; Qt edges (timer, worker command) are injectable."""

    def __init__(self, workerCommand: Sequence[str] | None = None,
                 timerFactory: Callable[[], TimerProtocol] | None = QtTimer) -> None:
        self._workerCommand = list(workerCommand) if workerCommand is not None else None
        self._timerFactory = timerFactory

    def workerCommand(self) -> list[str]:
        return list(self._workerCommand) if self._workerCommand is not None else defaultWorkerCommand()

    def workerEnvironment(self) -> dict:
        """The child's environment: ours, plus the engine's folder on PYTHONPATH (the Slicer process is untouched)."""
        env = dict(os.environ)
        enginePath = engineSearchPath()
        if enginePath is not None:
            env["PYTHONPATH"] = os.pathsep.join(p for p in (enginePath, env.get("PYTHONPATH")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def startOrRaise(self, ldPet, t1=None, roi=None, output=None, settings: EnhanceSettings | None = None,
                     waitForCompletion: bool = True, showResult: bool = True) -> EnhanceJob:
        """Validate the nodes, write the job, launch the worker; blocking unless ``waitForCompletion`` is False."""
        validateInputs(ldPet, t1, roi, output)
        settings = settings or EnhanceSettings()
        job = EnhanceJob(self, {"ldPet": ldPet, "t1": t1, "roi": roi, "output": output}, settings, showResult)
        if waitForCompletion:
            job.start(None)
            job.wait()
        else:
            job.start(self._timerFactory())
        return job

def _describe(node) -> str:
    return f"'{node.GetName()}' ({node.GetClassName()})" if node is not None else "nothing"


def _checkVolume(node, role: str, argument: str) -> None:
    """A 3D single-component scalar volume with voxels; the message names the role, the argument and the node."""
    if not node.IsA("vtkMRMLScalarVolumeNode") or node.IsA("vtkMRMLLabelMapVolumeNode"):
        raise ValueError(f"The {role} ({argument}) must be a scalar volume, not {_describe(node)}")
    image = node.GetImageData()
    if image is None or node.GetScene() is None:
        raise ValueError(f"The {role} ({argument}) {_describe(node)} has no voxels or is not in a scene")
    if image.GetNumberOfScalarComponents() != 1:
        raise ValueError(f"The {role} ({argument}) must be one 3D volume, but {_describe(node)} has "
                         f"{image.GetNumberOfScalarComponents()} values per voxel (a 4D, vector or colour volume)")
    dims = image.GetDimensions()
    if min(dims) < 8:
        raise ValueError(f"The {role} ({argument}) must be a 3D volume at least 8 voxels along each axis, but "
                         f"{_describe(node)} is {dims[0]} x {dims[1]} x {dims[2]}")


def validateInputs(ldPet, t1, roi, output) -> None:
    """Raise ``ValueError`` naming the input and its argument when a node cannot be used."""
    if ldPet is None:
        raise ValueError("Select a low-dose PET volume (ldPet)")
    _checkVolume(ldPet, "low-dose PET", "ldPet")
    if t1 is not None:
        if t1 is ldPet:
            raise ValueError("The T1 MRI (t1) must be a different volume from the low-dose PET; "
                             "choose None for MRI-free mode")
        _checkVolume(t1, "T1 MRI", "t1")
    if roi is not None and not (roi.IsA("vtkMRMLSegmentationNode") or roi.IsA("vtkMRMLLabelMapVolumeNode")):
        raise ValueError(f"The ROI (roi) must be a segmentation or labelmap volume or None, not {_describe(roi)}")
    if output is not None:
        if not output.IsA("vtkMRMLScalarVolumeNode") or output.IsA("vtkMRMLLabelMapVolumeNode"):
            raise ValueError(f"The enhanced PET (output) must be a scalar volume or None (create new), "
                             f"not {_describe(output)}")
        if output in (ldPet, t1):
            raise ValueError("The enhanced PET (output) must differ from the input volumes: "
                             "the inputs are never overwritten")
