"""ROI uptake table (Segment-Statistics-style columns) and bar chart from the worker's ROI JSON."""

import slicer
import vtk

# (JSON key, column title, unit kind); unit kind "pet" takes the PET volume's own units.
STATISTICS = (
    ("mean", "Mean", "pet"),
    ("std", "Standard deviation", "pet"),
    ("max", "Maximum", "pet"),
    ("peak", "Peak", "pet"),
    ("suvr", "SUVR", "ratio"),
)
IMAGES = (("input", "Low-dose"), ("enhanced", "Enhanced"))
CHANGES = (("mean", "Mean change"), ("suvr", "SUVR change"))


def columnName(image: str, key: str) -> str:
    """Machine-readable column name, e.g. ``enhanced.mean`` (the title shown to users is translatable)."""
    return f"{image}.{key}"


def _number(value) -> float:
    """NaN for values the engine could not compute (null in the JSON, e.g. SUVR without a reference region)."""
    return float("nan") if value is None else float(value)


def petUnitsAndCodes(petVolume) -> tuple[str, dict[str, str]]:
    """The PET's units as a column label and its DICOM codes as column properties, as Segment Statistics shows a
    scalar volume's (Modules/Scripted/SegmentStatistics at v5.10.0/v5.12.0: ``units=GetCodeMeaning()`` becomes
    the unit label; ``DICOM.QuantityCode``/``DICOM.UnitsCode`` hold ``GetAsString()``). E.g. "Standardized Uptake
    Value body weight", not the UCUM code ``{SUVbw}g/ml``, which stays in the properties (and labels the column
    when the code has no meaning)."""
    units, quantity = petVolume.GetVoxelValueUnits(), petVolume.GetVoxelValueQuantity()
    label = (units.GetCodeMeaning() or units.GetCodeValue()) if units is not None else ""
    codes = {key: entry.GetAsString() for key, entry in (("DICOM.QuantityCode", quantity), ("DICOM.UnitsCode", units))
             if entry is not None and entry.GetCodeValue()}
    return label or "", codes


def fillRoiTable(tableNode, roiJson: dict, petVolume, labelNames: dict[int, str]) -> None:
    """Replace the contents of ``tableNode`` with one row per ROI.

    Columns: ``Segment`` (string), ``label`` and ``voxels`` (int), ``volume`` (cm3), then mean/std/max/peak/SUVR for
    the low-dose input and the enhanced output (in ``petVolume``'s units), then the percent changes. ``labelNames``
    (label value -> segment name from the user's segmentation) overrides the worker's names.
    """
    petUnits, petCodes = petUnitsAndCodes(petVolume)
    rows = roiJson["rows"]
    wasModifying = tableNode.StartModify()
    tableNode.RemoveAllColumns()
    columns = [("Segment", "Segment", "", vtk.vtkStringArray, lambda row: labelNames.get(row["label"], row["name"]))]
    columns.append(("label", "Label value", "", vtk.vtkLongArray, lambda row: int(row["label"])))
    columns.append(("voxels", "Voxel count", "voxels", vtk.vtkLongArray, lambda row: int(row["voxels"])))
    columns.append(("volume", "Volume", "cm3", vtk.vtkDoubleArray, lambda row: float(row["volume_ml"])))
    for image, imageTitle in IMAGES:
        for key, title, unitKind in STATISTICS:
            unit = petUnits if unitKind == "pet" else ""
            columns.append((columnName(image, key), f"{imageTitle} {title.lower()}", unit, vtk.vtkDoubleArray,
                            lambda row, image=image, key=key: _number(row[image].get(key))))
    for key, title in CHANGES:
        columns.append((columnName("change", key), title, "%", vtk.vtkDoubleArray,
                        lambda row, key=key: _number(row["change_pct"].get(key))))

    for name, title, unit, arrayClass, _ in columns:
        array = arrayClass()
        array.SetName(name)
        tableNode.AddColumn(array)
        tableNode.SetColumnTitle(name, title)
        if unit:
            tableNode.SetColumnUnitLabel(name, unit)
    for image, _ in IMAGES:
        for key, _, unitKind in STATISTICS:
            for propertyName, code in petCodes.items() if unitKind == "pet" else ():
                tableNode.SetColumnProperty(columnName(image, key), propertyName, code)
    table = tableNode.GetTable()
    for row in rows:
        rowIndex = tableNode.AddEmptyRow()
        for columnIndex, (_, _, _, _, value) in enumerate(columns):
            table.GetColumn(columnIndex).SetValue(rowIndex, value(row))
    tableNode.SetUseColumnTitleAsColumnHeader(True)
    tableNode.SetAttribute("M2Diff.ReferenceRegion", str(roiJson.get("reference_region", "")))
    tableNode.Modified()
    tableNode.EndModify(wasModifying)


def createUptakeChart(scene, tableNode, name: str) -> "slicer.vtkMRMLPlotChartNode":
    """Bar chart of mean uptake per ROI, low-dose next to enhanced; returns the chart node (series are added too)."""
    chartNode = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", name)
    chartNode.SetTitle(name)
    chartNode.SetXAxisTitle("Segment")
    chartNode.SetYAxisTitle(f"Mean uptake [{tableNode.GetColumnUnitLabel(columnName('input', 'mean'))}]")
    for image, imageTitle in IMAGES:
        seriesNode = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", f"{name} {imageTitle}")
        seriesNode.SetAndObserveTableNodeID(tableNode.GetID())
        seriesNode.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeBar)
        seriesNode.SetLabelColumnName("Segment")
        seriesNode.SetYColumnName(columnName(image, "mean"))
        chartNode.AddAndObservePlotSeriesNodeID(seriesNode.GetID())
    return chartNode
