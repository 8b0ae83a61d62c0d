"""The group level of the BIDS App: one cohort ROI table (ROI x participant, input vs enhanced) and a figure.

Reads the participant level's `*_desc-m2diff_roi.tsv` files, so it runs after every participant job ended and
needs nothing else: group/m2diff_cohort_roi.tsv (+ .json describing the columns) and group/m2diff_cohort_roi.png
(enhanced vs input SUVR per region and participant; SUVR change per region across the cohort).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from ..atomic import atomic_path, write_text_atomic
from ..errors import BadInputError
from . import derivatives
from .layout import parse_name

GROUP_FOLDER = "group"
TABLE = "m2diff_cohort_roi.tsv"
FIGURE = "m2diff_cohort_roi.png"
IDENTITY_COLUMNS = {"participant_id": "Participant (sub-<label>).", "session_id": "Session (ses-<label>) or n/a.",
                    "source": "Entities of the PET run (its file name without suffix)."}


def run_group_level(output_dir: Path) -> dict[str, Path]:
    """Write the cohort table, its sidecar and the figure; returns {"table", "sidecar", "figure"}.

    :raises BadInputError: no participant-level ROI tables in `output_dir`.
    """
    rows = cohort_rows(output_dir)
    folder = output_dir / GROUP_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    columns = [*IDENTITY_COLUMNS, *derivatives.ROI_COLUMNS]
    paths = {"table": folder / TABLE, "sidecar": folder / TABLE.replace(".tsv", ".json"), "figure": folder / FIGURE}
    write_text_atomic(paths["table"], derivatives.tsv_text(rows, columns))
    derivatives.write_json(paths["sidecar"], {**{c: {"Description": d} for c, d in IDENTITY_COLUMNS.items()},
                                              **derivatives.roi_columns_sidecar()})
    write_figure(rows, paths["figure"])
    return paths


def cohort_rows(output_dir: Path) -> list[dict[str, Any]]:
    """Every participant-level ROI row, with participant, session and source run in front, in name order."""
    tables = sorted(output_dir.glob(f"sub-*/**/pet/*_desc-{derivatives.DESC}_roi.tsv"))
    if not tables:
        raise BadInputError(f"no participant-level results (sub-*/.../*_desc-{derivatives.DESC}_roi.tsv) in "
                            f"{output_dir}: run the participant level first")
    rows = []
    for table in tables:
        entities = dict(parse_name(table.name)[0])
        source = table.name.split(f"_desc-{derivatives.DESC}")[0]
        identity = {"participant_id": f"sub-{entities['sub']}",
                    "session_id": f"ses-{entities['ses']}" if "ses" in entities else None, "source": source}
        with open(table, encoding="utf-8", newline="") as stream:
            rows += [{**identity, **row} for row in csv.DictReader(stream, delimiter="\t")]
    return rows


def write_figure(rows: list[dict[str, Any]], path: Path) -> None:
    """Enhanced vs input SUVR (one point per region and run) and the SUVR change per region (box per region)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = [(float(r["input_suvr"]), float(r["enhanced_suvr"])) for r in rows if "n/a" not in
             (r["input_suvr"], r["enhanced_suvr"])]
    regions = sorted({r["name"] for r in rows})
    changes = [[float(r["change_pct_suvr"]) for r in rows if r["name"] == name and r["change_pct_suvr"] != "n/a"]
               for name in regions]
    figure, (scatter, boxes) = plt.subplots(1, 2, figsize=(12, 5), gridspec_kw={"width_ratios": [1, 2]})
    if pairs:
        xs, ys = zip(*pairs)
        scatter.scatter(xs, ys, s=12)
        low, high = min(xs + ys), max(xs + ys)
        scatter.plot([low, high], [low, high], color="grey", linewidth=0.8)
    scatter.set(xlabel="input SUVR", ylabel="enhanced SUVR", title="regions x runs")
    boxes.boxplot(changes, tick_labels=regions)
    boxes.axhline(0.0, color="grey", linewidth=0.8)
    boxes.set(ylabel="SUVR change (%)", title=f"{len({r['source'] for r in rows})} runs")
    boxes.tick_params(axis="x", labelrotation=70, labelsize=7)
    figure.tight_layout()
    with atomic_path(path) as temp:
        figure.savefig(temp, dpi=100)
    plt.close(figure)
