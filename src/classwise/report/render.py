"""Render report sections (:mod:`classwise.report.section`) to report.md and to one self-contained report.html.

The HTML page works offline: inline CSS, a little plain JavaScript (every table
sorts by a click on any column; a class picker gathers one class's row, confounds
and gallery strips in one place; figures and thumbnails open full size on a
click), and every image as a base64 PNG data URI. Gallery thumbnails are written
as PNG files under the run folder first (:func:`write_tiles`), so report.md links
the same files.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from ..fileio import atomic_write
from .section import Gallery, Section, Tile

THUMB = 64  # the longer side of a thumbnail file, in pixels (smaller images keep their size)
CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222;
overflow-wrap:anywhere}table{border-collapse:collapse;font-size:.9em;margin:0}th,td{border:1px solid #ccc;
padding:.25em .5em;text-align:right;white-space:nowrap}th:first-child,td:first-child{text-align:left}
thead th{position:sticky;top:0;background:#f4f4f4;cursor:pointer}img{max-width:100%;height:auto}
.note{color:#555;font-size:.85em}.scroll{overflow:auto;max-width:100%;max-height:32em;margin:.5em 0}
h2{border-bottom:1px solid #ddd;padding-bottom:.2em}.card{border:2px solid #345;border-radius:8px;padding:.2em 1em;
background:#f7f9fc}.card ul{font-size:1.05em}.badge{display:inline-block;background:#fde8c8;border:1px solid #d9a441;
border-radius:1em;padding:.05em .6em;margin:.1em;font-size:.85em}.badge.ok{background:#dff3df;border-color:#6a6}
details>summary{cursor:pointer}details>summary h2{display:inline}.ci{display:inline-block;position:relative;
width:80px;height:.7em;background:#eee;vertical-align:middle}.ci i{position:absolute;top:0;bottom:0;
background:#9bc}.ci b{position:absolute;top:-2px;bottom:-2px;width:2px;background:#123}
.strip{display:flex;flex-wrap:wrap;gap:.6em;margin:.3em 0 1em}.shot{font-size:.75em;width:210px}
.shot img{width:64px;height:64px;image-rendering:pixelated;margin-right:2px;border:1px solid #ccc}
.pick{margin:.5em 0;padding:.5em;border:1px dashed #aaa}img{cursor:zoom-in}
img.big,.shot img.big{position:fixed;inset:0;margin:auto;width:auto;height:auto;min-width:40vmin;max-width:95vw;
max-height:95vh;z-index:9;background:#fff;box-shadow:0 0 0 100vmax rgba(0,0,0,.6);cursor:zoom-out}"""
JS = """<script>
(function () {
  function key(td) { var v = td.getAttribute("data-v"); if (v !== null) return parseFloat(v);
    var f = parseFloat(td.textContent); return isNaN(f) ? td.textContent.toLowerCase() : f; }
  document.querySelectorAll("table").forEach(function (table) {
    var head = table.tHead; if (!head || !table.tBodies.length) return;
    Array.from(head.rows[0].cells).forEach(function (th, col) {
      th.title = "sort by this column"; th.addEventListener("click", function () {
        var body = table.tBodies[0], rows = Array.from(body.rows), up = th.getAttribute("data-dir") !== "up";
        rows.sort(function (a, b) { var x = key(a.cells[col]), y = key(b.cells[col]);
          return (x < y ? -1 : x > y ? 1 : 0) * (up ? 1 : -1); });
        th.setAttribute("data-dir", up ? "up" : "down"); rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
  document.addEventListener("click", function (e) {
    var big = document.querySelector("img.big"); if (big) { big.classList.remove("big"); return; }
    if (e.target.tagName === "IMG") e.target.classList.add("big");
  });
  var pick = document.getElementById("pick"), view = document.getElementById("pick-view");
  if (!pick || !view) return;
  function show() {
    var name = pick.value; view.innerHTML = ""; if (!name) return;
    var row = document.querySelector("table.classes tr[data-class='" + CSS.escape(name) + "']");
    if (row) { var t = document.createElement("table"), h = row.closest("table").tHead.cloneNode(true);
      t.appendChild(h); t.appendChild(row.cloneNode(true)); view.appendChild(t); }
    document.querySelectorAll("[data-class='" + CSS.escape(name) + "'].strip-box").forEach(function (s) {
      view.appendChild(s.cloneNode(true)); });
    view.setAttribute("data-shown", name);
  }
  pick.addEventListener("change", show); show();
})();
</script>"""


