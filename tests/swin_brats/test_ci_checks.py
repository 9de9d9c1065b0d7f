"""The ci/ checks fail when they should: config formatting, pins, file sizes, layout, versions and on/off keys
(ci/check_doc_numbers.py: tests/test_doc_numbers.py)."""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import BUNDLE, REPO

sys.path.insert(0, str(REPO / "ci"))
import check_bundle  # noqa: E402
from check_bundle import (  # noqa: E402
    check_config_format,
    check_export,
    check_file_sizes,
    check_knobs,
    check_layout,
    check_metadata_content,
    check_metadata_schema,
    check_net_in_out,
    check_properties,
    check_version,
)


def write_json(path: Path, content: object, indent: int = 4) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, indent=indent) + "\n")


def set_version(bundle: Path, version: str, changelog: dict[str, str]) -> None:
    write_json(bundle / "configs" / "metadata.json", {"version": version, "changelog": changelog})


def commit(repo: Path, message: str) -> None:
    for args in (["add", "-A"], ["commit", "-qm", message]):
        identity = ["-c", "user.name=ci", "-c", "user.email=ci@example.invalid", "-c", "commit.gpgsign=false"]
        subprocess.run(["git", *identity, *args], cwd=repo, check=True)


def test_config_format_accepts_unsorted_keys_and_flags_indent_and_duplicates(tmp_path: Path) -> None:
    write_json(tmp_path / "configs" / "good.json", {"b": 1, "a": [1, 2]})
    write_json(tmp_path / "configs" / "two_spaces.json", {"a": 1}, indent=2)
    (tmp_path / "configs" / "duplicate.json").write_text('{\n    "a": 1,\n    "a": 2\n}\n')
    problems = check_config_format(tmp_path)
    assert len(problems) == 2
    assert "configs/duplicate.json: duplicate keys ['a']" in problems
    assert any(p.startswith("configs/two_spaces.json: not formatted") for p in problems)


def test_metadata_pins_must_be_exact_and_equal_to_the_installed_packages(tmp_path: Path) -> None:
    assert check_metadata_content(BUNDLE) == []
    meta = json.loads((BUNDLE / "configs" / "metadata.json").read_text())
    meta["numpy_version"] = "2.0.0"
    meta["required_packages_version"] |= {"nibabel": ">=5", "not-a-package-at-all": "1.0"}
    meta["intended_use"] = "research"
    write_json(tmp_path / "configs" / "metadata.json", meta)
    problems = check_metadata_content(tmp_path)
    installed = importlib.metadata.version("numpy").split("+")[0]  # as pip reports it, without a local tag
    assert installed != "2.0.0"
    assert f"numpy: pinned 2.0.0, installed {installed}" in problems
    assert "nibabel: '>=5' is not an exact version pin" in problems
    assert "not-a-package-at-all: pinned 1.0, installed nothing" in problems
    assert "`intended_use` does not say 'not for diagnostic use'" in problems


def test_layout_wants_the_apache_license_and_the_zoo_files(tmp_path: Path) -> None:
    assert check_layout(BUNDLE) == []
    (tmp_path / "LICENSE").write_text("MIT License\n")
    problems = check_layout(tmp_path)
    assert "LICENSE is not the full Apache License 2.0 text" in problems
    assert "missing docs/data_license.txt" in problems and "missing configs/inference_torchscript.json" in problems


