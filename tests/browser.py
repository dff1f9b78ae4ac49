"""Headless Chromium for the report tests: load a report, read back what the page saw."""

from __future__ import annotations

import html
import json
import re
import subprocess
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
NO_CHROMIUM = "no /usr/bin/chromium: run `make browser-deps` to install it"
# Injected before </body>: on load, the page's title becomes a JSON report of images, overflow and sections.
PROBE = """<script>
window.addEventListener("load", function () {
  var width = document.documentElement.clientWidth, bad = [];
  document.querySelectorAll("body *").forEach(function (el) {
    if (el.closest(".scroll") && !el.classList.contains("scroll")) return;
    if (el.getBoundingClientRect().right > width + 1) bad.push(el.tagName + ":" + (el.textContent || "").slice(0, 40));
  });
  var imgs = Array.from(document.images);
  document.title = JSON.stringify({
    images: imgs.length, rendered: imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length,
    overflow: bad.slice(0, 5), page_wider: document.documentElement.scrollWidth > width,
    scrolls: document.querySelectorAll(".scroll").length,
    headings: Array.from(document.querySelectorAll("h2")).map(function (h) { return h.textContent; })});
});
</script>"""


def browser_probe(report: Path, tmp: Path, budget_ms: int = 10000, timeout: float = 300) -> dict:
    """What Chromium saw of ``report`` (1280 x 900 window): images, rendered, overflow, scrolls, headings."""
    probe = tmp / "probe.html"
    probe.write_text(report.read_text().replace("</body>", PROBE + "</body>"))
    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--no-first-run", f"--user-data-dir={tmp / 'profile'}", "--window-size=1280,900",
           f"--virtual-time-budget={budget_ms}", "--dump-dom", probe.as_uri()]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout).stdout
    title = re.search(r"<title>(.*?)</title>", out, re.S)
    assert title, f"no <title> in the dumped DOM: {out[:300]!r}"
    return json.loads(html.unescape(title.group(1)))
