"""The HTML report: pure helpers, structure of the rendered page, safety, size, the CLI and the pytest option."""

from __future__ import annotations

import copy
import json
import os
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from samples import T0, empty_report, leaking_test, package_entry, passing_test, sample_report

from pytest_memtrack import cli
from pytest_memtrack.report import github
from pytest_memtrack.report.atomic import write_text_atomic
from pytest_memtrack.report.formatting import format_bytes
from pytest_memtrack.report.html import build_view, render_html

# ------------------------------------------------------------------------------------------ a tiny DOM for checks


class Node:
    def __init__(self, tag: str, attrs: dict[str, str | None], parent: Node | None) -> None:
        self.tag, self.attrs, self.parent, self.children, self.text_parts = tag, attrs, parent, [], []

    def iter(self):
        yield self
        for child in self.children:
            yield from child.iter()

    def find_all(self, tag: str, **attrs: str) -> list[Node]:
        return [n for n in self.iter() if n.tag == tag and all(n.attrs.get(k.rstrip("_")) == v for k, v in attrs.items())]

    def by_id(self, ident: str) -> Node | None:
        return next((n for n in self.iter() if n.attrs.get("id") == ident), None)

    @property
    def text(self) -> str:
        return "".join(self.text_parts) + "".join(c.text for c in self.children)

    def has_class(self, name: str) -> bool:
        return name in (self.attrs.get("class") or "").split()


VOID = {"meta", "link", "br", "input", "img", "hr", "circle", "polyline"}


class TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#root", {}, None)
        self.current = self.root
        self.script_texts: list[tuple[dict[str, str | None], str]] = []

    def handle_starttag(self, tag, attrs):
        node = Node(tag, dict(attrs), self.current)
        self.current.children.append(node)
        if tag not in VOID:
            self.current = node

    def handle_startendtag(self, tag, attrs):
        self.current.children.append(Node(tag, dict(attrs), self.current))

    def handle_endtag(self, tag):
        node = self.current
        while node is not self.root and node.tag != tag:
            node = node.parent
        assert node is not self.root, f"unbalanced </{tag}>"
        if tag == "script":
            self.script_texts.append((node.attrs, node.text))
        self.current = node.parent

    def handle_data(self, data):
        self.current.text_parts.append(data)


def parse(page: str) -> TreeBuilder:
    builder = TreeBuilder()
    builder.feed(page)
    builder.close()
    assert builder.current is builder.root, "some element was never closed"
    return builder


def dom(report) -> Node:
    return parse(render_html(report)).root


# ------------------------------------------------------------------------------------------ pure helpers


def test_format_bytes_uses_binary_units_and_keeps_the_sign():
    assert format_bytes(0) == "0 B"
    assert format_bytes(1536) == "1.5 KiB"
    assert format_bytes(-400 * 1024) == "-400.0 KiB"
    assert format_bytes(3 * 1024**3) == "3.0 GiB"
    assert format_bytes(None) == "—"
    assert format_bytes(float("nan")) == "—"


# ------------------------------------------------------------------------------------------ page structure


def test_the_sample_report_shows_the_verdict_the_leak_with_its_evidence_and_the_package_table():
    root = dom(sample_report())
    assert root.by_id("verdict").text == "1 of 3 tests leak"
    leak = root.by_id("leak-1")
    assert leak.attrs["data-nodeid"] == "tests/test_app.py::test_leaks_a_cache_entry_per_request"
    text = " ".join(leak.text.split())
    assert "score 0.83" in text and "app/cache.py:12" in text and "+50.0 KiB" in text
    assert "leak score 0.83 exceeds max_leak_score(0.1)" in text
    assert "Kept alive by" in text and "app.cache._RESPONSES" in text and "dict, +4 over the measured runs" in text
    assert "sys.path_importer_cache" in text and "dict (import system cache), +4 over the measured runs" in text
    assert "What to do:" in text
    assert leak.find_all("svg"), "the leaking test has a chart of its measured runs"
    package_rows = root.by_id("packages-table").find_all("tr")[1:]
    assert [r.attrs["data-package"] for r in package_rows] == ["app", "email", "json"]
    assert package_rows[0].has_class("leaking")
    assert package_rows[0].find_all("svg") and package_rows[0].find_all("polyline")
    assert "no history" in package_rows[1].text  # "email" has an empty history
    suggestions = " ".join(root.by_id("suggestions").text.split())
    assert "high" in suggestions and "Investigate memory usage patterns" in suggestions
    assert root.by_id("comparison") is None


