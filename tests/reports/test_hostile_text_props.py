"""Hostile text in the store (names, errors) never reaches a terminal, an SVG or markdown raw.

Generated names hold the whole Unicode range (lone surrogates where no store is involved: Parquet
cannot hold them), every C0 and C1 control, terminal escape sequences (clear screen, OSC 8 links,
window titles), bidi overrides, rich markup and markdown/HTML payloads.
"""

from __future__ import annotations

import base64
import io
import json
import re
import tempfile
import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console

import prefect_synthobs as so
from prefect_synthobs import catalog as names
from prefect_synthobs import cli
from prefect_synthobs.health.tables import schema_for
from prefect_synthobs.reports.charts import line_chart
from prefect_synthobs.reports.health import (
    HealthReport,
    build_report,
    escape,
    load_frames,
    overview_markdown,
    render_text,
    report_for,
    table_rows,
)
from prefect_synthobs.reports.text import terminal_text, visible, xml_text

ESCAPE_SEQUENCES = [
    "\x1b[2J",  # clear screen
    "\x1b[H\x1b[J",
    "\x1b]8;;http://evil.example/\x1b\\click\x1b]8;;\x1b\\",  # OSC 8 link
    "\x1b]0;pwned\x07",  # window title
    "\x1b]52;c;aGVsbG8=\x07",  # clipboard write
    "\x9b31m",  # C1 CSI
    "\x9d0;title\x9c",  # C1 OSC ... ST
    "\x1bP+q\x1b\\",  # DCS
    "\x1b[6n",  # cursor position report (answer typed into the shell)
    "\u202e",  # right-to-left override
    "\u2066x\u2069",  # isolates
    "abc\x08\x08\x08xyz",  # backspaces
    "safe\rEVIL",  # carriage return
    "\x00",
    "\x7f",
    "\u2028",
    "\ufeff",
    "\ufffe",
    "\uffff",
    "\U0001fffe",
    "\ufdd0",
    "\u00ad",  # soft hyphen
    "\u200b",  # zero-width space
]
MARKUP = [
    "[bold red]x[/]",
    "[link=http://evil.example]click[/link]",
    "[/]",
    ":pile_of_poo:",
    "<img src=x onerror=alert(1)>",
    "[link](javascript:alert(1))",
    "![](http://tracker.example/p.gif)",
    "a|b||c",
    "`code`",
    "*em* _em_ **strong**",
    "# heading",
    "&lt;script&gt;",
    "\\|",
    "<script>alert(1)</script>",
]
CONTROLS = [chr(c) for c in (*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0))]
FRAGMENTS = st.sampled_from(ESCAPE_SEQUENCES + MARKUP + CONTROLS)


def hostile_text(*, surrogates: bool) -> st.SearchStrategy[str]:
    """Text mixing any code point (lone surrogates only with ``surrogates``) with hostile fragments."""
    anything = st.characters(exclude_categories=[] if surrogates else ["Cs"])
    piece = st.one_of(st.text(anything, min_size=1, max_size=6), FRAGMENTS)
    return st.lists(piece, min_size=1, max_size=5).map("".join)


STORE_TEXT = hostile_text(surrogates=False)
ANY_TEXT = hostile_text(surrogates=True)

# what must never reach a terminal: every control but the newline, and the bidi/format characters
_FORBIDDEN = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


def assert_terminal_safe(out: str) -> None:
    bad = _FORBIDDEN.search(out)
    assert bad is None, f"raw {bad.group()!r} in terminal output at {bad.start()}: {out[max(0, bad.start() - 40) :]!r}"
    assert not any(unicodedata.category(c) == "Cs" for c in out)


# -- the pieces, pure -------------------------------------------------------------------


@given(ANY_TEXT)
@settings(max_examples=300, deadline=None)
def test_visible_leaves_no_control_and_keeps_printable_text(text: str) -> None:
    shown = terminal_text(text)
    assert_terminal_safe(shown)
    assert "\n" not in shown and "\x1b" not in shown
    assert visible(shown) == shown  # written out once: showing it again changes nothing
    printable = [c for c in text if unicodedata.category(c) not in ("Cc", "Cf", "Cs", "Zl", "Zp", "Cn")]
    assert all(c in shown for c in printable)  # letters, marks, symbols of any script stay as they are
    if text.isascii() and text.isprintable():
        assert shown == text


def test_visible_writes_escapes_out() -> None:
    assert terminal_text("a\x1b[2Jb") == "a\\x1b[2Jb"
    assert terminal_text("\x9b31m\u202eevil") == "\\x9b31m\\u202eevil"
    assert terminal_text("line\nnext") == "line\\nnext"
    assert visible("line\nnext", keep_newlines=True) == "line\nnext"
    assert terminal_text("\ud800") == "\\ud800" and terminal_text("\U0010fffe") == "\\U0010fffe"
    assert terminal_text("café 北京 👨\u200d👩\u200d👧") == "café 北京 👨\u200d👩\u200d👧"  # joiners kept


