"""The checks a model-zoo reviewer runs on a bundle, offline: one line per check, exit status 1 if any fails.

Run: python ci/check_bundle.py BUNDLE_DIR [BUNDLE_DIR ...] [--base-ref REF] [--only CHECK ...]

Several bundles are checked in one child process each (every bundle has its own top-level `scripts` package).
What each check verifies is listed in ci/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.metadata
import io
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from package_bundle import excluded_reason, release_files  # noqa: E402

CI_DIR = Path(__file__).resolve().parent
SCHEMA = CI_DIR / "meta_schema_20240725.json"
# SHA-256 of the release file the schema URL names (MONAI-extra-test-data 0.8.1), so the vendored copy cannot drift
SCHEMA_SHA256 = "cd64aa8a5904426f6fc6855dabe46af8c742d5bad644b4e9cfb78ebad09ad678"
MAX_FILE_BYTES = 1024 * 1024  # pre-commit check-added-large-files --maxkb=1024, as in the model zoo
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")
EXACT_PIN = re.compile(r"^\d+(\.\d+)*$")
ZOO_TEXT_KEYS = ("name", "task", "description", "authors", "copyright", "data_source", "data_type")
ZOO_TEXT_KEYS += ("image_classes", "label_classes", "pred_classes", "intended_use")
REQUIRED_FILES = ("LICENSE", "configs/metadata.json", "configs/inference.json", "configs/train.json")
REQUIRED_FILES += ("configs/evaluate.json", "configs/logging.conf", "configs/inference_torchscript.json")
REQUIRED_FILES += ("docs/README.md", "docs/data_license.txt")
MODEL_CARD_SECTIONS = ("Overview", "Data", "Training configuration", "Input and output", "Performance")
MODEL_CARD_SECTIONS += ("MONAI Bundle Commands", "References", "License")
PARITY_TOLERANCE = 1e-4
WEIGHT_LOADERS = {"CheckpointLoader", "load_model"}
WORKFLOWS = {
    "train": ("train", ["train.json"]),
    "train+evaluate": ("train", ["train.json", "evaluate.json"]),
    "inference": ("inference", ["inference.json"]),
}


# ----------------------------------------------------------------------------------------------- per-bundle settings
def _swin_overrides(tmp: Path) -> dict[str, Any]:
    """Tiny synthetic BraTS 2021 cases and feature size 12 for the swin_brats_bundle workflows."""
    from scripts.synthetic_data import write_dataset

    write_dataset(tmp / "data", "brats2021", 3, 1, (64, 64, 48), 0)
    return {
        "dataset_dir": str(tmp / "data"),
        "num_folds": 3,
        "feature_size": 12,
        "num_workers": 0,
        "load_pretrain": False,
    }


def _classification_overrides(tmp: Path) -> dict[str, Any]:
    """60 embedded digits and feature size 12 for the classification_bundle workflows (no trained model to load)."""
    return {"num_samples": 60, "feature_size": 12, "num_threads": 0, "load_pretrain": False}


# Workflow overrides (check_properties) and the TorchScript export settings, per bundle folder name.
SETTINGS: dict[str, dict[str, Any]] = {
    "swin_brats_bundle": {
        "workflow_overrides": _swin_overrides,
        "export_overrides": {"feature_size": 12},
        "export_input_shape": [1, 4, 64, 64, 64],
    },
    "classification_bundle": {
        "workflow_overrides": _classification_overrides,
        "export_overrides": {},
        "export_input_shape": [1, 1, 14, 14, 14],
    },
}


# ------------------------------------------------------------------------------------------------------ helpers
def semver(text: str) -> tuple[int, int, int]:
    """(major, minor, patch) of a `X.Y.Z` version; ValueError otherwise."""
    match = SEMVER.match(text)
    if not match:
        raise ValueError(f"'{text}' is not a semantic version X.Y.Z")
    return int(match[1]), int(match[2]), int(match[3])


def load_json_strict(text: str) -> Any:
    """json.loads that refuses duplicate keys (json keeps the last one silently)."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in items]
        duplicates = sorted({k for k in keys if keys.count(k) > 1})
        if duplicates:
            raise ValueError(f"duplicate keys {duplicates}")
        return dict(items)

    return json.loads(text, object_pairs_hook=pairs)


