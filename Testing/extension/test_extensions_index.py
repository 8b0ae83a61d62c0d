"""The extension is ready for Slicer's Extensions Index: M2Diff.json follows the index's schema and the checks
of its own validation script (scripts/check_description_files.py), and agrees with the top-level CMakeLists.txt.

The index's script also clones the repository and downloads the icon and screenshots; here the same URLs are
checked against the files of this checkout (no network)."""

import json
import re
import urllib.parse
from pathlib import Path

import jsonschema
import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).parent / "data"
ENTRY_PATH = ROOT / "M2Diff.json"
SCHEMA = json.loads((DATA / "slicer-extension-catalog-entry-schema-v1.0.2.json").read_text())
CMAKE = (ROOT / "CMakeLists.txt").read_text()
METADATA = ("HOMEPAGE", "CATEGORY", "CONTRIBUTORS", "DESCRIPTION", "ICONURL", "SCREENSHOTURLS", "DEPENDS")
PET_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.128"


@pytest.fixture(scope="module")
def entry():
    return json.loads(ENTRY_PATH.read_text())


def cmake_value(name: str) -> str:
    """The value of set(EXTENSION_<name> "...") in the top-level CMakeLists.txt (the index script's pattern)."""
    match = re.search(rf'set\s*\(EXTENSION_{name}\s*"([^"]+)"[ ]*\)', CMAKE)
    assert match, f"EXTENSION_{name} is not set in CMakeLists.txt"
    return match.group(1).strip()


def _github_repo(url: str) -> tuple[str, str]:
    """(owner, repository) of a github.com or raw.githubusercontent.com URL."""
    parts = urllib.parse.urlsplit(url).path.strip("/").split("/")
    return parts[0], parts[1].removesuffix(".git")


def test_entry_follows_the_catalogue_schema_it_names(entry):
    jsonschema.Draft7Validator(SCHEMA).validate(entry)
    assert entry["$schema"].rstrip("#") == SCHEMA["$id"].rstrip("#")


def test_entry_file_has_lf_line_endings_only():
    assert b"\r" not in ENTRY_PATH.read_bytes()


def test_entry_name_is_the_cmake_project_and_does_not_start_with_slicer():
    project = re.findall(r"project\s*\(\s*([^\s\)\n\r]+)", CMAKE, re.IGNORECASE)[0]
    assert project == ENTRY_PATH.stem == "M2Diff"
    assert not ENTRY_PATH.stem.lower().startswith("slicer")


def test_every_extension_metadata_field_is_set():
    assert all(cmake_value(name) for name in METADATA)


def test_category_is_one_the_index_accepts_and_the_cmake_one(entry):
    accepted = json.loads((DATA / "accepted_categories.json").read_text())
    assert entry["category"] in accepted
    assert entry["category"] == cmake_value("CATEGORY")


def test_build_dependencies_are_the_cmake_depends(entry):
    assert entry["build_dependencies"] == cmake_value("DEPENDS").split() == ["PyTorch"]


def test_scm_url_is_https_to_a_repository_named_slicer_and_the_homepage_is_it(entry):
    assert urllib.parse.urlsplit(entry["scm_url"]).scheme in ("https", "git")
    owner, repository = _github_repo(entry["scm_url"])
    assert repository.startswith("Slicer")
    assert _github_repo(cmake_value("HOMEPAGE")) == (owner, repository)


@pytest.mark.parametrize("name", ["ICONURL", "SCREENSHOTURLS"])
def test_image_urls_are_raw_files_of_this_repository_at_the_catalogued_revision(entry, name):
    urls = cmake_value(name).split()
    assert urls
    for url in urls:
        parts = urllib.parse.urlsplit(url)
        assert parts.scheme == "https" and parts.netloc == "raw.githubusercontent.com"
        owner, repository, revision, *path = parts.path.strip("/").split("/")
        assert (owner, repository) == _github_repo(entry["scm_url"]) and revision == entry["scm_revision"]
        image = ROOT.joinpath(*path)
        assert image.is_file(), f"{url} names {image.relative_to(ROOT)}, which is not in the repository"
        assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_license_file_is_at_the_repository_root():
    assert (ROOT / "LICENSE").is_file()


def test_description_is_short_and_says_research_use():
    description = cmake_value("DESCRIPTION")
    assert len(re.findall(r"[.!?](\s|$)", description)) <= 2 and "research use only" in description.lower()


@pytest.mark.parametrize("tags, supported", [
    ({"Modality": "PT", "SOPClassUID": PET_IMAGE_STORAGE}, True),
    ({"Modality": "CT", "SOPClassUID": "1.2.840.10008.5.1.4.1.1.2"}, False),
    ({"Modality": "MR", "SOPClassUID": "1.2.840.10008.5.1.4.1.1.4"}, False),
])
def test_dicom_support_rule_matches_pet_series_only(entry, tags, supported):
    # Slicer's DICOM browser evaluates this rule-engine expression on a series' tags to suggest the extension.
    # rule-engine itself cannot be installed beside python-dateutil 4 (it pins ~=2.7); the rule keeps to
    # comparisons of tags with strings joined by and/or, where rule-engine and Python mean the same.
    rule = entry["dicom_support_rule"]
    comparison = r"\(?\s*[A-Za-z]+ == '[^']*'\s*\)?"
    assert re.fullmatch(rf"\s*{comparison}(\s+(and|or)\s+{comparison})*\s*", rule), rule
    assert eval(rule, {"__builtins__": {}}, tags) is supported


def test_the_module_build_installs_every_python_file_of_the_module():
    # slicerMacroBuildScriptedModule installs only the SCRIPTS it is given: a Lib file missing from the list
    # imports in a source checkout but not in the packaged extension.
    cmake = (ROOT / "M2DiffModule" / "CMakeLists.txt").read_text()
    listed = set(re.findall(r"\$\{MODULE_NAME\}(Lib/\w+\.py|\.py)", cmake))
    present = {f"Lib/{p.name}" for p in (ROOT / "M2DiffModule" / "M2DiffModuleLib").glob("*.py")} | {".py"}
    assert listed == present
