"""The vendored Slicer files (slicer_harness/slicer_source) are byte for byte those of the recorded tags."""

import hashlib
import json
import os

import pytest

import slicer_harness

with open(os.path.join(slicer_harness.SOURCE_DIR, "SOURCE.json"), encoding="utf-8") as _stream:
    SOURCE = json.load(_stream)

FILES = [(tag, path, info["gitBlob"]) for tag, record in SOURCE["tags"].items()
         for path, info in record["files"].items()]


def gitBlobId(path: str) -> str:
    """``git hash-object``: sha1 of "blob <size>\\0" + content."""
    with open(path, "rb") as stream:
        content = stream.read()
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def test_every_supported_slicer_version_is_vendored():
    assert sorted(SOURCE["tags"]) == sorted(f"v{version}" for version in slicer_harness.SLICER_VERSIONS)


@pytest.mark.parametrize("tag,path,blob", FILES, ids=[f"{tag}:{path}" for tag, path, _ in FILES])
def test_vendored_file_is_unmodified(tag, path, blob):
    assert gitBlobId(os.path.join(slicer_harness.SOURCE_DIR, tag, path)) == blob


def test_no_unrecorded_file_is_vendored():
    recorded = {os.path.join(tag, path) for tag, path, _ in FILES}
    found = set()
    for tag in SOURCE["tags"]:
        for root, _, names in os.walk(os.path.join(slicer_harness.SOURCE_DIR, tag)):
            found |= {os.path.relpath(os.path.join(root, name), slicer_harness.SOURCE_DIR)
                      for name in names if name.endswith(".py")}
    assert found == recorded