def git(cwd: Path, *args: str) -> str | None:
    """Output of a git command run in `cwd`, or None when git or the repository is not available."""
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def metadata(bundle: Path) -> dict[str, Any]:
    """The bundle's configs/metadata.json."""
    return json.loads((bundle / "configs" / "metadata.json").read_text())


def installed_version(package: str) -> str | None:
    """Installed distribution version without a local tag (`2.13.0+cpu` -> `2.13.0`), None if not installed."""
    try:
        return importlib.metadata.version(package).split("+")[0]
    except importlib.metadata.PackageNotFoundError:
        return None


# ------------------------------------------------------------------------------------------------------- checks
def check_layout(bundle: Path) -> list[str]:
    """Zoo files exist; LICENSE is Apache-2.0; the model card has the zoo sections; large_files entries are complete."""
    problems = [f"missing {name}" for name in REQUIRED_FILES if not (bundle / name).is_file()]
    license_file = bundle / "LICENSE"
    if license_file.is_file():
        text = license_file.read_text()
        if "Apache License" not in text or "Version 2.0" not in text or "END OF TERMS AND CONDITIONS" not in text:
            problems.append("LICENSE is not the full Apache License 2.0 text")
    card = bundle / "docs" / "README.md"
    if card.is_file():
        headings = {line.lstrip("#").strip() for line in card.read_text().splitlines() if line.startswith("## ")}
        problems += [f"docs/README.md has no '## {s}' section" for s in MODEL_CARD_SECTIONS if s not in headings]
    for large in sorted(bundle.glob("large_files.*")):
        problems += _check_large_files(large)
    return problems


def _check_large_files(path: Path) -> list[str]:
    """Every entry of a large_files.json/yml names a `path` and a `url` (model-zoo download format)."""
    if path.suffix == ".json":
        entries = json.loads(path.read_text()).get("large_files", [])
    else:
        import yaml

        entries = (yaml.safe_load(path.read_text()) or {}).get("large_files", [])
    return [
        f"{path.name}: entry {i} needs 'path' and 'url'" for i, e in enumerate(entries) if not {"path", "url"} <= set(e)
    ]


def check_metadata_schema(bundle: Path) -> list[str]:
    """configs/metadata.json validates against the vendored meta_schema_20240725.json, named in its `schema`."""
    from monai.bundle import verify_metadata

    meta_file = bundle / "configs" / "metadata.json"
    problems = []
    digest = hashlib.sha256(SCHEMA.read_bytes()).hexdigest()
    if digest != SCHEMA_SHA256:
        problems.append(
            f"vendored {SCHEMA.name} has SHA-256 {digest[:16]}..., not the release file's {SCHEMA_SHA256[:16]}..."
        )
    if not str(metadata(bundle).get("schema", "")).endswith("/" + SCHEMA.name):
        problems.append(f"`schema` does not point at {SCHEMA.name}")
    try:
        verify_metadata(meta_file=str(meta_file), filepath=str(SCHEMA))
    except Exception as error:  # verify_metadata raises the jsonschema error or a ValueError
        problems.append(f"schema validation failed: {str(error).splitlines()[0]}")
    return problems