def test_the_header_shows_system_pressure_and_totals_in_human_units():
    header = " ".join(dom(sample_report()).find_all("header", class_="verdict bad")[0].text.split())
    assert "low" in header and "2.9 MiB" in header and "3.5 MiB" in header and "2 loaded of 3" in header


def test_the_tests_table_lists_every_test_leaking_first_with_sortable_raw_values():
    root = dom(sample_report())
    table = root.by_id("tests-table")
    assert table.has_class("sortable")
    rows = table.find_all("tbody")[0].find_all("tr")
    assert [r.attrs["data-nodeid"].split("::")[1] for r in rows] == [
        "test_leaks_a_cache_entry_per_request", "test_warm_cache", "test_plain"]
    assert rows[0].has_class("leaking")
    assert rows[0].find_all("td")[3].attrs["data-v"] == "400000.0"
    headers = [th.text for th in table.find_all("th")]
    assert "RSS delta" in headers and "leak score" in headers


def test_the_filter_controls_are_hidden_until_the_script_runs_so_a_page_without_js_shows_everything():
    root = dom(sample_report())
    controls = [n for n in root.iter() if n.has_class("js-only")]
    assert controls and all("hidden" in n.attrs for n in controls)
    assert not [r for r in root.by_id("tests-table").find_all("tr") if "hidden" in r.attrs]


def test_an_all_green_run_says_no_leaks_found():
    report = sample_report()
    report["tests"] = [passing_test("t.py::test_a", 0.0), passing_test("t.py::test_b")]
    report["packages"]["app"] = package_entry("app", 2_000_000)
    report["leaks"].update(leaks=[], total_leaks=0)
    root = dom(report)
    assert root.by_id("verdict").text == "No leaks found in the 1 hunted test"
    assert "No leaks found" in root.by_id("leaks").text
    assert root.find_all("header", class_="verdict good")


def test_an_empty_run_renders_sensibly():
    root = dom(empty_report())
    assert root.by_id("verdict").text == "No tests ran — nothing was checked for leaks"
    assert "No packages were tracked" in root.by_id("packages").text
    assert "No tests ran." in root.by_id("tests").text
    assert "No suggestions" in root.by_id("suggestions").text


def test_a_report_missing_optional_sections_still_renders():
    page = render_html({"format_version": 1, "tool": {"name": "pytest-memtrack"}, "tests": [leaking_test()]})
    assert "1 of 1 tests leak" in page


def test_the_comparison_section_shows_its_rows_with_regressions_highlighted():
    report = sample_report()
    report["comparison"] = {
        "baseline": {"id": 3, "name": "main", "time": T0 - 86400, "commit": "1a2b3c4d"},
        "rows": [
            {"kind": "package", "name": "json", "figure": "footprint", "baseline": 100_000, "current": 90_000,
             "change": -10_000, "limit": 110_000, "regressed": False},
            {"kind": "test", "name": "tests/test_app.py::test_plain", "figure": "rss_delta", "baseline": 0,
             "current": 2_097_152, "change": 2_097_152, "limit": 524_288, "regressed": True},
        ],
        "regressions": 1, "rules": ["rss_delta:512KB"], "new": [], "new_count": 0,
    }
    root = dom(report)
    section = root.by_id("comparison")
    rows = section.find_all("tbody")[0].find_all("tr")
    assert rows[0].has_class("regressed") and not rows[1].has_class("regressed")
    cells = [td.text for td in rows[0].find_all("td")]
    assert cells[:3] == ["test", "tests/test_app.py::test_plain", "rss_delta"]
    assert "2.0 MiB" in cells and "REGRESSED" in cells
    text = " ".join(section.text.split())
    assert "main" in text and "1a2b3c4d" in text and "rss_delta:512KB" in text


def test_regressions_alone_turn_the_verdict_red():
    report = sample_report()
    report["tests"] = [passing_test("t.py::test_a")]
    report["comparison"] = {"baseline": None, "rows": [], "regressions": 2}
    assert dom(report).by_id("verdict").text == "2 memory regressions against the baseline"


# ------------------------------------------------------------------------------------------ safety


HOSTILE = '<script>alert("x")</script>'


