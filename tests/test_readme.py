"""README.md for a newcomer: short, `make demo` and `make test` first, no commit hash or issue number, and every
config file, script, make target, linked page and `--key` it names exists (keys against the configs they are passed
to, script options against the script's argparse)."""

from __future__ import annotations

import ast
import inspect
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import monai.bundle
import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
BUNDLES = (REPO / "swin_brats_bundle", REPO / "classification_bundle")
RUN_OPTIONS = set(inspect.signature(monai.bundle.run).parameters) - {"override"}
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
PYTHONS = re.compile(r"^(?:.*/)?python(?:3(?:\.\d+)?)?$")


@dataclass
class Command:
    line: int  # line of the README where it starts
    cwd: Path
    words: list[str]

    def where(self) -> str:
        return f"README.md:{self.line}: {' '.join(self.words)[:100]}"


def simple_commands(text: str) -> list[list[str]]:
    """The simple commands of a shell line (split at `&&`, `||`, `;`, `|`; variable assignments in front dropped)."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    commands, current = [], []
    for token in lexer:
        if token in {"&&", "||", ";", "|", "&", ";;"}:
            commands.append(current)
            current = []
        elif not (not current and re.match(r"^\w+=", token)):
            current.append(token)
    return [command for command in [*commands, current] if command]


def readme_commands() -> list[Command]:
    """Every command of the README's bash blocks, each block run from the repository root, `cd` followed."""
    text = README.read_text()
    found = []
    for block in FENCE.finditer(text):
        if block.group(1) != "bash":
            continue
        first_line = text[: block.start(2)].count("\n") + 1
        cwd = REPO
        logical, start = "", first_line
        for offset, raw in enumerate(block.group(2).splitlines()):
            if not logical:
                start = first_line + offset
            if raw.rstrip().endswith("\\"):
                logical += raw.rstrip()[:-1] + " "
                continue
            logical += raw
            if logical.count('"') % 2:  # a quoted argument goes on over the next line
                logical += " "
                continue
            for words in simple_commands(logical):
                if words[0] == "cd":
                    cwd = (cwd / words[1]).resolve()
                    assert cwd.is_dir(), f"README.md:{start}: cd {words[1]}: no such folder"
                else:
                    found.append(Command(start, cwd, words))
            logical = ""
    return found


def config_keys(paths: list[Path]) -> set[str]:
    """Top-level keys of the configs as MONAI merges them (`+key` and `a#b` overrides add `key` and `a`)."""
    keys = set()
    for path in paths:
        for key in json.loads(path.read_text()):
            keys.add(re.split("#|::", key.lstrip("+%"))[0])
    return keys


def config_files(command: Command, value: str) -> list[Path]:
    files = ast.literal_eval(value) if value.startswith("[") else [value]
    paths = [command.cwd / name for name in files]
    missing = [str(path.relative_to(REPO)) for path in paths if not path.is_file()]
    assert not missing, f"{command.where()}: no config {missing}"
    return paths


def options(words: list[str]) -> dict[str, str]:
    """`--key value` pairs (a flag without a value maps to '')."""
    found = {}
    for index, word in enumerate(words):
        if word.startswith("--"):
            value = words[index + 1] if index + 1 < len(words) and not words[index + 1].startswith("--") else ""
            found[word[2:].split("=")[0]] = value
    return found


def check_bundle_command(command: Command, words: list[str]) -> None:
    """`python -m monai.bundle SUB ...`: the configs exist, each `--key` is an option of SUB or a key of the configs."""
    sub, rest = words[0], words[1:]
    given = options(rest)
    assert "config_file" in given, f"{command.where()}: no --config_file"
    paths = config_files(command, given["config_file"])
    keys = config_keys(paths)
    allowed = keys | set(inspect.signature(getattr(monai.bundle, sub)).parameters) - {"override"}
    unknown = sorted(set(given) - allowed)
    assert not unknown, f"{command.where()}: --{unknown} is no option of monai.bundle {sub} nor a key of {paths}"
    positional = rest[0] if rest and not rest[0].startswith("--") else None
    if positional:  # the run id (a list of expressions: `training`) or the network to export (`network_def`)
        merged = {key: value for path in paths for key, value in json.loads(path.read_text()).items()}
        value, kind = merged.get(positional), list if sub == "run" else dict
        while isinstance(value, str) and value.startswith("@"):  # "training": "@run"
            value = merged.get(value[1:])
        assert isinstance(value, kind), f"{command.where()}: {positional!r} is no {kind.__name__} of the configs"
    for key in ("meta_file", "logging_file"):
        if key in given:
            assert (command.cwd / given[key]).is_file(), f"{command.where()}: no {given[key]}"


def script_options(path: Path) -> set[str]:
    return set(re.findall(r"add_argument\(\s*\"--([\w-]+)\"", path.read_text()))


def check_installed_module(command: Command, interpreter: str, module: str, rest: list[str]) -> None:
    """`<venv>/bin/python -m <package>...`: the requirements file the Makefile builds that venv from pins the package,
    and a MONAI Label `start_server` names an app folder that exists."""
    venv = (command.cwd / interpreter).parents[1]
    requirements = venv.parent / "requirements.txt"
    package = module.split(".")[0]
    assert requirements.is_file(), f"{command.where()}: no {requirements.relative_to(REPO)} for {venv.name}"
    pins = re.findall(r"^([\w.-]+)==", requirements.read_text(), re.M)
    assert package in pins, f"{command.where()}: {package} is not pinned in {requirements.relative_to(REPO)}"
    if package == "monailabel" and rest[:1] == ["start_server"]:
        app = options(rest[1:]).get("app", "")
        assert (command.cwd / app / "main.py").is_file(), f"{command.where()}: no MONAI Label app {app}/main.py"