def check_metadata_content(bundle: Path) -> list[str]:
    """Zoo descriptive keys are filled in; every version is an exact pin equal to the installed package."""
    meta = metadata(bundle)
    problems = [f"`{key}` is missing or empty" for key in ZOO_TEXT_KEYS if not str(meta.get(key, "")).strip()]
    if "not for diagnostic use" not in str(meta.get("intended_use", "")).lower():
        problems.append("`intended_use` does not say 'not for diagnostic use'")
    references = meta.get("references")
    if not (isinstance(references, list) and references and all(isinstance(r, str) and r for r in references)):
        problems.append("`references` must be a non-empty list of strings")
    if "optional_packages_version" in meta:
        problems.append("`optional_packages_version` is the 2022 schema key; use `required_packages_version`")
    pins = {"monai": meta.get("monai_version"), "torch": meta.get("pytorch_version")}
    pins["numpy"] = meta.get("numpy_version")
    pins.update(meta.get("required_packages_version") or {})
    for package, pinned in pins.items():
        if not isinstance(pinned, str) or not EXACT_PIN.match(pinned):
            problems.append(f"{package}: '{pinned}' is not an exact version pin")
            continue
        installed = installed_version(package)
        if installed != pinned:
            problems.append(f"{package}: pinned {pinned}, installed {installed or 'nothing'}")
    return problems


def check_config_format(bundle: Path) -> list[str]:
    """Every configs/*.json is 4-space pretty JSON in its own key order with a final newline, no duplicate keys."""
    problems = []
    for path in sorted((bundle / "configs").glob("*.json")):
        text = path.read_text()
        try:
            content = load_json_strict(text)
        except ValueError as error:
            problems.append(f"configs/{path.name}: {error}")
            continue
        if text != json.dumps(content, indent=4) + "\n":
            problems.append(f"configs/{path.name}: not formatted as json.dumps(indent=4) + newline (keys unsorted)")
    return problems


def check_file_sizes(bundle: Path) -> list[str]:
    """No released file, and no file git tracks in the bundle, is over 1 MB (1024 KiB)."""
    relatives = set(release_files(bundle))
    tracked = git(bundle, "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--full-name", ".")
    top = git(bundle, "rev-parse", "--show-toplevel")
    if tracked is not None and top is not None:
        root = Path(top.strip())
        for name in filter(None, tracked.split("\0")):
            path = root / name
            if path.is_file():
                relatives.add(PurePosixPath(path.resolve().relative_to(bundle.resolve()).as_posix()))
    return [
        f"{relative} is {(bundle / relative).stat().st_size} bytes (limit {MAX_FILE_BYTES})"
        for relative in sorted(relatives)
        if (bundle / relative).is_file() and (bundle / relative).stat().st_size > MAX_FILE_BYTES
    ]


def check_version(bundle: Path, base_ref: str | None = None) -> list[str]:
    """`version` is the newest changelog entry; with git: versions never go back, released versions stay frozen."""
    meta = metadata(bundle)
    version, changelog = meta.get("version", ""), meta.get("changelog") or {}
    problems = []
    try:
        current = semver(version)
        keys = [semver(key) for key in changelog]
    except ValueError as error:
        return [str(error)]
    if version not in changelog:
        problems.append(f"version {version} has no changelog entry")
    elif list(changelog)[0] != version:
        problems.append(f"version {version} is not the first (newest) changelog entry")
    if keys != sorted(keys, reverse=True) or len(set(keys)) != len(keys):
        problems.append("changelog entries are not in strictly decreasing version order")
    if any(not str(text).strip() for text in changelog.values()):
        problems.append("a changelog entry is empty")
    if max(keys, default=current) > current:
        problems.append(f"version {version} is older than changelog entry {'.'.join(map(str, max(keys)))}")
    return problems + _check_version_history(bundle, version, changelog, base_ref)


