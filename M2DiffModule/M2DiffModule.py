# Annotations stay unevaluated, so Python 3.9 (Slicer 5.8) can import this file and show the version message.
from __future__ import annotations

import os
import sys
from typing import Annotated, Union

import qt
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

from M2DiffModuleLib import ModelCatalogue
from M2DiffModuleLib.DicomExport import DicomExportLogic, seriesFolderName
from M2DiffModuleLib.EnhanceLogic import (
    CancelledError,
    Device,
    EnhanceJob,
    EnhanceLogic,
    EnhanceResult,
    EnhanceSettings,
    Orientations,
    resourcesDir,
    validateInputs,
)
from M2DiffModuleLib.ProcessRunner import QtTimer


# Slicer 5.10 is the first release on Python 3.12, which the module and its worker are written and tested for.
MINIMUM_SLICER_VERSION = (5, 10)


def unsupportedSlicerMessage(major: int, minor: int) -> str | None:
    """The panel's message when this Slicer is older than the minimum version, else None."""
    if (major, minor) >= MINIMUM_SLICER_VERSION:
        return None
    return _("M2Diff PET Enhancement needs 3D Slicer {minimum} or newer; this is Slicer {version}. "
             "Please install a current Slicer release.").format(
        minimum=".".join(str(part) for part in MINIMUM_SLICER_VERSION), version=f"{major}.{minor}")


#
# M2DiffModule
#


class M2DiffModule(ScriptedLoadableModule):
    """Enhance low-dose brain PET to standard-dose quality with M2Diff (MRI-guided diffusion)."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        # The base class looks for Resources/ next to this file; a source checkout has it one folder up.
        self.parent.icon = qt.QIcon(os.path.join(resourcesDir(), "Icons", "M2DiffModule.png"))
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
    """Engine options: sampling steps, slice orientations, device, random seed, uncertainty map, model.

    ``model`` is a catalogue id (Resources/Models/models.json), "" for the catalogue's default model, or
    ``ModelCatalogue.OTHER_MODEL_FILE`` for ``modelFile``. Both are strings (not a Path, whose default Slicer stores
    and shows as "."), kept in step with the model picker by the Widget.
    """

    steps: Annotated[int, WithinRange(1, 1000)] = EnhanceSettings.steps
    orientations: Orientations = EnhanceSettings.orientations
    device: Device = EnhanceSettings.device
    seed: Annotated[int, WithinRange(0, 2147483647)] = EnhanceSettings.seed
    uncertainty: bool = EnhanceSettings.uncertainty
    model: str = ""
    modelFile: str = ""


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


def modelPathOrRaise(engine: M2DiffEngineSettings, models: list[ModelCatalogue.CatalogueModel]) -> str:
    """The checkpoint the chosen model means; ``ValueError`` when there is none."""
    if engine.model == ModelCatalogue.OTHER_MODEL_FILE:
        if not engine.modelFile:
            raise ValueError(_("Choose a model file (.pt), or a model of the catalogue"))
        return engine.modelFile
    model = ModelCatalogue.findModel(models, engine.model or ModelCatalogue.defaultModelId(models))
    if model is None:
        raise ValueError(_("Model '{id}' is not in the catalogue; choose another model").format(id=engine.model))
    return model.path


def settingsFromParameterNode(parameterNode: M2DiffModuleParameterNode,
                              models: list[ModelCatalogue.CatalogueModel]) -> EnhanceSettings:
    """The job settings stored in the parameter node (the only place Apply reads them from)."""
    engine = parameterNode.engine
    return EnhanceSettings(steps=engine.steps, orientations=engine.orientations, device=engine.device,
                           seed=engine.seed, uncertainty=engine.uncertainty, weights=modelPathOrRaise(engine, models))


def inputProblem(parameterNode: M2DiffModuleParameterNode, models: list[ModelCatalogue.CatalogueModel]) -> str | None:
    """Why Enhance cannot run with the panel's inputs and model, in words for the panel; None when it can."""
    try:
        validateInputs(parameterNode.ldPet, parameterNode.t1, parameterNode.roi, parameterNode.outputVolume)
        settingsFromParameterNode(parameterNode, models)
    except ValueError as error:
        return str(error)
    return None