@given(ANY_TEXT, st.lists(ANY_TEXT, min_size=1, max_size=4, unique=True))
@settings(max_examples=150, deadline=None)
def test_every_chart_is_valid_xml_and_shows_names_escaped(title: str, series_names: list[str]) -> None:
    days = [date(2026, 11, 1) + timedelta(days=k) for k in range(5)]
    series: dict[str, Sequence[float | None]] = {name: [1.0, None, 2.0, 3.0, 0.5] for name in series_names}
    svg = line_chart(title, days, series, limits={series_names[0]: 2.5})
    root = ET.fromstring(svg)  # raises on invalid XML
    texts = ["".join(t.itertext()) for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert texts[0] == visible(title)
    for name in series_names:
        shown = visible(name)
        expected = shown if len(shown) <= 28 else shown[:20] + "…" + shown[-7:]
        assert expected in texts, (expected, texts)
    svg.encode("utf-8")  # a data URI needs UTF-8: no lone surrogate left


def test_xml_text_escapes_what_xml_forbids() -> None:
    assert xml_text('<a href="x">&\x00\ufffe\ud800') == "&lt;a href=&quot;x&quot;&gt;&amp;\\x00\\ufffe\\ud800"


_MD_ACTIVE = set("\\`*_{}[]()#+!|<>~&")


def assert_markdown_literal(cell: str, text: str) -> None:
    """``cell`` holds no line break, no raw control and no unescaped markdown character, and reads back
    (backslash escapes undone) as ``text`` with line breaks as spaces and controls written out."""
    assert "\n" not in cell and "\r" not in cell
    assert_terminal_safe(cell)
    out, i = [], 0
    while i < len(cell):
        c = cell[i]
        if c == "\\":
            assert i + 1 < len(cell) and cell[i + 1] in _MD_ACTIVE, f"dangling backslash in {cell!r}"
            out.append(cell[i + 1])
            i += 2
            continue
        assert c not in _MD_ACTIVE, f"unescaped {c!r} at {i} in {cell!r}"
        out.append(c)
        i += 1
    flat = re.sub(r"\r\n|[\r\n\u2028\u2029\x85\x0b\x0c]", " ", text)
    assert "".join(out) == visible(flat)
    assert "](javascript:" not in cell


@given(ANY_TEXT)
@settings(max_examples=300, deadline=None)
def test_markdown_cells_escape_everything_the_ui_would_render(text: str) -> None:
    assert_markdown_literal(escape(text), text)


# -- a store holding hostile text: terminal, artifacts, charts ---------------------------------


def _row(table: str, **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(schema_for(table).names)
    row.update(values)
    return row


def write_hostile_store(root: Path, flow: str, task: str, error: str, dataset: str, now: datetime) -> None:
    store = so.HealthStore(str(root))
    start = now - timedelta(hours=2)
    flows = [
        _row(
            names.FLOW_RUNS,
            event_id=f"e{k}",
            flow_run_id=f"f{k}",
            flow_name=flow,
            kind=flow[:8] or "x",
            state_type=("FAILED", "COMPLETED")[k % 2],
            start_time=start + timedelta(minutes=k),
            end_time=start + timedelta(minutes=k + 1),
            duration_s=60.0,
            rows=10,
            error_type="RuntimeError" if k % 2 == 0 else None,
            error_message=error if k % 2 == 0 else None,
            source="hook",
        )
        for k in range(3)
    ]
    store.write(names.FLOW_RUNS, flows)
    store.write(
        names.TASK_RUNS,
        [
            _row(
                names.TASK_RUNS,
                event_id="te",
                task_run_id="t",
                flow_run_id="f0",
                flow_name=flow,
                task_name=task,
                state_type="FAILED",
                start_time=start,
                end_time=start + timedelta(seconds=5),
                duration_s=5.0,
                run_count=2,
                error_type="ValueError",
                error_message=error,
                source="hook",
            )
        ],
    )
    store.write(
        names.QUALITY_CHECKS,
        [
            _row(
                names.QUALITY_CHECKS,
                event_id="q",
                time=start,
                flow_name=flow,
                table_name=task,
                model_id=dataset,  # a model id is text too: its name in the leaderboard is the id itself
                metric="overall",
                score=0.5,
                threshold=0.4,
                passed=True,
            )
        ],
    )
    store.write(
        names.PRIVACY_LEDGER,
        [
            _row(
                names.PRIVACY_LEDGER,
                event_id="p",
                time=start,
                flow_name=flow,
                dataset=dataset,
                epsilon=1.0,
                spent=1.0,
                budget=10.0,
                remaining=9.0,
            )
        ],
    )


def hostile_report(root: Path, now: datetime, *, redact_pii: bool = False) -> HealthReport:
    since, until = now - timedelta(hours=24), now
    return report_for(so.HealthStore(str(root)), since, until, days=3, redact_pii=redact_pii)


@pytest.mark.slow  # heavy (>1.5 s of CPU): out of the fast tier
@given(flow=STORE_TEXT, task=STORE_TEXT, error=STORE_TEXT, dataset=STORE_TEXT)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_report_of_a_hostile_store_is_safe_in_every_output(
    flow: str, task: str, error: str, dataset: str, capsys: pytest.CaptureFixture[str]
) -> None:
    now = datetime.now(timezone.utc)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "store"
        write_hostile_store(root, flow, task, error, dataset, now)

        # the terminal, as `synthobs report` prints it (and its JSON)
        capsys.readouterr()
        assert cli.main(["report", "--store", str(root), "--trend-days", "3"]) == 0
        out = capsys.readouterr().out
        assert_terminal_safe(out)
        assert "3 runs, 2 not completed" in out
        assert cli.main(["report", "--store", str(root), "--json", "--trend-days", "3"]) == 0
        raw = capsys.readouterr().out
        assert_terminal_safe(raw)
        as_json = json.loads(raw)
        assert [f["flow"] for f in as_json["flows"]] == [flow]  # names kept whole in JSON (escaped by json)

        # the same on a wide recording console: every name shows whole, written out, never as markup
        report = hostile_report(root, now)
        console = Console(file=io.StringIO(), width=5000, color_system=None)
        render_text(report, console=console)
        text = console.file.getvalue()  # type: ignore[attr-defined]
        assert_terminal_safe(text)
        for value in (flow, task, error, dataset):
            assert terminal_text(value) in text, (value, terminal_text(value))

        # artifacts: every markdown cell and table artifact cell reads literally
        for attr in ("flows", "slowest_tasks", "failures", "failed_tasks", "quality", "models", "privacy"):
            rows = getattr(report, attr)
            assert rows, attr
            for original, row in zip(rows, table_rows(rows), strict=True):
                for column, cell in row.items():
                    if isinstance(original[column], str):
                        assert_markdown_literal(cell, original[column])
        overview = overview_markdown(report)
        assert escape(dataset) in overview
        # the overview's pictures: each SVG data URI decodes to valid XML showing the names written out
        pictures = re.findall(r"data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)", overview)
        assert pictures, overview
        legends: list[str] = []
        for encoded in pictures:
            root_element = ET.fromstring(base64.b64decode(encoded).decode("utf-8"))
            legends += ["".join(t.itertext()) for t in root_element.iter("{http://www.w3.org/2000/svg}text")]
        shown = visible(flow)
        assert (shown if len(shown) <= 28 else shown[:20] + "…" + shown[-7:]) in legends


def test_error_messages_are_redacted_again_when_shown(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A row another writer made without redaction: the report redacts it (``redact_pii`` on)."""
    now = datetime.now(timezone.utc)
    secret = "login failed for ann@example.com password=hunter2"
    write_hostile_store(tmp_path / "store", "flow-a", "task-a", secret, "customers", now)
    report = hostile_report(tmp_path / "store", now, redact_pii=True)
    shown = [r["error_message"] for r in report.failures + report.failed_tasks]
    assert shown and all("ann@example.com" not in m and "hunter2" not in m for m in shown), shown
    assert cli.main(["report", "--store", str(tmp_path / "store"), "--json"]) == 0
    out = capsys.readouterr().out
    assert "ann@example.com" not in out and "hunter2" not in out
    kept = hostile_report(tmp_path / "store", now, redact_pii=False)
    assert secret in [r["error_message"] for r in kept.failures]


def test_markup_in_names_prints_literally(tmp_path: Path) -> None:
    now = datetime.now(timezone.utc)
    flow = "[bold red]x[/] [link=http://evil.example]y[/link] :pile_of_poo:"
    write_hostile_store(tmp_path / "store", flow, "\x1b]0;pwned\x07t", "\x1b[2Jboom", "ds", now)
    console = Console(file=io.StringIO(), width=5000, force_terminal=True, color_system="truecolor")
    render_text(hostile_report(tmp_path / "store", now), console=console)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    plain = re.sub(r"\x1b\[[0-9;]*m", "", text)  # rich's own colours (a real terminal) are allowed
    assert flow in plain and "\\x1b]0;pwned\\x07t" in plain and "\\x1b[2Jboom" in plain
    assert "\x1b]" not in text and "\x1b[2J" not in text and "\U0001f4a9" not in text


def test_load_frames_reads_hostile_names_back_unchanged(tmp_path: Path) -> None:
    """Escaping happens where text is shown, never in the data: JSON and pandas keep the names whole."""
    now = datetime.now(timezone.utc)
    flow = "a\x1b[2J|<b>\u202e"
    write_hostile_store(tmp_path / "store", flow, "t", "e", "d", now)
    frames = load_frames(so.HealthStore(str(tmp_path / "store")), now - timedelta(days=1), now)
    assert set(frames[names.FLOW_RUNS].flow_name.astype(str)) == {flow}
    report = build_report(frames, now - timedelta(days=1), now, redact_pii=False)
    assert report.flows[0]["flow"] == flow