def test_file_sizes_flag_released_files_over_1_mb_only(tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    (tmp_path / "models").mkdir()
    (tmp_path / "scripts" / "table.csv").write_bytes(b"0" * (1024 * 1024 + 1))
    (tmp_path / "scripts" / "small.csv").write_bytes(b"0" * (1024 * 1024))
    (tmp_path / "models" / "model.pt").write_bytes(b"0" * (2 * 1024 * 1024))  # weights never reach a release
    assert check_file_sizes(tmp_path) == [f"scripts/table.csv is {1024 * 1024 + 1} bytes (limit {1024 * 1024})"]


def test_version_rules_follow_the_changelog_and_the_git_history(tmp_path: Path) -> None:
    repo, bundle = tmp_path, tmp_path / "demo_bundle"
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    (bundle / "scripts").mkdir(parents=True)
    (bundle / "scripts" / "hook.py").write_text("VALUE = 1\n")
    set_version(bundle, "0.1.0", {"0.1.0": "first"})
    commit(repo, "0.1.0")
    assert check_version(bundle) == []

    set_version(bundle, "0.2.0", {"0.1.0": "first"})
    assert check_version(bundle) == ["version 0.2.0 has no changelog entry"]
    set_version(bundle, "0.2.0", {"0.1.0": "first", "0.2.0": "second"})
    assert check_version(bundle) == [
        "version 0.2.0 is not the first (newest) changelog entry",
        "changelog entries are not in strictly decreasing version order",
    ]
    set_version(bundle, "0.2.0", {"0.2.0": "second", "0.1.0": "first"})
    assert check_version(bundle) == []
    commit(repo, "0.2.0")

    # a released (tagged) version is frozen: any change to a release file needs a bump
    subprocess.run(["git", "tag", "demo_bundle_v0.2.0"], cwd=repo, check=True)
    (bundle / "scripts" / "hook.py").write_text("VALUE = 2\n")
    (bundle / "eval").mkdir()
    (bundle / "eval" / "metrics.csv").write_text("run output, not a release file\n")
    assert check_version(bundle) == [
        "demo_bundle_v0.2.0 is released but 1 file(s) changed (scripts/hook.py, ...): bump version"
    ]
    (bundle / "scripts" / "hook.py").write_text("VALUE = 1\n")
    assert check_version(bundle) == []

    # against a base ref (a pull request's target): changed files need a higher version than there
    (bundle / "scripts" / "new.py").write_text("NEW = True\n")
    assert check_version(bundle, base_ref="HEAD") == [
        "demo_bundle_v0.2.0 is released but 1 file(s) changed (scripts/new.py, ...): bump version",
        "1 file(s) changed since HEAD (scripts/new.py, ...) but version is still 0.2.0",
    ]
    set_version(bundle, "0.2.1", {"0.2.1": "new hook", "0.2.0": "second", "0.1.0": "first"})
    assert check_version(bundle, base_ref="HEAD") == []

    # history: a version may not go back, and no released changelog entry may disappear
    set_version(bundle, "0.1.5", {"0.1.5": "back", "0.1.0": "first"})
    commit(repo, "0.1.5")
    problems = check_version(bundle)
    assert any(p.startswith("version went back from 0.2.0 to 0.1.5 in commit") for p in problems)
    assert any(
        p.startswith("version 0.2.0 (commit") and p.endswith("has no changelog entry any more") for p in problems
    )


@pytest.mark.parametrize("bundle", ["swin_brats_bundle", "classification_bundle"])
def test_both_bundles_pass_the_cheap_checks(bundle: str) -> None:
    checks = (
        check_layout,
        check_metadata_content,
        check_config_format,
        check_file_sizes,
        check_knobs,
        check_version,
    )
    for check in checks:
        assert check(REPO / bundle) == [], check.__name__


def test_knobs_flag_an_unruled_key_an_unchecked_knob_a_stray_entry_a_non_switch_and_a_late_check(
    tmp_path: Path,
) -> None:
    from scripts.knob_rules import integer, switch

    configs = tmp_path / "configs"
    write_json(configs / "evaluate.json", {"load_pretrain": True})
    declared = {"amp": switch(), "epochs": integer(1), "load_pretrain": integer(0)}
    train = {"amp": True, "epochs": 3, "ckpt_dir": "$@bundle_root", "knobs": {"amp": "@amp", "roi": "@epochs"}}
    write_json(configs / "train.json", {**train, "initialize": ["$@knob_check"]})
    assert check_knobs(tmp_path, declared) == [
        "train: knob(s) epochs not in `knobs`, so their values go unchecked",
        "train: knobs#roi is '@epochs', not a reference to the top-level key @roi",
        "train+evaluate: knob(s) epochs, load_pretrain not in `knobs`, so their values go unchecked",
        "train+evaluate: knobs#roi is '@epochs', not a reference to the top-level key @roi",
        "train+evaluate: on/off key load_pretrain is not declared a switch in scripts/knobs.py (the CLI would pass a "
        "lowercase 'false' through as a truthy string)",
    ]
    train["knobs"] = {"amp": "@amp", "epochs": "@epochs", "seed": "@seed"}
    write_json(configs / "train.json", {**train, "seed": 1, "initialize": ["$print()", "$@preflight", "$@knob_check"]})
    write_json(configs / "evaluate.json", {"knobs#load_pretrain": "@load_pretrain", "load_pretrain": 1})
    assert check_knobs(tmp_path, declared) == [
        "train: `initialize` does not run `$@knob_check` before any other work",
        "train: knob(s) seed have no rule in scripts/knobs.py",
        "train+evaluate: `initialize` does not run `$@knob_check` before any other work",
        "train+evaluate: knob(s) seed have no rule in scripts/knobs.py",
    ]


def _bundle_copy(tmp_path: Path) -> Path:
    """A copy of swin_brats_bundle (named so, for the checks' per-bundle settings) without run outputs."""
    target = tmp_path / "swin_brats_bundle"
    shutil.copytree(BUNDLE, target, ignore=shutil.ignore_patterns("eval", "models", "__pycache__", "datalist*.json"))
    (target / "models").mkdir()
    return target


def _edit_json(path: Path, edit) -> None:
    content = json.loads(path.read_text())
    edit(content)
    write_json(path, content)


def test_metadata_schema_flags_an_invalid_metadata_and_a_drifted_schema(tmp_path: Path, monkeypatch) -> None:
    bundle = _bundle_copy(tmp_path)
    assert check_metadata_schema(bundle) == []
    _edit_json(bundle / "configs" / "metadata.json", lambda meta: meta.pop("network_data_format"))
    (problem,) = check_metadata_schema(bundle)
    assert problem.startswith("schema validation failed:") and "network_data_format" in problem
    drifted = tmp_path / "meta_schema_20240725.json"
    drifted.write_text(check_bundle.SCHEMA.read_text().replace('"version"', '"version" ', 1))
    monkeypatch.setattr(check_bundle, "SCHEMA", drifted)
    assert any("has SHA-256" in p and "not the release file's" in p for p in check_metadata_schema(BUNDLE))


def test_net_in_out_flags_a_network_that_does_not_give_the_declared_channels(tmp_path: Path) -> None:
    bundle = _bundle_copy(tmp_path)

    def four_channels(meta: dict) -> None:
        meta["network_data_format"]["outputs"]["pred"]["num_channels"] = 4

    _edit_json(bundle / "configs" / "metadata.json", four_channels)
    (problem,) = check_net_in_out(bundle)
    assert problem.startswith("verify_net_in_out failed:")


def _handlers_elsewhere(config: dict) -> None:
    config["train"]["private_handlers"] = config["train"]["handlers"]
    config["train"]["trainer"]["train_handlers"] = "@train#private_handlers"


def test_properties_flag_a_trainer_whose_handlers_are_not_train_handlers(tmp_path: Path) -> None:
    """A trainer reading its handlers from another list than `train#handlers` would ignore overrides of it."""
    bundle = _bundle_copy(tmp_path)
    _edit_json(bundle / "configs" / "train.json", _handlers_elsewhere)
    problems = check_properties(bundle)
    assert problems and all(p.startswith(("train:", "train+evaluate:")) for p in problems), problems
    assert any("train_handlers" in p for p in problems), problems


def test_export_flags_a_torchscript_overlay_that_still_loads_model_pt(tmp_path: Path) -> None:
    bundle = _bundle_copy(tmp_path)
    _edit_json(bundle / "configs" / "inference_torchscript.json", lambda config: config.pop("load_pretrain"))
    assert check_export(bundle) == ["inference_torchscript.json leaves weight loaders enabled: model_loader"]
