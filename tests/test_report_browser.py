"""The demo's report read as a person reads it (issue 23): Chromium at 1280 x 900 px.

The first screen holds the primary-endpoint sentence and the bone-suppression gain; no element is
wider than the viewport; with every <details> closed the page is at most about 12 screens tall.
Runs on the session's demo run (slow); CXRBS_DEMO_DIR points it at a finished demo folder instead.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from report_browser import chromium, probe

MAX_HEIGHT = 11000


@pytest.fixture
def demo_report(request: pytest.FixtureRequest) -> Path:
    given = os.environ.get("CXRBS_DEMO_DIR")
    root = Path(given) if given else request.getfixturevalue("demo_run")
    report = root / "results" / "report.html"
    if not report.is_file():
        pytest.skip(f"no demo report at {report}")
    return report


@pytest.mark.slow
def test_demo_report_first_screen_width_and_height(demo_report: Path, tmp_path: Path) -> None:
    if chromium() is None:
        pytest.skip("chromium is not installed (.ci/run installs Debian's chromium)")
    closed = probe(demo_report, tmp_path / "closed", screenshot=tmp_path / "first_screen.png")
    first = closed["first_screen"]
    assert "Primary endpoint" in first, first[:2000]
    assert re.search(r"No evidence either way|images (raised|lowered) the AUC by", first), first
    assert "PSNR gain over leaving the image unchanged" in first and " dB on " in first, first
    assert "SYNTHETIC DEMO DATA" in first
    assert closed["broken"] == 0 and closed["images"] >= 10
    assert closed["wide"] == [] and closed["width"] <= closed["viewport"], closed["wide"]
    assert closed["height"] <= MAX_HEIGHT, closed["sections"]
    opened = probe(demo_report, tmp_path / "open", open_details=True)
    assert opened["wide"] == [], opened["wide"]
