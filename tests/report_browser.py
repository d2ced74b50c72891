"""Open a report in headless Chromium as a reader would: 1280 x 900 px, every <details> closed.

``probe`` returns the page height, the elements wider than the viewport (or sticking out to its
right), the text visible on the first screen and whether every image decoded. Shared by the
report tests on the fake results tree and on the demo run.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

WIDTH, HEIGHT = 1280, 900
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--virtual-time-budget=10000", f"--window-size={WIDTH},{HEIGHT}"]

# Runs on load: measures, then writes the findings as JSON into <body data-probe="...">.
_PROBE = """<script>window.addEventListener('load', () => {
  if (%(open)s) document.querySelectorAll('details').forEach(d => { d.open = true; });
  const vw = document.documentElement.clientWidth;
  const wide = [];
  for (const el of document.body.querySelectorAll('*')) {
    const hidden = el.closest('details:not([open])');
    if (hidden && el.tagName !== 'DETAILS' && el.tagName !== 'SUMMARY') continue;
    const r = el.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue;
    const spills = el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1
      && getComputedStyle(el).overflowX === 'visible';
    if (r.right > vw + 1 || spills) {
      const name = el.tagName.toLowerCase() + (el.className ? '.' + el.className : '');
      wide.push(name + ' ' + Math.round(r.right));
    }
  }
  const first = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const range = document.createRange();
  while (walker.nextNode()) {
    const node = walker.currentNode;
    if (!node.textContent.trim()) continue;
    range.selectNodeContents(node);
    const r = range.getBoundingClientRect();
    if (r.height > 0 && r.top < %(height)d) first.push(node.textContent.trim());
  }
  const imgs = [...document.images];
  document.body.dataset.probe = JSON.stringify({
    height: document.documentElement.scrollHeight, width: document.documentElement.scrollWidth,
    viewport: vw, wide: wide, first_screen: first.join(' '), images: imgs.length,
    broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).length,
    details: document.querySelectorAll('details').length,
    sections: Object.fromEntries([...document.querySelectorAll('section')].map(
      e => [e.id, Math.round(e.getBoundingClientRect().height)])),
    figures: [...document.querySelectorAll('figure')].filter(
      f => !f.closest('details:not([open])')).map(
      f => Math.round(f.getBoundingClientRect().height))});
});</script>"""


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def probe(report: Path, tmp: Path, *, screenshot: Path | None = None,
          open_details: bool = False) -> dict[str, Any]:
    """Load ``report`` (a copy with the probe script) and return what the probe measured;
    ``open_details`` opens every <details> first (to check the long tables fit too)."""
    exe = chromium()
    assert exe is not None
    tmp.mkdir(parents=True, exist_ok=True)
    page = tmp / "probed.html"
    page.write_text(report.read_text(encoding="utf-8").replace(
        "</body>", _PROBE % {"height": HEIGHT, "open": "true" if open_details else "false"}
        + "</body>"),
                    encoding="utf-8")
    cmd = [exe, *FLAGS, f"--user-data-dir={tmp / 'profile'}"]
    result = subprocess.run([*cmd, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                            timeout=180)
    found = re.search(r'data-probe="([^"]*)"', result.stdout)
    assert found, result.stderr[-2000:]
    data = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&")
                      .replace("&lt;", "<").replace("&gt;", ">"))
    if screenshot is not None:
        subprocess.run([*cmd, f"--screenshot={screenshot}", report.as_uri()], capture_output=True,
                       timeout=180)
    return data
