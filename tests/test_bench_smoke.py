"""``python -m bench --smoke`` runs offline and writes the page with all its tables."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.wire, pytest.mark.slow]

SECTIONS = (
    "## Headline",
    "## Machine",
    "## How to reproduce",
    "## 1. Post cost versus thread length",
    "## 2. The original threadmem 0.2.39 (SQLite)",
    "## 3. Peer MongoDB stores",
    "## 4. The floor: raw pymongo",
    "## 5. Round trips and bytes per operation",
    "## 6. Concurrency",
    "## 7. Memory",
    "## 8. Agent-framework adapters",
    "## 9. Long threads: overflow pages",
    "## What could not run, and why",
)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("bench")
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    page = out / "benchmarks.md"
    assert page.is_file(), completed.stderr[-4000:]
    return out, page.read_text(encoding="utf-8")


def test_page_has_every_section(smoke_run: tuple[Path, str]) -> None:
    _out, text = smoke_run
    for heading in SECTIONS:
        assert heading in text, heading
    assert "Smoke run" in text


def test_ratio_line_against_raw_pymongo(smoke_run: tuple[Path, str]) -> None:
    _out, text = smoke_run
    line = next(line for line in text.splitlines() if "Post vs raw pymongo floor" in line)
    assert re.search(r"\d+\.\d\dx \(\d+\.\d\d\u2013\d+\.\d\d\) at 10 messages", line), line
    assert "at 100 messages" in line


def test_tables_hold_measurements(smoke_run: tuple[Path, str]) -> None:
    _out, text = smoke_run
    # Section 1: a row per thread length, with a latency and a paired ratio.
    assert re.search(r"^\| 10 \| [\d.]+ (ms|µs) .*\| \d+\.\d\dx ", text, re.MULTILINE)
    assert re.search(r"^\| 100 \| [\d.]+ (ms|µs) .*\| \d+\.\d\dx ", text, re.MULTILINE)
    # Section 5: a post is one round trip.
    assert re.search(r"^\| post \| 1 \| `(update|findAndModify)` \|", text, re.MULTILINE)
    # Section 6: every row reports zero lost, missing and duplicated messages.
    rows = [line for line in text.splitlines() if line.startswith(("| threads |", "| processes |"))]
    assert len(rows) == 16, rows
    for row in rows:
        assert row.rstrip().endswith("| 0 | 0 | 0 |"), row
    # Section 7: a row for loading the whole thread.
    assert re.search(r"^\| `RoleThread.get\(id\)`: the whole thread \| 500 \|", text, re.MULTILINE)


def test_adapter_section_pairs_ours_with_each_peer(smoke_run: tuple[Path, str]) -> None:
    _out, text = smoke_run
    section = text.split("## 8. Agent-framework adapters", 1)[1].split("\n## ", 1)[0]
    assert "SecantusDB" in section
    blocks = dict(block.split("**:", 1) for block in section.split("\n**")[1:] if "**:" in block)
    # Peers that import in this interpreter run in smoke mode; the others need a venv.
    for title in ("OpenAI Agents SDK", "Google ADK", "Pydantic AI"):
        rows = re.findall(
            r"^\| (10|100) \| [\d.]+ (?:ms|µs) .*\| \d+\.\d+x .*\| (\d+) / (\d+) \| 3 of 2 \|$",
            blocks[title],
            re.MULTILINE,
        )
        assert [length for length, _, _ in rows] == ["10", "100"], blocks[title]
        for _length, ours_items, peer_items in rows:
            assert ours_items == peer_items, blocks[title]
        # Command monitoring of one more append and read of each store.
        traffic = re.findall(
            r"^\| (10|100) \|((?: \d+ \([a-zA-Z, ]*\), [\d,.]+ KB \|){6})$",
            blocks[title],
            re.MULTILINE,
        )
        assert [length for length, _ in traffic] == ["10", "100"], blocks[title]
    for title in ("LangChain", "LlamaIndex"):
        assert "not run: skipped in --smoke mode" in blocks[title], blocks[title]
    summary = re.findall(
        r"^\| (OpenAI Agents SDK|Google ADK|Pydantic AI) \| .*\d\.\d+x", section, re.MULTILINE
    )
    assert sorted(summary) == ["Google ADK", "OpenAI Agents SDK", "Pydantic AI"], section


def test_overflow_section_checks_its_targets(smoke_run: tuple[Path, str]) -> None:
    _out, text = smoke_run
    section = text.split("## 9. Long threads: overflow pages", 1)[1].split("\n## ", 1)[0]
    verdict = r"(pass|\*\*miss\*\*)"
    assert re.search(
        rf"^\| post at 2,000 ÷ post at 200 messages \(paired\) \| ≤ 1\.5x \| "
        rf"\d+\.\d+x \([\d.]+\u2013[\d.]+\) \| {verdict} \|$",
        section,
        re.MULTILINE,
    ), section
    for length in ("200", "2,000"):
        assert re.search(
            rf"^\| commands of the newest 20 at {length} messages \| 1 \| \d+ \| {verdict} \|$",
            section,
            re.MULTILINE,
        ), section
    whole = re.search(
        r"^\| commands of the whole 2,000-message thread \((\d+) pages\) \| "
        rf"≤ 2 \+ pages/100 = [\d.]+ \| (\d+) \| {verdict} \|$",
        section,
        re.MULTILINE,
    )
    assert whole is not None, section
    assert int(whole.group(1)) > 0, section
    # The original runs in its venv, which smoke mode skips.
    assert section.count("| not run: skipped in --smoke mode") == 2, section
    # The curve: a latency and a paired ratio per length, paged and inline.
    for length, limits in (("200", "default limits"), ("2,000", "default limits")):
        assert re.search(
            rf"^\| {length} \| {limits} \| [\d.]+ (ms|µs) .*\| \d+\.\d+x ",
            section,
            re.MULTILINE,
        ), section
    assert re.search(
        r"^\| 200 \| overflow off \(all inline\) \| [\d.]+ (ms|µs) .*\| \d+\.\d+x ",
        section,
        re.MULTILINE,
    ), section
    # Reading the whole thread returns every message.
    assert re.search(
        r"^\| 2,000 \| \d+ \| \d+ \(find.*\) \| \d+ \(.*\) \| 2,000 \|", section, re.MULTILINE
    ), section
    assert re.search(
        r"^- \*\*Long threads \(overflow pages\)\*\*: \d+ of 4 targets", text, re.MULTILINE
    )


def test_smoke_skips_the_venvs(smoke_run: tuple[Path, str]) -> None:
    _out, text = smoke_run
    assert text.count("not run: skipped in --smoke mode") >= 2


def test_plots_are_written(smoke_run: tuple[Path, str]) -> None:
    out, text = smoke_run
    names = re.findall(r"!\[(bench-[\w-]+\.png)\]", text)
    if importlib.util.find_spec("matplotlib") is None:
        assert not names
        assert "pip install matplotlib" in text
        return
    expected = {"bench-post-latency.png", "bench-concurrency.png", "bench-memory.png"}
    assert expected | {"bench-overflow.png"} <= set(names)
    for name in names:
        assert (out / name).stat().st_size > 1000, name