def _check_version_history(bundle: Path, version: str, changelog: dict, base_ref: str | None) -> list[str]:
    """Git rules: history versions never decrease and stay in the changelog; tagged or base-ref versions are frozen."""
    top = git(bundle, "rev-parse", "--show-toplevel")
    if top is None:
        print(f"     note: {bundle.name} is not in a git checkout; history rules not checked")
        return []
    meta_path = (bundle / "configs" / "metadata.json").resolve().relative_to(Path(top.strip()).resolve()).as_posix()
    problems, previous = [], None
    for commit in (
        git(bundle, "log", "--reverse", "--topo-order", "--format=%H", "--", f":(top){meta_path}") or ""
    ).split():
        try:
            old = json.loads(git(bundle, "show", f"{commit}:{meta_path}") or "")["version"]
            old_key = semver(old)
        except (ValueError, KeyError, TypeError):
            continue
        if previous and old_key < previous[1]:
            problems.append(f"version went back from {previous[0]} to {old} in commit {commit[:10]}")
        if old not in changelog:
            problems.append(f"version {old} (commit {commit[:10]}) has no changelog entry any more")
        previous = (old, old_key)
    if previous and semver(version) < previous[1]:
        problems.append(f"version {version} is older than the committed {previous[0]}")
    tag = f"{bundle.resolve().name}_v{version}"
    if git(bundle, "rev-parse", "--verify", "--quiet", f"refs/tags/{tag}") is not None:
        changed = _changed_since(bundle, tag)
        if changed:
            problems.append(f"{tag} is released but {len(changed)} file(s) changed ({changed[0]}, ...): bump version")
    if base_ref:
        problems += _check_against_base(bundle, meta_path, version, base_ref)
    return problems


def _changed_since(bundle: Path, ref: str) -> list[str]:
    """Bundle-relative release paths that differ from `ref`: committed, staged, unstaged, deleted or new."""
    top = Path((git(bundle, "rev-parse", "--show-toplevel") or "").strip()).resolve()
    prefix = PurePosixPath(bundle.resolve().relative_to(top).as_posix())
    diff = git(bundle, "diff", "--name-only", ref, "--", ".") or ""
    new = git(bundle, "ls-files", "--others", "--exclude-standard", "--full-name", ".") or ""
    changed = set()
    for name in filter(None, (diff + new).splitlines()):
        relative = PurePosixPath(name).relative_to(prefix)
        if excluded_reason(relative) is None:
            changed.add(str(relative))
    return sorted(changed)


def _check_against_base(bundle: Path, meta_path: str, version: str, base_ref: str) -> list[str]:
    """A bundle whose files differ from `base_ref` must carry a higher version than it had there."""
    if git(bundle, "rev-parse", "--verify", "--quiet", f"{base_ref}^{{commit}}") is None:
        return [f"base ref {base_ref} not found"]
    changed = _changed_since(bundle, base_ref)
    text = git(bundle, "show", f"{base_ref}:{meta_path}")
    if not changed or text is None:
        return []
    old = json.loads(text).get("version", "0.0.0")
    if semver(version) <= semver(old):
        return [f"{len(changed)} file(s) changed since {base_ref} ({changed[0]}, ...) but version is still {old}"]
    return []


def check_net_in_out(bundle: Path) -> list[str]:
    """`verify_net_in_out` on the default `network_def` of configs/inference.json with the metadata's shapes."""
    from monai.bundle import verify_net_in_out

    try:
        verify_net_in_out(
            net_id="network_def",
            meta_file=str(bundle / "configs" / "metadata.json"),
            config_file=str(bundle / "configs" / "inference.json"),
            device="cpu",
        )
    except Exception as error:  # any failure to build or run the network is the finding
        return [f"verify_net_in_out failed: {type(error).__name__}: {str(error).splitlines()[0]}"]
    return []