def _png(image) -> bytes:
    """A PNG of ``image`` (H, W, C) uint8, its longer side shrunk to :data:`THUMB` when larger."""
    from PIL import Image

    img = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    if max(img.size) > THUMB:
        img.thumbnail((THUMB, THUMB))
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def tiles_of(gallery: Gallery) -> list[Tile]:
    return [t for strip in gallery.strips for shot in strip.shots for t in shot.tiles]


def write_tiles(run_dir: Path, gallery: Gallery) -> list[Path]:
    """Write every thumbnail of ``gallery`` as a PNG file under ``run_dir``; return their paths."""
    out = []
    for tile in tiles_of(gallery):
        path = run_dir / tile.path
        path.parent.mkdir(parents=True, exist_ok=True)
        out.append(atomic_write(path, _png(tile.image)))
    return out


def _gallery_md(gallery: Gallery) -> str:
    out = []
    for strip in gallery.strips:
        out.append(f"**{strip.label}**\n")
        out += [" ".join(f"![{t.alt}]({t.path})" for t in shot.tiles) + f" {shot.caption}  " for shot in strip.shots]
        out.append("")
    return "\n".join(out) + "\n"


def render_markdown(sections: list[Section], title: str) -> str:
    """report.md text; figures and thumbnails are linked relative to the run folder."""
    out = [f"# {title}\n"]
    for s in sections:
        out.append(f"## {s.title}\n")
        out += [f"{s.text}\n"] if s.text else []
        out += ["\n".join(f"- {item}" for item in s.items) + "\n"] if s.items else []
        out += ["sanity: " + " ".join(f"`{b}`" for b in s.badges) + "\n"] if s.badges else []
        out += [s.table_md] if s.table_md else []
        out += [f"![{s.title}]({s.figure.path})\n"] if s.figure else []
        out += [_gallery_md(s.gallery)] if s.gallery else []
    return "\n".join(out)


def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _gallery_html(gallery: Gallery, run_dir: Path) -> str:
    esc, out = html.escape, []
    for strip in gallery.strips:
        shots = "".join('<div class="shot">' + "".join(
            f'<img src="{data_uri(run_dir / t.path)}" alt="{esc(t.alt)}" title="{esc(t.alt)}">' for t in shot.tiles)
            + f"<br>{esc(shot.caption)}</div>" for shot in strip.shots)
        out.append(f'<div class="strip-box" data-class="{esc(strip.anchor)}"><p><b>{esc(strip.label)}</b></p>'
                   f'<div class="strip">{shots or "<i>no saved example</i>"}</div></div>')
    return "".join(out)


def _badges_html(badges: tuple[str, ...]) -> str:
    ok = ' ok' if badges == ("no sanity flags",) else ''
    return "<p>" + "".join(f'<span class="badge{ok}">{html.escape(b)}</span>' for b in badges) + "</p>"


def _section_html(s: Section, run_dir: Path) -> str:
    esc = html.escape
    body = [f"<p>{esc(s.text)}</p>"] if s.text else []
    body += ["<ul>" + "".join(f"<li>{esc(i)}</li>" for i in s.items) + "</ul>"] if s.items else []
    body += [_badges_html(s.badges)] if s.badges else []
    body += [s.table_html] if s.table_html else []
    if s.figure:
        body.append(f'<img src="{data_uri(run_dir / s.figure.path)}" alt="{esc(s.title)}">')
    body += [_gallery_html(s.gallery, run_dir)] if s.gallery else []
    if s.kind == "details":
        return f"<details><summary><h2>{esc(s.title)}</h2></summary>" + "".join(body) + "</details>"
    head = f"<h2>{esc(s.title)}</h2>"
    return f'<section class="card">{head}{"".join(body)}</section>' if s.kind == "card" else head + "".join(body)


def picker_html(names: tuple[str, ...]) -> str:
    """The class picker: a select of every class and the panel the page's script fills."""
    options = "".join(f'<option value="{html.escape(n)}">{html.escape(n)}</option>' for n in names)
    return (f'<div class="pick"><label>Show one class: <select id="pick"><option value="">(choose)</option>'
            f'{options}</select></label><div id="pick-view"></div></div>')


def render_html(sections: list[Section], run_dir: Path, title: str) -> str:
    """A self-contained HTML page: inline CSS and script, the drawn PNGs (under ``run_dir``) as data URIs."""
    esc = html.escape
    body = [f"<h1>{esc(title)}</h1>"] + [_section_html(s, run_dir) for s in sections]
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + f"\n{JS}\n</body></html>\n")