def check_python(command: Command, words: list[str]) -> None:
    if words[1] == "-m":
        module, rest = words[2], words[3:]
        if module == "monai.bundle":
            check_bundle_command(command, rest)
            return
        path = command.cwd / (module.replace(".", "/") + ".py")
        if not path.is_file():  # an installed package: the interpreter's environment pins it
            check_installed_module(command, words[0], module, rest)
            return
    else:
        path, rest = command.cwd / words[1], words[2:]
    assert path.is_file(), f"{command.where()}: no script {path.relative_to(REPO)}"
    unknown = set(options(rest)) - script_options(path)
    if path.name == "cross_validate.py":  # other options pass on to training, over its --config_file configs
        configs = ["configs/train.json"]
        if "--config_file" in rest:
            after = rest[rest.index("--config_file") + 1 :]
            configs = after[: next((i for i, word in enumerate(after) if word.startswith("--")), len(after))]
        unknown -= config_keys(config_files(command, str(configs)))
    assert not unknown, f"{command.where()}: {sorted(unknown)} are no options of {path.name}"


def check_command(command: Command) -> None:
    words = command.words
    if words[0] in {"srun"}:
        words = words[1:]
    if words[0] == "make":
        targets = set(re.findall(r"^([\w-]+):", (REPO / "Makefile").read_text(), re.M))
        named = [word for word in words[1:] if "=" not in word and not word.startswith("-")]
        assert set(named) <= targets, f"{command.where()}: no make target {sorted(set(named) - targets)}"
    elif words[0] == "torchrun":
        assert "-m" in words and words[words.index("-m") + 1] == "monai.bundle", command.where()
        check_bundle_command(command, words[words.index("-m") + 2 :])
    elif PYTHONS.match(words[0]):
        if "/" in words[0]:
            interpreter = command.cwd / words[0]
            venv = interpreter.parents[1]
            assert venv.name == ".venv", f"{command.where()}: {words[0]} is not a virtual environment's python"
        check_python(command, words)


COMMANDS = readme_commands()


@pytest.mark.parametrize("command", COMMANDS, ids=lambda command: f"line{command.line}")
def test_each_command_names_files_scripts_and_keys_that_exist(command: Command) -> None:
    check_command(command)


def test_the_readme_is_short_starts_with_the_two_commands_and_holds_no_history() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= 260
    first = FENCE.search(text).group(2)
    assert "make demo" in first and "make test" in first
    prose = FENCE.sub("", text)
    assert not re.findall(r"\b(?=[0-9a-f]*\d)[0-9a-f]{7,40}\b", prose), "a commit hash (or a 7-digit number)"
    assert not re.findall(r"(?i)issue\s*#?\d+|#\d+\b", prose), "an issue number"


def test_every_linked_page_backticked_path_and_flag_in_the_prose_exists() -> None:
    text = FENCE.sub("", README.read_text())
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if target.startswith(("http://", "https://", "#")):
            continue
        path, _, anchor = target.partition("#")
        assert (REPO / path).exists(), f"README links to {target}, which does not exist"
        if anchor:
            headings = re.findall(r"^#+ (.+)$", (REPO / path).read_text(), re.M)
            slugs = {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}
            assert anchor in slugs, f"README links to {target}: no such heading"
    roots = (REPO, *BUNDLES)
    for path in re.findall(r"`([\w.-]+/[\w./-]+\.(?:py|json|md|sh|conf))`", text):  # a path of ours, with a folder
        assert any((root / path).is_file() for root in roots), f"README names {path}, which does not exist"
    keys = RUN_OPTIONS | {key for bundle in BUNDLES for key in config_keys(list((bundle / "configs").glob("*.json")))}
    keys |= {
        flag for bundle in BUNDLES for script in (bundle / "scripts").glob("*.py") for flag in script_options(script)
    }
    for flag in re.findall(r"`--(\w+)[ `=]", text):
        assert flag in keys, f"README names --{flag}, which is no config key or script option of either bundle"


def test_the_checks_above_find_a_missing_config_a_wrong_key_and_a_missing_script(tmp_path: Path) -> None:
    """The checks can fail: a misspelt config, key, script option or make target is named."""
    bundle = REPO / "swin_brats_bundle"
    bad = [
        Command(1, bundle, ["python", "-m", "monai.bundle", "run", "training", "--config_file", "configs/tran.json"]),
        Command(
            2,
            bundle,
            [
                "python",
                "-m",
                "monai.bundle",
                "run",
                "training",
                "--config_file",
                "configs/train.json",
                "--learning_rat",
                "1e-4",
            ],
        ),  # fmt: skip
        Command(3, bundle, ["torchrun", "-m", "monai.bundle", "run", "trainin", "--config_file", "configs/train.json"]),
        Command(4, bundle, ["python", "scripts/prepare_datalist.py", "--dataset", "/data"]),
        Command(5, bundle, ["python", "scripts/no_such.py"]),
        Command(6, REPO, ["make", "dem"]),
        Command(7, bundle, ["python", "scripts/cross_validate.py", "--dataset_dir", "/d", "--epoch", "4"]),
    ]
    for command in bad:
        with pytest.raises(AssertionError, match=f"README.md:{command.line}: "):
            check_command(command)