def check_properties(bundle: Path) -> list[str]:
    """ConfigWorkflow(...).check_properties() is empty for train, train+evaluate and inference (tiny overrides)."""
    from monai.bundle import ConfigWorkflow

    settings = SETTINGS.get(bundle.resolve().name, {})
    problems = []
    with tempfile.TemporaryDirectory() as tmp:
        overrides = settings.get("workflow_overrides", lambda _: {})(Path(tmp))
        for name, (workflow_type, files) in WORKFLOWS.items():
            workflow = ConfigWorkflow(
                workflow_type=workflow_type,
                config_file=[str(bundle / "configs" / f) for f in files],
                meta_file=str(bundle / "configs" / "metadata.json"),
                logging_file=str(bundle / "configs" / "logging.conf"),
                bundle_root=str(bundle),
                output_dir=str(Path(tmp) / name / "eval"),
                ckpt_dir=str(Path(tmp) / name / "models"),
                **overrides,
            )
            try:
                workflow.initialize()
                missing = workflow.check_properties()
            except Exception as error:  # a workflow that cannot even be set up fails the check
                missing = [f"{type(error).__name__}: {str(error).splitlines()[0]}"]
            problems += [f"{name}: {item}" for item in missing or []]
    return problems


def check_export(bundle: Path) -> list[str]:
    """TorchScript round trip: ckpt_export (traced) of a fresh checkpoint, parity with eager, the TS override config."""
    import torch
    from monai.bundle import ConfigParser, ckpt_export

    settings = SETTINGS.get(bundle.resolve().name, {})
    overrides, shape = settings.get("export_overrides", {}), settings.get("export_input_shape")
    configs = bundle / "configs"
    with tempfile.TemporaryDirectory() as tmp:
        parser = ConfigParser()
        parser.read_config([str(configs / "inference.json")])
        parser.read_meta(str(configs / "metadata.json"))
        parser.update({"bundle_root": str(bundle), **overrides})
        shape = shape or [1, *_fake_input_shape(parser)[1:]]
        torch.manual_seed(0)
        eager = parser.get_parsed_content("network_def").eval()
        torch.save(eager.state_dict(), Path(tmp) / "model.pt")
        ts_file = Path(tmp) / "model.ts"
        try:  # the function behind `python -m monai.bundle ckpt_export`, in this process to save start-up time
            ckpt_export(
                net_id="network_def",
                filepath=str(ts_file),
                ckpt_file=str(Path(tmp) / "model.pt"),
                meta_file=str(configs / "metadata.json"),
                config_file=str(configs / "inference.json"),
                use_trace=True,
                input_shape=shape,
                converter_kwargs={"check_trace": False},  # parity is checked below, on fresh inputs
                bundle_root=str(bundle),
                **overrides,
            )
        except Exception as error:  # an export that fails is the finding
            return [f"ckpt_export failed: {type(error).__name__}: {str(error).splitlines()[0]}"]
        extra = {"metadata.json": "", "inference.json": ""}
        traced = torch.jit.load(str(ts_file), map_location="cpu", _extra_files=extra).eval()
        problems = []
        if json.loads(extra["metadata.json"] or "{}").get("version") != metadata(bundle)["version"]:
            problems.append("the exported file does not carry the bundle's metadata.json")
        x = torch.rand(2, *shape[1:])  # batch 2: sliding-window and loader batches must not be baked into the trace
        with torch.no_grad():
            difference = (traced(x) - eager(x)).abs().max().item()
        if not difference <= PARITY_TOLERANCE:
            problems.append(f"TorchScript vs eager max abs difference {difference:.2e} > {PARITY_TOLERANCE}")
        problems += _check_torchscript_override(bundle, Path(tmp), overrides, traced)
    return problems


def _fake_input_shape(parser: Any) -> list[int]:
    """Input shape (1, C, *spatial) from the metadata, as ckpt_export builds it without --input_shape."""
    from monai.bundle.scripts import _get_fake_input_shape

    return list(_get_fake_input_shape(parser=parser))


