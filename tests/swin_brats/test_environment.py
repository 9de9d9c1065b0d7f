"""The environment gate: another MONAI minor version or a missing package stops every workflow with one line and
the fix; patch-level differences only warn; `--check_versions False` runs anyway. Both bundles."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import BUNDLE, REPO, TINY, run_bundle
from scripts.environment import require_versions, version_problems

META = json.loads((BUNDLE / "configs" / "metadata.json").read_text())
FAKE_MONAI = """import importlib.metadata as _metadata
_real_version = _metadata.version
_metadata.version = lambda name: "{version}" if name == "monai" else _real_version(name)
"""


@pytest.fixture
def installed_monai(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Make `importlib.metadata.version('monai')` report another version in the processes the test starts."""

    def fake(version: str) -> None:
        folder = tmp_path / f"fake_monai_{version}"
        folder.mkdir()
        (folder / "sitecustomize.py").write_text(FAKE_MONAI.format(version=version))
        monkeypatch.setenv("PYTHONPATH", str(folder))

    return fake


def test_minor_difference_or_missing_package_blocks_and_a_patch_difference_warns() -> None:
    meta = {**META, "monai_version": "1.5.2", "required_packages_version": {**META["required_packages_version"]}}
    meta["required_packages_version"]["no-such-package-here"] = "1.0"
    patch = META["required_packages_version"]["scipy"].rsplit(".", 1)[0] + ".999"
    meta["required_packages_version"]["scipy"] = patch
    blocking, warnings = version_problems(meta)
    assert blocking == [f"monai {META['monai_version']} is installed, expected 1.5.2",
                        "no-such-package-here is not installed (expected 1.0)"]  # fmt: skip
    assert warnings == [f"scipy {META['required_packages_version']['scipy']} is installed, expected {patch}"]
    with pytest.raises(SystemExit, match=r"Fix: pip install monai==1\.5\.2 no-such-package-here==1\.0"):
        require_versions(meta)
    require_versions(meta, enabled=False)  # the switch: no stop
    assert version_problems(META) == ([], [])  # this environment is the one the bundle was made for


@pytest.mark.parametrize("workflow", ["training", "inference"])
def test_an_older_monai_stops_the_workflow_with_one_line(make_dataset, tmp_path, installed_monai, workflow) -> None:
    installed_monai("1.5.0")
    config = "configs/train.json" if workflow == "training" else "configs/inference.json"
    result = run_bundle(workflow, "--config_file", config, "--dataset_dir", str(make_dataset("brats2021")),
                        "--ckpt_dir", str(tmp_path / "models"), "--output_dir", str(tmp_path / "out"), *TINY,
                        expect_ok=False)  # fmt: skip
    assert result.returncode == 1
    version = META["monai_version"]
    expected = (f"error: monai 1.5.0 is installed, expected {version} (this bundle's metadata.json). "
                f"Fix: pip install monai=={version} (or pass --check_versions False to run anyway)")  # fmt: skip
    assert expected in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()


def test_check_versions_false_runs_anyway_and_a_patch_release_only_warns(make_dataset, tmp_path, installed_monai):
    installed_monai("1.5.0")
    data = make_dataset("brats2021")
    common = ["--dataset_dir", str(data), "--num_folds", "3", "--epochs", "1", *TINY]
    result = run_bundle("training", "--config_file", "configs/train.json", "--check_versions", "False",
                        "--ckpt_dir", str(tmp_path / "a"), "--output_dir", str(tmp_path / "a"), *common)  # fmt: skip
    assert "check_versions is False" in result.stdout + result.stderr and (tmp_path / "a" / "model.pt").is_file()
    patch = META["monai_version"].rsplit(".", 1)[0] + ".0"
    if patch == META["monai_version"]:
        patch = META["monai_version"].rsplit(".", 1)[0] + ".99"
    installed_monai(patch)
    # inference with the model just trained: the gate is the same in every workflow, and inference is the cheaper one
    result = run_bundle("inference", "--config_file", "configs/inference.json", "--dataset_dir", str(data),
                        "--ckpt_dir", str(tmp_path / "a"), "--output_dir", str(tmp_path / "b"), *TINY)  # fmt: skip
    assert f"monai {patch} is installed, expected {META['monai_version']}" in result.stdout + result.stderr
    assert list((tmp_path / "b").glob("*.nii.gz"))


def test_the_classifier_has_the_same_gate(tmp_path: Path, installed_monai) -> None:
    installed_monai("1.5.0")
    bundle = REPO / "classification_bundle"
    for workflow, config in (("training", "configs/train.json"), ("inference", "configs/inference.json")):
        result = subprocess.run([sys.executable, "-m", "monai.bundle", "run", workflow, "--config_file", config,
                                 "--output_dir", str(tmp_path / workflow)], cwd=bundle, capture_output=True,
                                text=True)  # fmt: skip
        assert result.returncode == 1, result.stderr[-2000:]
        assert "error: monai 1.5.0 is installed, expected" in result.stderr and "Traceback" not in result.stderr