def test_a_test_id_with_a_script_tag_renders_as_text():
    report = sample_report()
    report["tests"] = [leaking_test(f"tests/test_x.py::test_a[{HOSTILE}]"), passing_test(f"t.py::b[{HOSTILE}]")]
    report["tests"][0]["message"] = f"boom {HOSTILE}"
    page = render_html(report)
    assert HOSTILE not in page
    tree = parse(page)
    assert [attrs for attrs, _ in tree.script_texts] == [{"type": "application/json", "id": "tests-data"}, {}], \
        "only our own script element exists, beside the tests' data block (never run: not JavaScript)"
    assert f"test_a[{HOSTILE}]" in tree.root.by_id("leak-1").text
    assert tree.root.by_id("leak-1").attrs["data-nodeid"] == f"tests/test_x.py::test_a[{HOSTILE}]"
    assert f"boom {HOSTILE}" in tree.root.by_id("leak-1").text


def test_package_names_suggestions_and_evidence_are_escaped():
    report = sample_report()
    evil = '"><img src=x onerror=alert(1)>'
    report["packages"] = {evil: package_entry(evil, 1000)}
    report["package_histories"] = {evil: [[T0, 1], [T0 + 1, 2]]}
    report["suggestions"]["suggestions"][0].update(package_name=evil, message=evil, recommendation=evil)
    report["tests"][0]["hunt"]["evidence"]["allocation_sites"][0]["file"] = evil
    report["tests"][0]["hunt"]["evidence"]["new_threads"] = [evil]
    page = render_html(report)
    assert "<img" not in page and "onerror=alert(1)>" not in page.replace("&gt;", ">").split("<body>")[0]
    root = parse(page).root
    assert not root.find_all("img")
    assert root.by_id("packages-table").find_all("tr")[1].attrs["data-package"] == evil


def test_the_page_needs_no_network_and_only_its_own_hashed_script_may_run():
    page = render_html(sample_report())
    tree = parse(page)
    for node in tree.root.iter():
        assert "src" not in node.attrs
        href = node.attrs.get("href")
        assert href is None or href.startswith(("#", "data:")), href
        assert not any(name.startswith("on") for name in node.attrs), node.tag
    assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", page)
    csp = tree.root.find_all("meta", **{"http-equiv": "Content-Security-Policy"})[0].attrs["content"]
    assert "default-src 'none'" in csp
    import base64
    import hashlib

    (script,) = [text for attrs, text in tree.script_texts if attrs.get("type") != "application/json"]
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in csp
    assert "eval(" not in script and "innerHTML" not in script


# ------------------------------------------------------------------------------------------ size


def big_report() -> dict:
    report = sample_report()
    report["packages"] = {f"pkg_{i:03d}": package_entry(f"pkg_{i:03d}", 1_000_000 + i * 4096, score=(i % 10) / 10,
                                                        checks=100) for i in range(200)}
    report["package_histories"] = {f"pkg_{i:03d}": [[T0 + j, 1_000_000 + j * 512 * (i % 7)] for j in range(100)]
                                   for i in range(200)}
    tests = [leaking_test(f"tests/test_big.py::test_leak[{i}]") for i in range(50)]
    for i, test in enumerate(tests):  # fifty culprits: fifty cards
        test["hunt"]["evidence"]["allocation_sites"][0]["line"] = i
    tests += [passing_test(f"tests/test_big.py::test_case[{i}-some-longer-parameter-id]", 0.0) for i in range(950)]
    report["tests"] = tests
    return report


def test_a_report_of_1000_tests_and_200_packages_with_history_stays_under_3_mb():
    page = render_html(big_report())
    assert len(page.encode("utf-8")) < 3 * 1024 * 1024
    tree = parse(page)
    root = tree.root
    assert len(root.by_id("tests-table").find_all("tbody")[0].find_all("tr")) == 200, "the first page, as HTML"
    (data,) = [text for attrs, text in tree.script_texts if attrs.get("id") == "tests-data"]
    assert len(json.loads(data)["rows"]) == 1000, "every test in the data block the script pages through"
    assert len(root.by_id("packages-table").find_all("polyline")) == 200


def test_the_view_orders_leaking_packages_first():
    view = build_view(big_report())
    flags = [p["leaking"] for p in view["packages"]]
    assert flags == sorted(flags, reverse=True)


# ------------------------------------------------------------------------------------------ atomic writes


def test_write_text_atomic_replaces_the_file_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "sub" / "r.html"
    write_text_atomic(target, "one")
    write_text_atomic(target, "two ✓")
    assert target.read_text(encoding="utf-8") == "two ✓"
    assert os.listdir(target.parent) == ["r.html"]
    assert target.stat().st_mode & 0o044, "the report is readable by others, not 0600"


def test_a_failed_atomic_write_keeps_the_previous_report(tmp_path):
    target = tmp_path / "r.html"
    target.write_text("old")
    with pytest.raises(UnicodeEncodeError):
        write_text_atomic(target, "new \udcff", encoding="utf-8")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["r.html"]


