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


# Injected like PROBE: on load, use the page as a reader would (sort the class table by a column, pick a
# class) and report what changed, with how many gallery thumbnails decoded and what overflows.
USE = """<script>
window.addEventListener("load", function () {
  var width = document.documentElement.clientWidth, bad = [];
  document.querySelectorAll("body *").forEach(function (el) {
    if (el.closest(".scroll") && !el.classList.contains("scroll")) return;
    if (el.getBoundingClientRect().right > width + 1) bad.push(el.tagName + ":" + (el.textContent || "").slice(0, 40));
  });
  var thumbs = Array.from(document.querySelectorAll(".shot img"));
  var table = document.querySelector("table.classes");
  function order() { return Array.from(table.tBodies[0].rows).map(function (r) { return r.getAttribute("data-class"); }); }
  function column(names, col) { return names.map(function (n) {
    return parseFloat(table.querySelector("tr[data-class='" + CSS.escape(n) + "']").cells[col].getAttribute("data-v")); }); }
  var before = order(), th = table.tHead.rows[0].cells;
  th[0].click(); var up = order(); th[0].click(); var down = order();
  th[3].click(); th[3].click(); var robust_down = column(order(), 3);
  var pick = document.getElementById("pick"), view = document.getElementById("pick-view");
  pick.value = pick.options[pick.options.length - 1].value; pick.dispatchEvent(new Event("change"));
  var row = view.querySelector("tr[data-class]");
  document.title = JSON.stringify({
    thumbs: thumbs.length, thumbs_rendered: thumbs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length,
    overflow: bad.slice(0, 5), page_wider: document.documentElement.scrollWidth > width,
    before: before, sorted_up: up, sorted_down: down,
    robust_down: robust_down,
    picked: pick.value, shown: view.getAttribute("data-shown"), shown_row: row ? row.getAttribute("data-class") : null,
    shown_strips: Array.from(view.querySelectorAll(".strip-box")).map(function (s) { return s.getAttribute("data-class"); }),
    shown_images: Array.from(view.querySelectorAll("img")).filter(function (i) { return i.naturalWidth > 0; }).length});
});
</script>"""


def browser_probe(report: Path, tmp: Path, budget_ms: int = 10000, timeout: float = 300, script: str = PROBE) -> dict:
    """What Chromium saw of ``report`` (1280 x 900 window): images, rendered, overflow, scrolls, headings
    (``script``: :data:`PROBE`; :data:`USE` for what sorting and the class picker did)."""
    probe = tmp / "probe.html"
    probe.write_text(report.read_text().replace("</body>", script + "</body>"))
    out = subprocess.run(_chromium(tmp, budget_ms) + ["--dump-dom", probe.as_uri()], capture_output=True, text=True,
                         timeout=timeout).stdout
    title = re.search(r"<title>(.*?)</title>", out, re.S)
    assert title, f"no <title> in the dumped DOM: {out[:300]!r}"
    return json.loads(html.unescape(title.group(1)))


def _chromium(tmp: Path, budget_ms: int) -> list[str]:
    return [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--no-first-run", f"--user-data-dir={tmp / 'profile'}", "--window-size=1280,900",
            f"--virtual-time-budget={budget_ms}"]


def screenshot(report: Path, png: Path, tmp: Path, timeout: float = 300) -> Path:
    """A PNG of the first 1280 x 900 pixels of ``report`` as Chromium draws it, written to ``png``."""
    png.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(_chromium(tmp, 5000) + [f"--screenshot={png}", report.as_uri()], capture_output=True,
                   timeout=timeout, check=True)
    return png
