import os
import pathlib
from typing import Annotated, Union

import vtk

import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import *
from slicer.util import VTKObservationMixin
from slicer.parameterNodeWrapper import (
    parameterNodeWrapper,
    parameterPack,
    WithinRange,
)

from slicer import vtkMRMLLabelMapVolumeNode, vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode

from M2DiffModuleLib.EnhanceLogic import (
    CancelledError,
    Device,
    EnhanceJob,
    EnhanceLogic,
    EnhanceResult,
    EnhanceSettings,
    Orientations,
    resourcesDir,
)
from M2DiffModuleLib.ProcessRunner import QtTimer


#
# M2DiffModule
#


class M2DiffModule(ScriptedLoadableModule):
    """Enhance low-dose brain PET to standard-dose quality with M2Diff (MRI-guided diffusion)."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("M2Diff PET Enhancement")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Nuclear Medicine")]
        self.parent.dependencies = []  # PyTorch is an extension dependency, loaded only when Enhance is clicked
        self.parent.contributors = ["M2Diff for 3D Slicer developers"]
        self.parent.helpText = _("""
Enhances a low-dose brain PET to standard-dose quality with M2Diff, a multi-modality multi-task diffusion model
guided by a T1-weighted MRI (optional: MRI-free mode). The model runs in a separate process; progress is shown and
the job can be cancelled. Results: the enhanced PET on the input grid, the T1-to-PET registration, an ROI uptake
table and a linked side-by-side comparison.
See <a href="https://github.com/m2diff/SlicerM2Diff#readme">the documentation</a>.
""")
        self.parent.acknowledgementText = _("""