# ------------------------------------------------------------------------------------------ offline CLI


def test_the_html_command_renders_a_saved_report(tmp_path, capsys):
    source = tmp_path / "r.json"
    source.write_text(json.dumps(sample_report()))
    assert cli.main(["html", str(source), "-o", str(tmp_path / "out" / "page.html")]) == 0
    assert "1 of 3 tests leak" in (tmp_path / "out" / "page.html").read_text(encoding="utf-8")
    assert "page.html" in capsys.readouterr().out


def test_the_html_command_defaults_the_output_next_to_the_report(tmp_path):
    source = tmp_path / "r.json"
    source.write_text(json.dumps(empty_report()))
    assert cli.main(["html", str(source)]) == 0
    assert (tmp_path / "r.html").exists()


@pytest.mark.parametrize(("content", "sentence"), [
    (None, "does not exist"),
    ("{not json", "is not valid JSON"),
    ('{"hello": 1}', "is not a pytest-memtrack JSON report"),
    ("[1, 2]", "is not a pytest-memtrack JSON report"),
    ('{"tool": {"name": "pytest-memtrack"}, "format_version": 99}', "format version 99"),
])
def test_the_html_command_explains_a_bad_report_file_and_exits_2(tmp_path, capsys, content, sentence):
    source = tmp_path / "r.json"
    if content is not None:
        source.write_text(content)
    assert cli.main(["html", str(source), "-o", str(tmp_path / "x.html")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pytest-memtrack: error: ") and sentence in err and "Traceback" not in err
    assert not (tmp_path / "x.html").exists()


def test_the_html_command_refuses_a_directory_as_output(tmp_path, capsys):
    source = tmp_path / "r.json"
    source.write_text(json.dumps(sample_report()))
    assert cli.main(["html", str(source), "-o", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ GitHub step summary


def test_the_github_summary_lists_leaking_tests_and_escapes_pipes_and_html():
    report = sample_report()
    report["tests"][0]["nodeid"] = "t.py::test_x[a|b<script>]"
    text = github.render_summary(report)
    assert text.startswith("### ❌ pytest-memtrack: 1 of 3 tests leak")
    row = next(line for line in text.splitlines() if "test_x" in line)
    assert "a\\|b&lt;script&gt;" in row and row.count(" | ") == 3
    assert "| app | 1.9 MiB |" in text


def test_the_github_summary_of_a_green_run_says_so_and_keeps_the_top_ten_leaks():
    assert "⚪ pytest-memtrack: No tests ran — nothing was checked for leaks" in github.render_summary(empty_report())
    green = sample_report()
    green["tests"] = [passing_test("t.py::test_a", 0.0)]
    green["comparison"] = None
    assert "✅ pytest-memtrack: No leaks found in the 1 hunted test" in github.render_summary(green)
    report = sample_report()
    report["tests"] = [leaking_test(f"t.py::test_{i}") for i in range(14)]
    text = github.render_summary(report)
    assert sum(1 for line in text.splitlines() if line.startswith("| t.py::test_")) == 10
    assert "and 4 more leaking tests" in text


def test_the_github_summary_says_when_the_regression_gate_could_not_run():
    report = empty_report()
    report["comparison"] = {"baseline": None, "rows": [], "regressions": None, "rules": ["leaking:0"],
                            "error": "the history store 'h.sqlite' is damaged (database disk image is malformed)"}
    assert github.render_summary(report).startswith(
        "### ❌ pytest-memtrack: The regression gate could not run: the history store 'h.sqlite' is damaged")
    report["comparison"]["rules"] = []  # only compared, no gate: the verdict stays the tests'
    assert "⚪ pytest-memtrack: No tests ran — nothing was checked for leaks" in github.render_summary(report)


def test_the_github_summary_is_appended_not_overwritten(tmp_path):
    target = tmp_path / "summary.md"
    target.write_text("# earlier step\n")
    github.append_summary(sample_report(), str(target))
    text = target.read_text(encoding="utf-8")
    assert text.startswith("# earlier step\n### ")


# ------------------------------------------------------------------------------------------ end to end

LEAKY_TESTS = """
import pytest
CACHE = []

@pytest.mark.max_leak_score(0.1)
def test_grows_a_global_list():
    CACHE.append(bytearray(256 * 1024))

def test_plain():
    assert True
"""


@pytest.mark.slow
def test_the_html_option_writes_the_page_after_a_run(pytester):
    pytester.makepyfile(LEAKY_TESTS)
    result = pytester.runpytest("--memtrack", "--memtrack-html=out/r.html", "--memtrack-max-runs=5", "-p", "no:cacheprovider")
    page = Path(pytester.path, "out", "r.html")
    assert page.exists(), result.stdout.str()
    root = parse(page.read_text(encoding="utf-8")).root
    assert root.by_id("verdict") is not None
    assert "test_grows_a_global_list" in root.by_id("tests").text
    result.stdout.fnmatch_lines(["memtrack: HTML report: *r.html"])


def test_the_html_ini_option_is_read_when_the_command_line_has_none(pytester):
    pytester.makepyfile("def test_ok():\n    pass\n")
    pytester.makeini("[pytest]\nmemtrack_html = from_ini.html\n")
    pytester.runpytest("--memtrack")
    assert Path(pytester.path, "from_ini.html").exists()


def test_an_unwritable_html_path_is_a_usage_error_before_any_test_runs(pytester):
    pytester.makepyfile("def test_ok():\n    pass\n")
    pytester.mkdir("adir")
    result = pytester.runpytest("--memtrack", "--memtrack-html=adir")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--memtrack-html must name a file*is a directory*"])


def test_a_run_on_github_actions_appends_the_step_summary(pytester, monkeypatch):
    pytester.makepyfile("def test_ok():\n    pass\n")
    summary = pytester.path / "step_summary.md"
    summary.write_text("before\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    pytester.runpytest("--memtrack")
    text = summary.read_text(encoding="utf-8")
    assert text.startswith("before\n### ") and "pytest-memtrack" in text


def test_the_sample_report_is_unchanged_by_rendering():
    report = sample_report()
    before = copy.deepcopy(report)
    render_html(report)
    assert report == before


def test_beyond_ten_leaking_tests_the_rest_are_folded_into_a_details_block():
    root = dom(big_report())
    assert len(root.find_all("article")) == 50
    (folded,) = root.find_all("details", class_="more")
    assert len(folded.find_all("article")) == 40
    assert folded.find_all("summary")[0].text == "40 more leak cards"


def test_leaking_tests_with_one_culprit_share_one_card_that_lists_them_all():
    report = sample_report()
    report["tests"] += [leaking_test(f"tests/test_app.py::test_again[{i}]") for i in range(3)]
    for test in report["tests"][-3:]:
        test["leak_score"] = 0.5
    root = dom(report)
    (card,) = root.find_all("article")
    assert card.attrs["data-tests"] == "4"
    text = " ".join(card.text.split())
    assert "Allocated at app/cache.py:12 — 4 tests leak here" in text
    assert [li.attrs["data-nodeid"] for li in card.find_all("li") if "data-nodeid" in li.attrs] == [
        f"tests/test_app.py::test_again[{i}]" for i in range(3)]
    rows = root.by_id("tests-table").find_all("tbody")[0].find_all("tr")
    links = [a.attrs["href"] for r in rows for a in r.find_all("a")]
    assert links == ["#leak-1"] * 4, "every leaking row links to the card"
    (message,) = card.find_all("details", class_="message")
    assert "exceeds max_leak_score" in message.text, "the raw failure message is folded"


def test_allocation_sites_are_shown_relative_to_the_project_or_site_packages():
    from pytest_memtrack.report.formatting import short_path

    assert short_path("/work/venv/lib/python3.11/site-packages/_pytest/logging.py") == "site-packages/_pytest/logging.py"
    assert short_path("/proj/app/cache.py", "/proj") == "app/cache.py"
    assert short_path("/elsewhere/x.py", "/proj") == "/elsewhere/x.py"


def test_counts_per_run_are_rounded_for_reading():
    from pytest_memtrack.report.formatting import format_count

    assert format_count(2.3333) == "2.3"
    assert format_count(2.0) == "2"
    assert format_count(13.33, signed=True) == "+13.3"
    assert format_count(None) == "—"


def test_low_severity_suggestions_are_folded_below_the_important_ones():
    report = sample_report()
    low = {"type": "growing_trend", "package_name": "os", "severity": "low", "message": "m", "recommendation": "r"}
    report["suggestions"]["suggestions"] += [low, dict(low, package_name="re")]
    section = dom(report).by_id("suggestions")
    (folded,) = section.find_all("details")
    assert folded.find_all("summary")[0].text == "2 low-severity suggestions"
    assert len(folded.find_all("div", class_="suggestion")) == 2
    assert len(section.find_all("div", class_="suggestion")) == 3
