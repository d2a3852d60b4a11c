"""``pytest-memtrack history`` and ``pytest-memtrack compare``."""

from __future__ import annotations

import copy
import json
import subprocess

import pytest
from samples import sample_report
from stores import cli, damage, foreign_database, make_store, read_only, snapshot

from pytest_memtrack.cli import main


@pytest.fixture
def store_path(tmp_path):
    return str(make_store(tmp_path / "history.sqlite"))


def test_history_lists_runs_newest_first(store_path, capsys):
    assert main(["history", "--store", store_path]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["id", "time", "name", "commit", "machine", "tests", "leaking"]
    assert lines[1].split()[0] == "2" and "feature" in lines[1]
    assert lines[2].split()[0] == "1" and "main" in lines[2] and "0123456789" in lines[2]


def test_history_json_honours_the_limit(store_path, capsys):
    assert main(["history", "--store", store_path, "--limit", "1", "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in runs] == ["feature"] and runs[0]["tests"] == 3


@pytest.mark.parametrize("limit", ["99999999999999999999", "9" * 4301])
def test_history_with_a_limit_beyond_any_store_lists_every_run(store_path, capsys, limit):
    # SQLite refused LIMIT 99999999999999999999 ("datatype mismatch"), int() refused 4,301 digits.
    assert main(["history", "--store", store_path, "--limit", limit, "--json"]) == 0
    assert [r["name"] for r in json.loads(capsys.readouterr().out)] == ["feature", "main"]


@pytest.mark.parametrize("limit", ["0", "-1", "٣", "abc"])
def test_history_with_a_limit_that_is_not_a_positive_whole_number_is_a_usage_error(store_path, capsys, limit):
    with pytest.raises(SystemExit) as exited:
        main(["history", "--store", store_path, "--limit", limit])
    assert exited.value.code == 2
    assert f"argument --limit: must be a positive whole number, not {limit!r}" in capsys.readouterr().err


@pytest.mark.parametrize("ref", ["99999999999999999999", "#99999999999999999999", "9" * 4301, "١"])
def test_compare_with_an_id_no_run_can_have_is_an_error_sentence(store_path, capsys, ref):
    # Binding an id beyond SQLite's 64-bit integer raised OverflowError; "١" (an Arabic-Indic one) was run #1.
    assert main(["compare", ref, "1", "--store", store_path]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pytest-memtrack: error: no stored run has the id or name ") and "Traceback" not in err
    assert err.count("\n") == 1 and len(err) < 300


def test_history_of_a_missing_store_is_an_error_sentence(tmp_path, capsys):
    assert main(["history", "--store", str(tmp_path / "none.sqlite")]) == 2
    assert "there is no history store" in capsys.readouterr().err


def test_history_of_a_foreign_file_is_an_error_sentence_and_leaves_it_alone(tmp_path, capsys):
    path = tmp_path / "notes.txt"
    path.write_text("not a database")
    assert main(["history", "--store", str(path)]) == 2
    assert "is not a pytest-memtrack history store" in capsys.readouterr().err
    assert path.read_text() == "not a database"


@pytest.mark.parametrize("command", [["history"], ["history", "--json"], ["compare", "main", "feature"]])
def test_history_and_compare_of_a_damaged_store_exit_2_with_a_sentence_naming_it(tmp_path, capsys, command):
    path = make_store(tmp_path / "history.sqlite")
    damage(path)
    before = snapshot(tmp_path)
    assert main([*command, "--store", str(path)]) == 2
    out = capsys.readouterr()
    assert out.err.startswith(f"pytest-memtrack: error: the history store {str(path)!r} is damaged (")
    assert out.err.rstrip().endswith("restore it from a backup, or move it aside to start a new history.")
    assert out.out == "" and "Traceback" not in out.err
    assert snapshot(tmp_path) == before  # untouched, and no -wal/-shm beside it


@pytest.mark.parametrize("command", [["history"], ["compare", "main", "feature"]])
def test_reading_another_applications_wal_database_leaves_its_directory_as_it_was(tmp_path, capsys, command):
    path = tmp_path / "app.db"
    foreign_database(path, "wal")
    before = snapshot(tmp_path)
    assert main([*command, "--store", str(path)]) == 2
    assert "is an SQLite database but not a pytest-memtrack history store" in capsys.readouterr().err
    assert snapshot(tmp_path) == before


@pytest.mark.slow
def test_history_and_compare_read_a_store_in_a_read_only_directory(tmp_path):
    path = make_store(tmp_path / "readonly" / "history.sqlite")
    before = snapshot(path.parent)
    with read_only(path.parent):
        history = subprocess.run(cli("history", "--store", str(path)), capture_output=True, text=True, timeout=60)
        compare = subprocess.run(cli("compare", "main", "feature", "--store", str(path), "--fail", "total:10%"),
                                 capture_output=True, text=True, timeout=60)
    assert (history.returncode, history.stderr) == (0, "")
    assert [line.split()[0] for line in history.stdout.splitlines()[1:]] == ["2", "1"]
    assert compare.returncode == 1, compare.stderr
    assert "compared with run #1 'main'" in compare.stdout and "1 regression" in compare.stdout
    assert snapshot(path.parent) == before


def test_compare_of_two_stored_runs_exits_1_when_a_fail_rule_is_broken(store_path, capsys):
    assert main(["compare", "main", "feature", "--store", store_path, "--fail", "total:10%"]) == 1
    out = capsys.readouterr()
    assert "compared with run #1 'main'" in out.out and "1 regression" in out.out
    lines = out.out.splitlines()  # 80 columns: each name on a line of its own, its figures under it
    row = lines[lines.index("session") + 1]
    assert row.split()[0] == "total" and "(+11.0%)" in row and row.endswith("REGRESSED")
    header = next(line for line in lines if line.startswith("name / figure"))
    assert header.split()[3:] == ["baseline", "current", "change", "limit", "result"]
    assert [line for line in lines if len(line) > 80] == []
    assert "regressed" in out.err


def test_compare_within_the_tolerance_exits_0(store_path, capsys):
    assert main(["compare", "1", "2", "--store", store_path, "--fail", "total:12%", "--fail", "leaking:0"]) == 0
    assert "0 regressions" in capsys.readouterr().out


def test_compare_of_two_json_report_files_works_offline(tmp_path, capsys):
    base = sample_report()
    grown = copy.deepcopy(base)
    grown["packages"]["app"]["memory_metrics"]["memory_footprint"] *= 1.5
    (tmp_path / "a.json").write_text(json.dumps(base))
    (tmp_path / "b.json").write_text(json.dumps(grown))
    argv = ["compare", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--store", str(tmp_path / "none"),
            "--fail", "footprint:10%", "--json"]
    assert main(argv) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["regressions"] == 1 and data["baseline"]["name"] == "a.json"
    assert data["rows"][0]["name"] == "app" and data["rows"][0]["figure"] == "footprint"


@pytest.mark.parametrize(("argv", "words"), [
    (["compare", "main", "nosuch"], "no stored run has the id or name 'nosuch'"),
    (["compare", "main", "feature", "--fail", "footprint"], "--fail: compare-fail rule 'footprint' must look like"),
    (["compare", "main", "feature", "--fail", "nosuch:5%"], "unknown figure 'nosuch'"),
])
def test_compare_mistakes_are_error_sentences_with_exit_status_2(store_path, capsys, argv, words):
    assert main(argv + ["--store", store_path]) == 2
    assert words in capsys.readouterr().err


def test_compare_with_a_bad_report_file_is_an_error_sentence(tmp_path, capsys):
    (tmp_path / "bad.json").write_text("{not json")
    assert main(["compare", str(tmp_path / "bad.json"), str(tmp_path / "bad.json")]) == 2
    assert "bad.json' is not valid JSON" in capsys.readouterr().err


@pytest.mark.parametrize("content", ["{not json", '{"tool": {"name": "pytest-memtrack"}, "format_version": 1}',
                                     '{"summary": {}}', "[1]"])
def test_every_command_that_reads_a_report_says_the_same_about_a_bad_one(tmp_path, capsys, content):
    """One loader: html, serve and compare accept and refuse the same files with the same sentence."""
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    errors = []
    for argv in (["html", str(bad)], ["serve", str(bad), "--port", "0"], ["compare", str(bad), str(bad)]):
        assert main(argv) == 2
        errors.append(capsys.readouterr().err)
    assert errors[0] == errors[1] == errors[2] and errors[0].startswith("pytest-memtrack: error: ")


@pytest.mark.parametrize("command", ["history", "compare"])
def test_the_commands_print_their_help(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "--store" in out and ("footprint:10%" in out if command == "compare" else "--limit" in out)