Implements M2Diff: "M2Diff: Multi-Modality Multi-Task Enhanced Diffusion Model for MRI-Guided Low-Dose PET
Enhancement" (IDDPM backbone with hierarchical feature fusion of PET and MRI encoders, dual decoders). Please cite
the M2Diff paper when using this module. Multi-orientation fusion follows Lucas et al. 2025 (LowGAN);
stripe removal follows Muench et al. 2009.
""")
        slicer.app.connect("startupCompleted()", registerSampleData)


#
# Register sample data sets in Sample Data module
#


def registerSampleData():
    """Add the bundled demo subject (LD-PET, T1, SD-PET) to the Sample Data module."""
    import SampleData

    from M2DiffModuleLib import SampleDataRegistration

    SampleDataRegistration.registerSampleData(SampleData.SampleDataLogic, resourcesDir(), _("M2Diff"))


#
# M2DiffModuleParameterNode
#


@parameterPack
class M2DiffEngineSettings:
    """Engine options: sampling steps, slice orientations, device, random seed, uncertainty map, model file."""

    steps: Annotated[int, WithinRange(1, 1000)] = 2  # the engine's DEFAULT_SAMPLING_STEPS
    orientations: Orientations = Orientations.ALL
    device: Device = Device.AUTO
    seed: Annotated[int, WithinRange(0, 2147483647)] = 0
    uncertainty: bool = False
    modelFile: pathlib.Path = pathlib.Path()


@parameterNodeWrapper
class M2DiffModuleParameterNode:
    """
    ldPet - low-dose PET to enhance.
    t1 - T1-weighted MRI of the same subject (None: MRI-free mode).
    roi - optional ROI segmentation or labelmap for the uptake table.
    outputVolume - volume receiving the enhanced PET (None: a new one is created).
    engine - engine options.
    """

    ldPet: vtkMRMLScalarVolumeNode
    t1: vtkMRMLScalarVolumeNode
    # None must be listed: the wrapper writes the default None, which a Union without it cannot serialize.
    roi: Union[vtkMRMLSegmentationNode, vtkMRMLLabelMapVolumeNode, None]
    outputVolume: vtkMRMLScalarVolumeNode
    engine: M2DiffEngineSettings


def settingsFromParameterNode(parameterNode: M2DiffModuleParameterNode) -> EnhanceSettings:
    """The job settings stored in the parameter node (the only place Apply reads them from)."""
    engine = parameterNode.engine
    modelFile = str(engine.modelFile) if str(engine.modelFile) not in ("", ".") else None
    return EnhanceSettings(steps=engine.steps, orientations=engine.orientations, device=engine.device,
                           seed=engine.seed, uncertainty=engine.uncertainty, weights=modelFile)


#
# M2DiffModuleWidget
#


class M2DiffModuleWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Thin panel: .ui widgets <-> parameter node -> Logic."""

    def __init__(self, parent=None, logic=None, showDialogs: bool = True) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = logic
        self.showDialogs = showDialogs
        self.job: EnhanceJob | None = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None

    def resourcePath(self, filename: str) -> str:
        # Resources/ is shared with the engine: at the repository root in a checkout, next to this file installed.
        return os.path.join(resourcesDir(), filename)

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/M2DiffModule.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = self.logic or M2DiffModuleLogic()
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.progressBar.setVisible(False)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        if self.job is not None:
            # No timer will poll the job again, so nothing may be left to a grace period.
            self.job.cancel(force=True)
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)

    def onSceneStartClose(self, caller, event) -> None:
        if self.job is not None:
            self.job.cancel()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, inputParameterNode: M2DiffModuleParameterNode | None) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            # Widgets carry a "SlicerParameterName" dynamic property in the .ui file.
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
            self._checkCanApply()

    def _checkCanApply(self, caller=None, event=None) -> None:
        if self.job is not None and self.job.cancelRequested:
            self.ui.applyButton.text = _("Cancelling…")
            self.ui.applyButton.toolTip = _("Waiting for the worker to stop")
            self.ui.applyButton.enabled = False
        elif self.job is not None:
            self.ui.applyButton.text = _("Cancel")
            self.ui.applyButton.toolTip = _("Stop the running enhancement")
            self.ui.applyButton.enabled = True
        elif self._parameterNode and self._parameterNode.ldPet:
            self.ui.applyButton.text = _("Enhance")
            self.ui.applyButton.toolTip = _("Enhance the low-dose PET")
            self.ui.applyButton.enabled = True
        else:
            self.ui.applyButton.text = _("Enhance")
            self.ui.applyButton.toolTip = _("Select a low-dose PET volume")
            self.ui.applyButton.enabled = False

    def onApplyButton(self) -> None:
        """Enhance, or Cancel while a job runs."""
        if self.job is not None:
            self.job.cancel()
            self._checkCanApply()
            return
        with slicer.util.tryWithErrorDisplay(_("Failed to start the enhancement."), waitCursor=True):
            self.logic.ensureDependenciesOrRaise(askConfirmation=self.showDialogs)
            self.job = self.logic.startFromParameterNode(self._parameterNode, waitForCompletion=False)
            self.job.progress.connect(self._onProgress)
            self.job.log.connect(self.ui.statusLog.appendPlainText)
            self.job.finished.connect(self._onFinished)
            self.ui.progressBar.setValue(0)
            self.ui.progressBar.setVisible(True)
            self._checkCanApply()

    def _onProgress(self, fraction: float, message: str) -> None:
        self.ui.progressBar.setValue(int(round(100 * fraction)))
        self.ui.progressBar.setFormat(f"%p% {message}")

    def _onFinished(self, result: EnhanceResult | None, error: Exception | None) -> None:
        self.job = None
        self.ui.progressBar.setVisible(False)
        self._checkCanApply()
        if isinstance(error, CancelledError):
            self.ui.statusLog.appendPlainText(_("Cancelled."))
        elif error is not None:
            self.ui.statusLog.appendPlainText(str(error))
            if self.showDialogs:
                details = str(error)
                tail = getattr(error, "stderrTail", "")
                if tail and tail not in details:
                    details += "\n\n" + _("Worker log:") + "\n" + tail
                slicer.util.errorDisplay(_("Enhancement failed."), detailedText=details)
        else:
            self._parameterNode.outputVolume = result.outputVolume
            self.ui.roiTableView.setMRMLTableNode(result.tableNode)
            self.ui.statusLog.appendPlainText(_("Done in {seconds:.1f} s.").format(seconds=result.elapsedS))


