"""README.md stays true: its first commands are well-formed and every option, ini key and command it names exists.

Tolerant while the README is being written: skips with a reason when there is no README.md or no shell block.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
from once import once_per_session

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FENCE = re.compile(r"^```([\w+-]*)[^\n]*\n(.*?)^```", re.M | re.S)
SHELL_LANGUAGES = {"bash", "sh", "shell", "console", "shell-session"}
OPTION = re.compile(r"(?<![\w-])--memtrack(?:-[a-z]+)*(?![\w-])")
INI_KEY = re.compile(r"^\s*(memtrack\w*)\s*=", re.M)
CLI = re.compile(r"(?:^|&&|;|\||`|\$ )[ \t]*(?:pytest-memtrack|python -m pytest_memtrack)[ \t]+([a-z][\w-]*)([^\n`;&|]*)",
                 re.M)


def readme() -> str:
    if not README.is_file():
        pytest.skip("README.md does not exist yet")
    return README.read_text(encoding="utf-8")


def fenced(text: str) -> list[tuple[str, str]]:
    return [(match.group(1).lower(), match.group(2)) for match in FENCE.finditer(text)]


def code_text(text: str) -> str:
    """Fenced blocks and inline code spans, where commands are written."""
    inline = re.findall(r"`([^`\n]+)`", FENCE.sub("", text))
    return "\n".join([body for _, body in fenced(text)] + inline)


def first_section(text: str) -> str:
    """From the top to the second level-2 heading: the title, the pitch and the first ``##`` section."""
    headings = [m.start() for m in re.finditer(r"^## ", FENCE.sub(lambda m: " " * len(m.group(0)), text), re.M)]
    return text[: headings[1]] if len(headings) > 1 else text


def shell_commands(block: str) -> list[str]:
    """The commands of a shell block: prompts and comments dropped, continuation lines joined, ``&&`` split."""
    joined = re.sub(r"\\\n\s*", " ", block)
    commands = []
    for line in joined.splitlines():
        line = line.strip()
        if line.startswith("$ "):
            line = line[2:]
        if not line or line.startswith("#"):
            continue
        commands += [part.strip() for part in re.split(r"&&|;", line) if part.strip()]
    return commands


@cache
def subcommand_help(*argv: str) -> str:
    done = subprocess.run([sys.executable, "-m", "pytest_memtrack", *argv, "--help"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def subcommands() -> set[str]:
    """The sub-commands listed under ``positional arguments`` of ``pytest-memtrack --help``."""
    listing = subcommand_help().split("positional arguments:", 1)[1].split("options:", 1)[0]
    return set(re.findall(r"^ {4}([a-z][\w-]*)\s", listing, re.M))


def _load_toml(text: str) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: tomllib is 3.11+; tomli is the same parser, and pytest needs it there
        tomllib = pytest.importorskip("tomli", reason="reading pyproject.toml before Python 3.11 needs tomli")
    return tomllib.loads(text)


def run_pytest_help(_: Path) -> str:
    done = subprocess.run([sys.executable, "-m", "pytest", "--help", "-p", "no:cacheprovider"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def pytest_help(tmp_path_factory: pytest.TempPathFactory) -> str:
    """``pytest --help``, run once per session (shared by xdist's workers)."""
    return once_per_session(tmp_path_factory, "pytest_help", run_pytest_help)


def test_the_first_section_shows_commands_that_a_user_can_paste():
    text = readme()
    blocks = [body for language, body in fenced(first_section(text)) if language in SHELL_LANGUAGES]
    if not blocks:
        pytest.skip("README.md's first section has no ```bash block yet")
    commands = [command for block in blocks for command in shell_commands(block)]
    assert any("pytest" in command and "--memtrack" in command for command in commands), commands
    cwd = ROOT
    extras = _load_toml((ROOT / "pyproject.toml").read_text())["project"].get("optional-dependencies", {})
    for command in commands:
        words = shlex.split(command)  # raises on unbalanced quotes
        if words[0] == "cd":
            cwd = (cwd / words[1]).resolve()
            assert cwd.is_dir(), f"README: `{command}`: no directory {cwd}"
        for word in words:
            extra = re.fullmatch(r"\.\[([\w,-]+)\]", word)
            if extra:
                missing = set(extra.group(1).split(",")) - set(extras)
                assert not missing, f"README: `{command}`: pyproject.toml has no extra {missing}"


@pytest.mark.slow
def test_every_memtrack_option_in_the_readme_exists(pytest_help: str):
    text = readme()
    known = set(OPTION.findall(pytest_help))
    mentioned = set(OPTION.findall(text))
    assert mentioned <= known, f"README.md mentions options that pytest --help does not know: {sorted(mentioned - known)}"


@pytest.mark.slow
def test_every_memtrack_option_is_documented_in_the_readme(pytest_help: str):
    text = readme()
    undocumented = set(OPTION.findall(pytest_help)) - set(OPTION.findall(text))
    assert not undocumented, f"options missing from README.md: {sorted(undocumented)}"


@pytest.mark.slow
def test_every_ini_key_in_the_readme_exists(pytest_help: str):
    text = readme()
    ini_help = pytest_help.split("[pytest] ini-options", 1)[-1]
    known = set(re.findall(r"^  (memtrack\w*) \(", ini_help, re.M))
    keys = {key for language, body in fenced(text) if language in {"ini", "toml", "cfg"}
            for key in INI_KEY.findall(body)}
    assert keys <= known, f"README.md sets ini keys that pytest does not know: {sorted(keys - known)}"


@pytest.mark.slow
def test_every_pytest_memtrack_command_in_the_readme_exists_with_its_options():
    text = readme()
    available = subcommands()
    for name, rest in CLI.findall(code_text(text)):
        assert name in available, f"README.md runs `pytest-memtrack {name}`; the commands are {sorted(available)}"
        options = set(re.findall(r"(?<![\w-])(--[a-z][\w-]*)", rest))
        help_text = subcommand_help(name)
        unknown = {option for option in options if option not in help_text}
        assert not unknown, f"`pytest-memtrack {name}` has no option {sorted(unknown)}"
