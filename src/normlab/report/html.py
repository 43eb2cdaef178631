"""The report page: one self-contained HTML file (inline CSS, no scripts, no network).

Media are referenced by paths relative to the page, so the report directory can be moved, zipped
or opened straight from disk.
"""

from __future__ import annotations

import datetime as _datetime
import os
import re
from dataclasses import dataclass
from html import escape
from pathlib import Path

from normlab.report.findings import findings, replicate_groups
from normlab.report.header import SUMMARY_HEADER, header_rows, provenance_rows, summary_row
from normlab.report.runs import MAX_OVERLAID, RunSet
from normlab.report.sections import Section, Table
from normlab.report.style import network_color
from normlab.store import format_value

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #222; margin: 0;
       background: #fafafa; line-height: 1.45; }
main { max-width: 1040px; margin: 0 auto; padding: 1.5rem 1.5rem 4rem; background: #fff; }
h1 { font-size: 1.6rem; margin: 0 0 .3rem; }
h2 { font-size: 1.3rem; border-bottom: 2px solid #ddd; padding-bottom: .2rem; margin-top: 2.4rem; }
h3 { font-size: 1.05rem; margin: 1.4rem 0 .4rem; }
.subtitle { color: #666; margin: 0 0 1rem; }
nav ol { columns: 2; font-size: .92rem; padding-left: 1.2rem; }
table { border-collapse: collapse; font-size: .85rem; margin: .4rem 0 1rem; }
th, td { border: 1px solid #ddd; padding: .25rem .5rem; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
table.facts th { width: 12rem; font-weight: 600; }
table.numbers td { text-align: right; font-variant-numeric: tabular-nums; }
table.numbers td.name { text-align: left; }
.swatch { display: inline-block; width: .8rem; height: .8rem; border-radius: 2px; margin-right: .35rem;
          vertical-align: -1px; }
figure { margin: 1.2rem 0 2rem; }
figure img, figure video { max-width: 100%; height: auto; display: block; border: 1px solid #eee; }
figcaption { font-size: .9rem; color: #333; margin-top: .4rem; }
.note { background: #fff8e1; border-left: 4px solid #f0c040; padding: .5rem .8rem; font-size: .9rem; }
.failed { background: #fdecea; border-left-color: #d9534f; }
.intro { color: #444; }
.status-completed { color: #2e7d32; font-weight: 600; }
.status-running, .status-interrupted { color: #b26a00; font-weight: 600; }
.status-failed, .status-diverged { color: #c62828; font-weight: 600; }
details { margin: .3rem 0 1rem; }
summary { cursor: pointer; color: #1f4e9c; }
footer { color: #888; font-size: .8rem; margin-top: 3rem; }
code { background: #f4f4f4; padding: 0 .2rem; }
ul.findings li { margin: .25rem 0; }
"""

# The paper keys the code, the presets and the report use, defined once: the README's table of
# papers holds these rows (tests/report/test_report_html.py compares them); the report lists them
# as plain text (``reference_text``), the page being self-contained.
PAPERS: dict[str, str] = {
    "BN15": (
        "Ioffe & Szegedy, [Batch normalization: accelerating deep network training by reducing "
        "internal covariate shift](https://arxiv.org/abs/1502.03167), ICML 2015"
    ),
    "S18": (
        "Santurkar, Tsipras, Ilyas & Madry, [How does batch normalization help "
        "optimization?](https://arxiv.org/abs/1805.11604), NeurIPS 2018"
    ),
    "B18": (
        "Bjorck, Gomes, Selman & Weinberger, [Understanding batch "
        "normalization](https://arxiv.org/abs/1806.02375), NeurIPS 2018"
    ),
    "d2l": (
        "Zhang, Lipton, Li & Smola, [Dive into Deep Learning, Batch "
        "Normalization](https://d2l.ai/chapter_convolutional-modern/batch-norm.html) and its "
        "exercises"
    ),
    "G19": (
        "Ghorbani, Krishnan & Xiao, [An investigation into neural net optimization via Hessian "
        "eigenvalue density](https://arxiv.org/abs/1901.10159), ICML 2019"
    ),
    "C21": (
        "Cohen, Kaur, Li, Kolter & Talwalkar, [Gradient descent on neural networks typically occurs "
        "at the edge of stability](https://arxiv.org/abs/2103.00065), ICLR 2021"
    ),
    "seed notebooks": (
        '"How does batch normalization work?" Part 1 (an MLP ± BN on MNIST: activation and gradient '
        "distributions) and Part 2 (VGG ± BN on CIFAR-10: training curves, distance from init, loss "
        "landscape); the experiments the `part1` and `part2` presets reproduce"
    ),
}


def reference_text(markdown: str) -> str:
    """A ``PAPERS`` entry as plain text: an arXiv link becomes its title and "(arXiv NNNN.NNNNN)",
    any other link its text; code marks go."""
    text = re.sub(r"\[([^\]]+)\]\(https://arxiv\.org/abs/([^)]+)\)", r"\1 (arXiv \2)", markdown)
    return re.sub(r"\[([^\]]+)\]\([^)]+\)", r"\1", text).replace("`", "")


FIRST_SCREEN = ("start",)


@dataclass
class RenderedItem:
    """A figure, animation or table with the paths (relative to the page) it was saved to."""

    kind: str  # "image", "video", "gif", "table", "note" (a figure with too few points), "failed"
    title: str
    caption: str
    source: str = ""
    extra_links: tuple = ()  # (label, relative path), e.g. the SVG version
    table: Table | None = None
    anchor: str = ""  # the figure's name: the page gives it the id "fig-<anchor>"


@dataclass
class RenderedSection:
    section: Section
    items: list[RenderedItem]


def relative(path: Path, start: Path) -> str:
    """``path`` relative to ``start`` with forward slashes (what a browser expects in ``src``)."""
    return Path(os.path.relpath(Path(path).resolve(), Path(start).resolve())).as_posix()


def page(runset: RunSet, sections: list[RenderedSection], out: Path) -> str:
    """The complete HTML document."""
    shown = [s for s in sections if s.items]
    left_out = [s for s in sections if not s.items]
    numbered = list(_numbered(shown))
    # Sections shown before the contents, right under the findings (the data and the start).
    first_screen = sum(1 for s in shown if s.section.key in FIRST_SCREEN)
    numbered = sorted(numbered, key=lambda pair: pair[1].section.key not in FIRST_SCREEN)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(_title(runset))}</title>",
        f"<style>{CSS}</style></head><body><main>",
        f"<h1>{escape(_title(runset))}</h1>",
        f'<p class="subtitle">normlab report, written {_datetime.datetime.now():%Y-%m-%d %H:%M}. '
        "Colors stand for networks (the same in every figure)"
        + ("; line styles tell the runs apart" if runset.several else "") + ".</p>",
        _findings_html(runset, _anchors(shown)),
        *(_section_html(s, number) for number, s in numbered[:first_screen]),
        _contents(shown, left_out),
        _runs_html(runset, out),
        _summary_html(runset),
        *(_section_html(s, number) for number, s in numbered[first_screen:]),
        _left_out_html(left_out),
        _references_html(),
        "<footer>Rebuild with <code>normlab report "
        + escape(" ".join(str(r.run.path) for r in runset.runs[:1]) + (" ..." if len(runset.runs) > 1 else ""))
        + "</code>; the report only reads the run directories.</footer>",
        "</main></body></html>",
    ]
    return "\n".join(parts)


def _title(runset: RunSet) -> str:
    if runset.sweeps and len(runset.sweeps) == len({r.sweep for r in runset.runs}):
        return "Sweep " + ", ".join(s.label for s in runset.sweeps)
    if len(runset.runs) == 1:
        return f"Run {runset.runs[0].label}"
    return (
        f"{len(runset.runs)} runs: "
        + ", ".join(r.label for r in runset.runs[:4])
        + (" ..." if len(runset.runs) > 4 else "")
    )


def _numbered(sections: list[RenderedSection]):
    """Sections with the number of their first figure (figures are numbered through the page)."""
    number = 1
    for section in sections:
        yield number, section
        number += sum(item.kind in ("image", "video", "gif") for item in section.items)


def _contents(shown: list[RenderedSection], left_out: list[RenderedSection]) -> str:
    entries = ['<li><a href="#findings">Findings</a></li>']
    entries += [f'<li><a href="#{s.section.key}">{escape(s.section.title)}</a></li>' for s in shown
                if s.section.key in FIRST_SCREEN]
    entries += ['<li><a href="#runs">What was run</a></li>', '<li><a href="#summary">Summary</a></li>']
    entries += [f'<li><a href="#{s.section.key}">{escape(s.section.title)}</a></li>' for s in shown
                if s.section.key not in FIRST_SCREEN]
    if left_out:
        entries.append('<li><a href="#left-out">Left out (no data)</a></li>')
    return "<nav><ol>" + "".join(entries) + "</ol></nav>"


def _facts_table(rows) -> str:
    body = "".join(f"<tr><th>{escape(name)}</th><td>{escape(value)}</td></tr>" for name, value in rows)
    return f'<table class="facts">{body}</table>'


def _runs_html(runset: RunSet, out: Path) -> str:
    # Many runs (a sweep) would push the figures far down: each run's card then starts folded.
    folded = len(runset.runs) > MAX_OVERLAID
    parts = ['<section id="runs"><h2>What was run</h2>']
    for report_run in runset.runs:
        run = report_run.run
        status = escape(run.status)
        title = f"{escape(report_run.label)} <span class=\"status-{status}\">[{status}]</span>"
        card = [
            f'<p>Run directory: <a href="{escape(relative(run.path, out))}">{escape(str(run.path))}</a></p>',
            _facts_table(header_rows(report_run)),
            "<details><summary>Provenance</summary>" + _facts_table(provenance_rows(report_run)) + "</details>",
        ]
        settings = [(key, format_value(value)) for key, value in run.config.items() if key != "preset_defaults"]
        card.append("<details><summary>All settings</summary>" + _facts_table(settings) + "</details>")
        if folded:
            parts.append(f"<details><summary>{title}</summary>{''.join(card)}</details>")
        else:
            parts.append(f"<h3>{title}</h3>{''.join(card)}")
    parts.append("</section>")
    return "".join(parts)


def _summary_html(runset: RunSet) -> str:
    header = SUMMARY_HEADER if runset.several else SUMMARY_HEADER[1:]
    rows = []
    for report_run in runset.runs:
        for network in report_run.networks:
            cells = summary_row(report_run, network)
            cells = cells if runset.several else cells[1:]
            rows.append(_summary_cells(cells, network, runset.several))
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    return (
        '<section id="summary"><h2>Summary</h2>'
        "<p>Accuracy and loss in eval mode at the last evaluation (final) and the best over all "
        "evaluations (with its step); train = the fixed training subset evaluated like the test split. "
        "Train and test losses are means over the evaluated examples; last batch loss is the train-mode loss "
        "of the final training step, the mean over its batch unless the cell says it is the sum.</p>"
        f'<table class="numbers"><tr>{head}</tr>{"".join(rows)}</table></section>'
    )


def _summary_cells(cells: list[str], network: str, several: bool) -> str:
    names = 2 if several else 1
    swatch = f'<span class="swatch" style="background:{network_color(network)}"></span>'
    out = []
    for index, cell in enumerate(cells):
        text = escape(cell)
        if index == names - 1:
            text = swatch + text
        out.append(f'<td class="name">{text}</td>' if index < names or index == len(cells) - 1 else f"<td>{text}</td>")
    return "<tr>" + "".join(out) + "</tr>"


def _section_html(rendered: RenderedSection, first_number: int) -> str:
    section = rendered.section
    parts = [f'<section id="{section.key}"><h2>{escape(section.title)}</h2>']
    if section.intro:
        parts.append(f'<p class="intro">{escape(section.intro)}</p>')
    parts += [f'<p class="note">{escape(note)}</p>' for note in section.notes]
    number = first_number
    for item in rendered.items:
        if item.kind in ("image", "video", "gif"):
            parts.append(_figure_html(item, number))
            number += 1
        elif item.kind == "table":
            assert item.table is not None  # a table item always carries its table
            parts.append(_table_html(item.table))
        elif item.kind == "note":  # a figure with too few points, said in one line
            anchor = f' id="fig-{escape(item.anchor)}"' if item.anchor else ""
            parts.append(f'<p class="note short"{anchor}><b>{escape(item.title)}</b>: {escape(item.caption)}</p>')
        else:
            parts.append(f'<p class="note failed">{escape(item.title)}: {escape(item.caption)}</p>')
    parts.append("</section>")
    return "".join(parts)


def _anchors(shown: list[RenderedSection]) -> dict[str, int]:
    """Figure name -> figure number, for the figures on the page."""
    anchors = {}
    for number, section in _numbered(shown):
        for item in section.items:
            if item.kind in ("image", "video", "gif"):
                if item.anchor:
                    anchors[item.anchor] = number
                number += 1
    return anchors


def _findings_html(runset: RunSet, anchors: dict[str, int]) -> str:
    """The findings of every group of replicate runs, each sentence linking to its figure."""
    groups = replicate_groups([r.run for r in runset.runs])
    labels = {id(r.run): r.label for r in runset.runs}
    parts = ['<section id="findings"><h2>Findings</h2>',
             "<p class=\"intro\">Computed by fixed rules from this run's stored arrays (the rules are in "
             "<code>normlab.report.findings</code>); an accuracy difference the run cannot resolve is stated "
             "last.</p>"]
    for group in groups:
        items = findings(group)
        if len(groups) > 1:
            name = labels[id(group[0])] + (f" and {len(group) - 1} replicates" if len(group) > 1 else "")
            parts.append(f"<h3>{escape(name)}</h3>")
        if not items:
            parts.append('<p class="note">No evaluations or probe data to state findings from.</p>')
            continue
        rows = []
        for finding in items:
            link = ""
            if finding.figure in anchors:
                link = f' <a href="#fig-{escape(finding.figure)}">(Figure {anchors[finding.figure]})</a>'
            rows.append(f"<li>{escape(finding.text)}{link}</li>")
        parts.append(f'<ul class="findings">{"".join(rows)}</ul>')
    parts.append("</section>")
    return "".join(parts)


def _figure_html(item: RenderedItem, number: int) -> str:
    source, alt = escape(item.source), escape(item.title)
    if item.kind == "video":
        media = (f'<video src="{source}" controls loop muted autoplay playsinline preload="auto" '
                 f'aria-label="{alt}"></video>')
    else:
        media = f'<img src="{source}" alt="{alt}" loading="eager">'
    links = "".join(f' [<a href="{escape(path)}">{escape(label)}</a>]' for label, path in item.extra_links)
    anchor = f' id="fig-{escape(item.anchor)}"' if item.anchor else ""
    return (f"<figure{anchor}>{media}<figcaption><b>Figure {number}. {escape(item.title)}.</b> "
            f"{escape(item.caption)}{links}</figcaption></figure>")


def _table_html(table: Table) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in table.header)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in table.rows)
    caption = f"<p>{escape(table.caption)}</p>" if table.caption else ""
    return f"<h3>{escape(table.title)}</h3>{caption}<table>{'<tr>' + head + '</tr>'}{body}</table>"


def _left_out_html(left_out: list[RenderedSection]) -> str:
    if not left_out:
        return ""
    items = "".join(
        f"<li><b>{escape(s.section.title)}</b>: {escape(' '.join(s.section.notes) or 'no data')}</li>" for s in left_out
    )
    return f'<section id="left-out"><h2>Left out (no data)</h2><ul class="note">{items}</ul></section>'


def _references_html() -> str:
    items = "".join(f"<li><b>{escape(key)}</b>: {escape(reference_text(text))}</li>" for key, text in PAPERS.items())
    return f'<section id="references"><h2>References</h2><ul>{items}</ul></section>'