#
# M2DiffModuleLogic
#


class M2DiffModuleLogic(ScriptedLoadableModuleLogic):
    """Console-callable logic: ``M2DiffModuleLogic().process(ldPet, t1)``. Never opens dialogs.

    ``workerCommand`` (default ``PythonSlicer -m M2DiffSlicer.enhance.worker``) and ``timerFactory`` (default a Qt timer)
    are the injectable Qt/app edges.
    """

    def __init__(self, workerCommand: list[str] | None = None, timerFactory=None) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.enhanceLogic = EnhanceLogic(workerCommand, timerFactory or QtTimer)

    def getParameterNode(self):
        return M2DiffModuleParameterNode(super().getParameterNode())

    @staticmethod
    def ensureDependenciesOrRaise(askConfirmation: bool = True) -> None:
        """Install torch >= 2.6 (PyTorch extension) and the engine's requirements; called by Apply, not at load."""
        from M2DiffModuleLib import Dependencies

        Dependencies.ensureTorchOrRaise(askConfirmation)
        Dependencies.ensureEngineRequirementsOrRaise()

    def startFromParameterNode(self, parameterNode: M2DiffModuleParameterNode,
                               waitForCompletion: bool = True) -> EnhanceJob:
        return self.enhanceLogic.startOrRaise(parameterNode.ldPet, parameterNode.t1, parameterNode.roi,
                                              parameterNode.outputVolume, settingsFromParameterNode(parameterNode),
                                              waitForCompletion=waitForCompletion)

    def process(self, ldPet, t1=None, roi=None, output=None, steps: int = 2,
                orientations: Orientations = Orientations.ALL, device: Device = Device.AUTO, seed: int = 0,
                uncertainty: bool = False, weights: str | None = None, batchSize: int = 16,
                waitForCompletion: bool = True, showResult: bool = True):
        """Enhance ``ldPet``; blocking by default, returning an ``EnhanceResult`` or raising ``WorkerError``.

        With ``waitForCompletion=False`` returns the running ``EnhanceJob`` (signals progress/log/finished,
        ``cancel()``), polled by a Qt timer.
        """
        settings = EnhanceSettings(steps=steps, orientations=orientations, device=device, seed=seed,
                                   uncertainty=uncertainty, weights=weights, batchSize=batchSize)
        job = self.enhanceLogic.startOrRaise(ldPet, t1, roi, output, settings, waitForCompletion, showResult)
        if not waitForCompletion:
            return job
        if job.error is not None:
            raise job.error
        return job.result


#
# M2DiffModuleTest
#


class M2DiffModuleTest(ScriptedLoadableModuleTest):
    """End to end: the real logic and worker process with a tiny model on a small synthetic subject."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_enhances_small_subject_end_to_end()

    def test_enhances_small_subject_end_to_end(self):
        from M2DiffModuleLib import SelfTestData

        import shutil

        SelfTestData.skipUnlessWorkerCanRun(self)
        self.delayDisplay("Creating a small subject and a tiny model")
        subject = SelfTestData.createSubject(slicer.mrmlScene)
        try:
            logic = M2DiffModuleLogic()
            with SelfTestData.workerLogOnFailure():
                result = logic.process(subject.ldPet, subject.t1, subject.roi, steps=1,
                                       orientations=Orientations.AXIAL, device=Device.CPU, batchSize=64,
                                       weights=SelfTestData.tinyModel(subject.folder))
            self.delayDisplay("Checking output geometry, units, ROI table and layout")
            SelfTestData.checkResult(self, subject, result)
        finally:
            shutil.rmtree(subject.folder, ignore_errors=True)
        self.delayDisplay("Test passed")