def exportDicomProblem(parameterNode: M2DiffModuleParameterNode) -> str | None:
    """Why the enhanced PET cannot be exported as DICOM, in words for the button's tooltip; None when it can."""
    if parameterNode.ldPet is None or parameterNode.outputVolume is None:
        return _("Enhance first: the export writes the enhanced PET as a new series of the low-dose PET's study")
    if not parameterNode.ldPet.GetAttribute("DICOM.instanceUIDs"):
        return _("The low-dose PET was not loaded with the DICOM module, so there is no series to derive one from")
    return None


def unloadLibModules() -> list[str]:
    """Forget M2DiffModuleLib and its submodules, so that the next import reads them from disk; returns their names.

    Slicer's Reload (slicer.util.reloadScriptedModule) re-executes only this file; without this its imports would
    get the Lib modules cached in sys.modules.
    """
    names = [name for name in sys.modules if name == "M2DiffModuleLib" or name.startswith("M2DiffModuleLib.")]
    for name in names:
        del sys.modules[name]
    return names


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
        versionProblem = unsupportedSlicerMessage(slicer.app.majorVersion, slicer.app.minorVersion)
        if versionProblem:
            label = qt.QLabel(versionProblem)
            label.wordWrap = True
            self.layout.addWidget(label)
            return
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/M2DiffModule.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = self.logic or M2DiffModuleLogic()
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.exportDicomButton.connect("clicked(bool)", self.onExportDicomButton)
        # The picker shows labels and keeps catalogue ids as item data, which Slicer's string connector cannot.
        for model in self.logic.models():
            self.ui.modelSelector.addItem(model.label, model.id)
        self.ui.modelSelector.addItem(_("Other file…"), ModelCatalogue.OTHER_MODEL_FILE)
        self.ui.modelSelector.connect("currentIndexChanged(int)", self._onModelSelected)
        self.ui.modelPathLineEdit.connect("currentPathChanged(QString)", self._onModelFileChanged)
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

    def onReload(self) -> None:
        unloadLibModules()
        ScriptedLoadableModuleWidget.onReload(self)

    def _onModelSelected(self, index: int) -> None:
        if self._parameterNode:
            self._parameterNode.engine.model = self.ui.modelSelector.itemData(index)

    def _onModelFileChanged(self, path: str) -> None:
        if self._parameterNode:
            self._parameterNode.engine.modelFile = path

    def _updateModelPanel(self) -> None:
        models = self.logic.models()
        engine = self._parameterNode.engine
        modelId = engine.model or ModelCatalogue.defaultModelId(models)
        wasBlocked = self.ui.modelSelector.blockSignals(True)
        self.ui.modelSelector.setCurrentIndex(self.ui.modelSelector.findData(modelId))
        self.ui.modelSelector.blockSignals(wasBlocked)
        otherFile = modelId == ModelCatalogue.OTHER_MODEL_FILE
        self.ui.modelPathLabel.visible = otherFile
        self.ui.modelPathLineEdit.visible = otherFile
        if self.ui.modelPathLineEdit.currentPath != engine.modelFile:
            wasBlocked = self.ui.modelPathLineEdit.blockSignals(True)
            self.ui.modelPathLineEdit.currentPath = engine.modelFile
            self.ui.modelPathLineEdit.blockSignals(wasBlocked)
        self.ui.modelInfoLabel.text = ModelCatalogue.modelNotice(models, modelId)

    def _checkCanApply(self, caller=None, event=None) -> None:
        if self._parameterNode:
            self._updateModelPanel()
        if self.job is not None and self.job.cancelRequested:
            self.ui.applyButton.text = _("Cancelling…")
            self.ui.applyButton.toolTip = _("Waiting for the worker to stop")
            self.ui.applyButton.enabled = False
        elif self.job is not None:
            self.ui.applyButton.text = _("Cancel")
            self.ui.applyButton.toolTip = _("Stop the running enhancement")
            self.ui.applyButton.enabled = True
        else:
            # Bad input is explained in the panel and Enhance stays off, so nothing is started or added.
            problem = inputProblem(self._parameterNode, self.logic.models()) if self._parameterNode else None
            self.ui.applyButton.text = _("Enhance")
            self.ui.applyButton.toolTip = problem or _("Enhance the low-dose PET")
            self.ui.applyButton.enabled = self._parameterNode is not None and problem is None
            self.ui.inputStatusLabel.text = problem or ""
        self._updateExportButton()

    def _updateExportButton(self) -> None:
        problem = _("Wait for the enhancement to finish") if self.job is not None else (
            exportDicomProblem(self._parameterNode) if self._parameterNode else _("No parameter node"))
        self.ui.exportDicomButton.enabled = problem is None
        self.ui.exportDicomButton.toolTip = problem or _("Write the enhanced PET as a new DICOM PET series of the "
                                                         "low-dose PET's study (research use only)")

    def onExportDicomButton(self) -> None:
        """Ask for a folder, then write the enhanced PET there as a new DICOM series (a subfolder named after it)."""
        parent = qt.QFileDialog.getExistingDirectory(slicer.util.mainWindow(), _("Folder for the DICOM series"))
        if not parent:
            return
        output = self._parameterNode.outputVolume
        folder = os.path.join(parent, seriesFolderName(output.GetName()))
        with slicer.util.tryWithErrorDisplay(_("Failed to export the DICOM series."), waitCursor=True):
            weights = modelPathOrRaise(self._parameterNode.engine, self.logic.models())
            self.logic.exportDicomOrRaise(output, self._parameterNode.ldPet, folder, weights)
            self.ui.statusLog.appendPlainText(_("DICOM series written to {folder}").format(folder=folder))

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
            summary = _("Done in {seconds:.1f} s.").format(seconds=result.elapsedS)
            if result.warnings:  # out-of-distribution input, safeguard engaged, CPU fallback...: logged above
                summary += " " + _("{count} warning(s) above: read them before using the result.").format(
                    count=len(result.warnings))
            self.ui.statusLog.appendPlainText(summary)


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
        self._models: list[ModelCatalogue.CatalogueModel] | None = None

    def models(self) -> list[ModelCatalogue.CatalogueModel]:
        """The model catalogue, read once (json only: listing models never imports torch)."""
        if self._models is None:
            self._models = ModelCatalogue.loadCatalogue(resourcesDir())
        return self._models

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
                                              parameterNode.outputVolume,
                                              settingsFromParameterNode(parameterNode, self.models()),
                                              waitForCompletion=waitForCompletion)

    def exportDicomOrRaise(self, enhancedVolume, ldPet, folder: str, weights: str | None = None) -> str:
        """Write ``enhancedVolume`` as a DICOM PET series derived from ``ldPet``'s DICOM series into ``folder``
        (absent or empty), by the engine's writer in a PythonSlicer process; returns the folder."""
        logic = DicomExportLogic(environment=self.enhanceLogic.workerEnvironment)
        return logic.exportOrRaise(enhancedVolume, ldPet, folder, weights)

    def process(self, ldPet, t1=None, roi=None, output=None, steps: int = EnhanceSettings.steps,
                orientations: Orientations = EnhanceSettings.orientations, device: Device = EnhanceSettings.device,
                seed: int = EnhanceSettings.seed, uncertainty: bool = EnhanceSettings.uncertainty,
                weights: str | None = EnhanceSettings.weights, batchSize: int = EnhanceSettings.batchSize,
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
