"""The worker process: JSON-line events, exit codes, and cancel by signal (no partial output, no orphans)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from M2DiffSlicer.errors import ExitCode

REPO = Path(__file__).resolve().parents[3]


def _job_file(folder: Path, subject, **fields) -> Path:
    out = folder / "out"
    out.mkdir(exist_ok=True)
    job = {"pet": str(subject["pet"]), "t1": None, "roi": None, "output": str(out / "enhanced.nii.gz"),
           "uncertainty_output": None, "transform_output": None, "roi_csv": None, "roi_json": None,
           "report": str(out / "report.json"), "weights": str(subject["weights"]), "steps": 2,
           "orientations": ["axial", "coronal", "sagittal"], "device": "auto", "seed": 0, "batch_size": 32}
    job.update(fields)
    path = folder / "job.json"
    path.write_text(json.dumps(job))
    return path


def _start(job: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "M2DiffSlicer.enhance.worker", "--job", str(job)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _run(job: Path) -> tuple[int, list[dict]]:
    process = _start(job)
    stdout, _ = process.communicate(timeout=120)
    return process.returncode, [json.loads(line) for line in stdout.splitlines()]


def test_successful_job_prints_start_progress_and_result_as_json_lines(subject, tmp_path):
    code, events = _run(_job_file(tmp_path, subject))
    assert code == ExitCode.OK
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "result" and set(kinds[1:-1]) == {"progress"}
    assert {"torch", "cuda_build", "device", "device_name", "memory_gb", "arch_ok"} <= set(events[0])
    progress = [e for e in events if e["event"] == "progress"]
    assert {"validate", "prepare", "infer", "fuse", "restore", "write"} == {e["phase"] for e in progress}
    assert [e["fraction"] for e in progress] == sorted(e["fraction"] for e in progress)
    assert progress[-1]["fraction"] == 1.0
    assert sorted(os.listdir(tmp_path / "out")) == ["enhanced.nii.gz", "report.json"]
    assert events[-1]["outputs"]["output"] == str(tmp_path / "out" / "enhanced.nii.gz")


@pytest.mark.parametrize("fields, error, code", [
    ({"pet": "no-such-pet.nii.gz"}, "BadInputError", ExitCode.BAD_INPUT),
    ({"steps": 0}, "BadInputError", ExitCode.BAD_INPUT),
    ({"weights": "/nonexistent/model.pt"}, "ModelError", ExitCode.MODEL),
])
def test_failure_is_one_error_event_and_its_exit_code(subject, tmp_path, fields, error, code):
    returncode, events = _run(_job_file(tmp_path, subject, **fields))
    assert returncode == code
    assert events[-1] == {"event": "error", "type": error, "message": events[-1]["message"], "exit_code": int(code)}
    assert os.listdir(tmp_path / "out") == []


def test_corrupt_weights_exit_with_the_model_code(subject, tmp_path):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(Path(subject["weights"]).read_bytes()[:5000])
    returncode, events = _run(_job_file(tmp_path, subject, weights=str(corrupt)))
    assert returncode == ExitCode.MODEL and events[-1]["type"] == "CheckpointError"


def _children(pid: int) -> set[int]:
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.update(int(t) for t in text)
    return found


def test_sigterm_mid_inference_cancels_with_code_5_and_leaves_nothing(subject, tmp_path):
    process = _start(_job_file(tmp_path, subject, steps=400, uncertainty_output=str(tmp_path / "out" / "u.nii.gz")))
    events = []
    for line in process.stdout:
        events.append(json.loads(line))
        if events[-1].get("phase") == "infer":
            break
    assert events[-1].get("phase") == "infer", events[-1]
    children = _children(process.pid)
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    rest, _ = process.communicate(timeout=60)
    assert time.monotonic() - sent < 10
    events += [json.loads(line) for line in rest.splitlines()]
    assert process.returncode == ExitCode.CANCELLED
    assert events[-1]["event"] == "error" and events[-1]["type"] == "CancelledError" and events[-1]["exit_code"] == 5
    assert os.listdir(tmp_path / "out") == []
    assert all(not Path(f"/proc/{child}").exists() for child in children)
