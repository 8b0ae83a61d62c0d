"""Helpers of the M2DiffModule Slicer module: worker process, job logic, volumes IO, ROI table, layout."""