def _check_torchscript_override(bundle: Path, ckpt_dir: Path, overrides: dict, traced: Any) -> list[str]:
    """inference.json + inference_torchscript.json loads no weights and builds its network from models/model.ts."""
    import torch
    from monai.bundle import ConfigParser

    override = bundle / "configs" / "inference_torchscript.json"
    if not override.is_file():
        return ["configs/inference_torchscript.json is missing"]
    parser = ConfigParser()
    parser.read_config([str(bundle / "configs" / "inference.json"), str(override)])
    parser.update({"bundle_root": str(bundle), "ckpt_dir": str(ckpt_dir), **overrides})
    loaders = _enabled_weight_loaders(parser, parser.get())
    if loaders:
        return [f"inference_torchscript.json leaves weight loaders enabled: {', '.join(loaders)}"]
    network = parser.get_parsed_content("network_def")
    if not isinstance(network, torch.jit.ScriptModule):
        return [f"inference_torchscript.json: network_def is a {type(network).__name__}, not the TorchScript file"]
    mine, exported = network.state_dict(), traced.state_dict()
    same_weights = mine.keys() == exported.keys() and all(torch.equal(mine[k], exported[k]) for k in mine)
    if network.code != traced.code or not same_weights:
        return ["inference_torchscript.json: its network is not the exported models/model.ts"]
    return []


def _enabled_weight_loaders(parser: Any, config: Any, prefix: str = "") -> list[str]:
    """Ids of components that would load models/model.pt (CheckpointLoader, load_model) and are not disabled."""
    found = []
    items = config.items() if isinstance(config, dict) else enumerate(config) if isinstance(config, list) else ()
    for key, value in items:
        item_id = f"{prefix}#{key}" if prefix else str(key)
        target = value.get("_target_", "") if isinstance(value, dict) else ""
        if isinstance(target, str) and target.split(".")[-1] in WEIGHT_LOADERS:
            disabled = parser.get_parsed_content(f"{item_id}#_disabled_") if "_disabled_" in value else False
            if not (disabled is True or str(disabled).lower() == "true"):
                found.append(item_id)
        elif isinstance(value, dict | list):
            found += _enabled_weight_loaders(parser, value, item_id)
    return found


# every config set a user runs (the workflows above and the overlays); each one's knobs must all pass its knob_check
KNOB_CONFIGS = {name: files for name, (_, files) in WORKFLOWS.items()} | {
    "train+multi_gpu_train": ["train.json", "multi_gpu_train.json"],
    "train+quick": ["train.json", "quick.json"],
    "inference+inference_torchscript": ["inference.json", "inference_torchscript.json"],
    "inference+inference_ensemble": ["inference.json", "inference_ensemble.json"],
}
STRUCTURE_KEYS = {"imports", "initialize", "run", "finalize", "training", "inference", "knobs"}


def _plain_knobs(config: dict) -> set[str]:
    """Top-level keys holding a plain value (no expression, reference, macro or component): what a user sets."""

    def plain(value: Any) -> bool:
        if isinstance(value, str):
            return not value.startswith(("$", "@", "%"))
        if isinstance(value, list):
            return all(isinstance(v, int | float | bool) for v in value) and bool(value)
        return not isinstance(value, dict)

    return {k for k, v in config.items() if "#" not in k and k not in STRUCTURE_KEYS and plain(v)}


