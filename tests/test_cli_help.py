"""``pytest-memtrack``'s help: a version, examples in every help, and every example works when typed as shown."""

from __future__ import annotations

import importlib.metadata
import os
import re
import shlex
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from pytest_memtrack.cli import build_parser, main
from pytest_memtrack.history.compare import parse_rule

#: The commands this module's examples are checked for (another command may add its own).
COMMANDS = ("html", "merge", "serve", "history", "compare")


def help_text(*argv: str) -> str:
    env = {**os.environ, "COLUMNS": "80"}
    done = subprocess.run([sys.executable, "-m", "pytest_memtrack", *argv, "--help"], capture_output=True,
                          text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout


def examples(text: str) -> list[str]:
    """The commands under ``examples:``: comments skipped, backslash continuations joined."""
    section = text.split("\nexamples:\n", 1)[1]
    commands: list[str] = []
    pending = ""
    for line in section.splitlines():
        if not line.startswith("  "):  # the end of the indented block
            break
        line = line.strip()
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1]
            continue
        commands.append(pending + line)
        pending = ""
    return commands


def test_the_version_is_the_installed_distributions(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == f"pytest-memtrack {importlib.metadata.version('pytest-memtrack')}\n"


@pytest.mark.slow
@pytest.mark.parametrize("argv", [(), *((name,) for name in COMMANDS)], ids=["top", *COMMANDS])
def test_every_help_has_examples_of_its_own_command_and_fits_80_columns(argv):
    text = help_text(*argv)
    commands = examples(text)
    assert commands, text
    assert all(shlex.split(c)[0] in ("pytest", "pytest-memtrack") or "=" in shlex.split(c)[0] for c in commands)
    if argv:
        assert all(f"pytest-memtrack {argv[0]} " in c for c in commands), commands
    assert [line for line in text.splitlines() if len(line) > 80] == []


def test_every_example_parses_with_the_parser():
    parser = build_parser()
    texts = [parser.format_help()] + [parser._subparsers._group_actions[0].choices[name].format_help()  # type: ignore[union-attr]
                                      for name in COMMANDS]
    for text in texts:
        for command in examples(text):
            words = [w for w in shlex.split(command) if not re.fullmatch(r"[A-Z_]+=.*", w)]
            if words[0] == "pytest-memtrack":
                assert getattr(parser.parse_args(words[1:]), "func", None) is not None, command


def run_example(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    words = shlex.split(command)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "MEMTRACK_"))}
    while re.fullmatch(r"[A-Z_]+=.*", words[0]):
        name, value = words.pop(0).split("=", 1)
        env[name] = value
    program = {"pytest": [sys.executable, "-m", "pytest"], "pytest-memtrack": [sys.executable, "-m", "pytest_memtrack"]}
    args = words[1:]
    if args[:1] != ["serve"]:
        return subprocess.run(program[words[0]] + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    # A server runs until it is stopped: start it (on a free port rather than 8000, which may be taken), ask it for
    # its summary with the example's token, stop it.
    if "--port" in args:
        args[args.index("--port") + 1] = "0"
    else:
        args += ["--port", "0"]
    argv = program[words[0]] + args
    with subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as server:
        try:
            assert server.stdout is not None and server.stderr is not None
            first = server.stdout.readline()
            assert first.startswith("memtrack server: "), (first, server.stderr.read())
            url = first.split(": ", 1)[1].strip().replace("0.0.0.0", "127.0.0.1")
            request = urllib.request.Request(url + "api/packages/memory/summary")
            if env.get("MEMTRACK_TOKEN"):
                request.add_header("Authorization", f"Bearer {env['MEMTRACK_TOKEN']}")
            with urllib.request.urlopen(request, timeout=30) as response:
                status = response.status
        finally:
            server.terminate()
            server.communicate(timeout=30)
    return subprocess.CompletedProcess(argv, 0 if status == 200 else status, "", "")


@pytest.mark.slow
def test_the_examples_work_as_typed_one_after_the_other(tmp_path):
    """The top-level examples are a workflow (run the tests, render, serve, list, compare); each command's own
    examples then run in the same project. A compare example may exit 1 only when it found a regression."""
    (tmp_path / "test_shop.py").write_text("CACHE = {}\n\ndef test_price():\n    CACHE['a'] = 1\n")
    (tmp_path / "test_stock.py").write_text("def test_count():\n    assert 1 + 1 == 2\n")
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    for shard, tests in (("1", "test_shop.py"), ("2", "test_stock.py")):  # what `merge`'s example merges
        done = run_example(f"pytest --memtrack --memtrack-json=shard-{shard}.json {tests}", tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
    commands = examples(help_text()) + [c for name in COMMANDS for c in examples(help_text(name))]
    for command in commands:
        done = run_example(command, tmp_path)
        assert done.returncode == 0, f"`{command}` exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    assert (tmp_path / "reports" / "memtrack.html").is_file() and (tmp_path / "all.json").is_file()


def test_pytest_help_gives_compare_fail_examples_that_parse(pytester):
    result = pytester.runpytest("--help")
    text = " ".join(result.stdout.str().split())
    rules = re.findall(r"--memtrack-compare-fail=(\S+?)[;,]? ", text)
    assert len(rules) >= 2 and all(parse_rule(rule) for rule in rules if rule != "RULE"), rules