def _bundle_knobs(bundle: Path) -> dict:
    """The bundle's KNOBS, loaded from its file: in a process that already imported the other bundle's `scripts`
    package, `from scripts.knobs import` would return that bundle's declarations."""
    import importlib.util

    if str(bundle) not in sys.path:
        sys.path.insert(0, str(bundle))
    spec = importlib.util.spec_from_file_location(f"{bundle.name}_knobs", bundle / "scripts" / "knobs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.KNOBS


def check_knobs(bundle: Path, declared: dict | None = None) -> list[str]:
    """Each run config set passes every knob (each plain top-level key, each key scripts/knobs.py declares) to
    `knob_check`, first thing in `initialize`, and every knob has a rule; on/off keys have the switch rule."""
    from monai.bundle import ConfigParser

    if declared is None:
        declared = _bundle_knobs(bundle)
    problems = []
    for name, files in KNOB_CONFIGS.items():
        paths = [bundle / "configs" / f for f in files]
        if not all(p.is_file() for p in paths):
            continue
        parser = ConfigParser()
        parser.read_config([str(p) for p in paths])
        config = parser.get()
        knobs = _plain_knobs(config) | (set(config) & set(declared))
        listed = config.get("knobs") or {}
        initialize = config.get("initialize", [])
        if knobs and "$@knob_check" not in initialize[:2]:
            problems.append(f"{name}: `initialize` does not run `$@knob_check` before any other work")
        if undeclared := sorted(knobs - set(declared)):
            problems.append(f"{name}: knob(s) {', '.join(undeclared)} have no rule in scripts/knobs.py")
        if missing := sorted(knobs - set(listed)):
            problems.append(f"{name}: knob(s) {', '.join(missing)} not in `knobs`, so their values go unchecked")
        problems += [
            f"{name}: knobs#{key} is {value!r}, not a reference to the top-level key @{key}"
            for key, value in listed.items()
            if value != f"@{key}" or key not in config
        ]
        problems += [
            f"{name}: on/off key {key} is not declared a switch in scripts/knobs.py "
            "(the CLI would pass a lowercase 'false' through as a truthy string)"
            for key, value in config.items()
            if isinstance(value, bool) and key in declared and not declared[key].switch
        ]
    return problems


CHECKS: dict[str, Callable[..., list[str]]] = {
    "layout": check_layout,
    "metadata-schema": check_metadata_schema,
    "metadata-content": check_metadata_content,
    "config-format": check_config_format,
    "file-sizes": check_file_sizes,
    "version": check_version,
    "net-in-out": check_net_in_out,
    "properties": check_properties,
    "knobs": check_knobs,
    "export": check_export,
}


def run_checks(bundle: Path, only: list[str] | None = None, base_ref: str | None = None) -> int:
    """Run the checks on one bundle in this process, print one line each; return the number of failed checks."""
    bundle = bundle.resolve()
    sys.path.insert(0, str(bundle))  # the bundle's own `scripts` package, as `monai.bundle run` does
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    warnings.filterwarnings("ignore")  # tracer and hash warnings; findings are printed below
    logging.disable(logging.INFO)  # MONAI's INFO lines would bury the one line per check
    failed = 0
    for name, check in CHECKS.items():
        if only and name not in only:
            continue
        start = time.monotonic()
        noise = io.StringIO()  # progress bars and library chatter, shown only when the check fails
        try:
            with contextlib.redirect_stderr(noise):
                problems = check(bundle, base_ref) if name == "version" else check(bundle)
        except Exception as error:  # a crashing check is a failed check, reported like the others
            problems = [f"check crashed: {type(error).__name__}: {error}"]
        seconds = time.monotonic() - start
        print(f"{'ok  ' if not problems else 'FAIL'} {bundle.name} {name} ({seconds:.1f} s)", flush=True)
        for problem in problems:
            print(f"     {problem}", flush=True)
        if problems and noise.getvalue().strip():
            print("     stderr (last lines):\n       " + "\n       ".join(noise.getvalue().splitlines()[-15:]))
        failed += bool(problems)
    return failed


def main(argv: list[str] | None = None) -> int:
    """CLI: one bundle is checked here, several in one child process each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundles", nargs="+", type=Path, help="bundle folders")
    parser.add_argument("--base-ref", help="git ref (e.g. origin/main): changed bundles must have a higher version")
    parser.add_argument("--only", nargs="+", choices=list(CHECKS), help="run only these checks")
    args = parser.parse_args(argv)
    if len(args.bundles) == 1:
        return 1 if run_checks(args.bundles[0], args.only, args.base_ref) else 0
    status = 0
    for bundle in args.bundles:
        command = [sys.executable, __file__, str(bundle)]
        command += ["--base-ref", args.base_ref] if args.base_ref else []
        command += ["--only", *args.only] if args.only else []
        status |= subprocess.run(command).returncode
    return 1 if status else 0


if __name__ == "__main__":
    sys.exit(main())
