"""The HTML report of one run: self-contained, every section that has data, honest header and table."""

from __future__ import annotations

import re
from html import escape
from html.parser import HTMLParser
from pathlib import Path

import pytest
import report_synthetic as synthetic

from normlab.errors import NormlabError
from normlab.report import write_report
from normlab.report.html import PAPERS, reference_text
from normlab.store import load_run


class _Collector(HTMLParser):
    """Every URL the page references (src/href) and every tag name used."""

    def __init__(self):
        super().__init__()
        self.urls: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]


def _parse(html: str) -> _Collector:
    collector = _Collector()
    collector.feed(html)
    return collector


def test_report_is_self_contained(pair_report):
    html = pair_report.read_text(encoding="utf-8")
    page = _parse(html)
    assert "script" not in page.tags and "link" not in page.tags  # inline CSS only, no scripts
    assert "http://" not in html and "https://" not in html  # no CDN, no network
    for url in page.urls:
        if url.startswith("#"):
            continue
        assert not Path(url).is_absolute(), url
        assert (pair_report.parent / url).exists(), f"{url} is referenced but missing"


def test_every_part1_figure_is_in_the_report(pair_report):
    html = pair_report.read_text(encoding="utf-8")
    for name in ("loss_curves", "accuracy_curves", "activation_histograms", "activation_moments", "unit_moments",
                 "tracked_percentiles", "moment_drift", "tracked_gradient", "gradient_moments",
                 "gradient_histograms", "distance_from_init"):
        assert f'src="figures/{name}.png"' in html, name
    assert 'src="animations/activation_histograms.gif"' in html
    assert 'class="note failed"' not in html  # no figure raised


def test_each_figure_has_a_numbered_caption_naming_its_paper_figure(pair_report):
    html = pair_report.read_text(encoding="utf-8")
    captions = re.findall(r"<figcaption><b>Figure (\d+)\. [^<]*</b> ([^<]*)", html)
    assert [int(number) for number, _ in captions] == list(range(1, len(captions) + 1))
    assert len(captions) == 15  # 3 start views, 11 figures and the animation
    for _number, text in captions:
        assert len(text) > 150  # a paragraph: what is plotted and how to read it
        assert re.search(r"S18|BN15|B18|d2l|seed notebook", text), text


def test_missing_probe_families_are_noted_not_errors(pair_report):
    html = pair_report.read_text(encoding="utf-8")
    left_out = html.split('id="left-out"')[1]
    for title in ("Internal covariate shift", "Loss landscape", "Divergence at the first steps", "Sweep curves"):
        assert title in left_out
    assert "No ics probe data" in left_out


def test_header_says_what_was_run(pair_report):
    html = pair_report.read_text(encoding="utf-8")
    assert "quickstart" in html
    assert "lr=0.001" in html.split("changed from the preset")[1].split("</tr>")[0]  # preset_defaults had 0.01
    assert "242,762 parameters" in html and "243,658 parameters" in html
    assert "seed=0, data_seed=0" in html
    assert "none at step 33" in html  # divergence in the status line
    assert "0123456789abcdef" in html  # code revision from the provenance
    assert "40 of 40" in html  # steps done of total
    assert "12.5 s training" in html


def test_summary_table_matches_the_metrics(pair_run, pair_report):
    html = pair_report.read_text(encoding="utf-8")
    summary = html.split('id="summary"')[1].split("</section>")[0]
    metrics = load_run(pair_run).metrics
    evals = metrics[(metrics.network == "batch") & metrics.test_accuracy.notna()]
    final, best = evals.test_accuracy.iloc[-1], evals.test_accuracy.max()
    best_step = int(evals.step[evals.test_accuracy.idxmax()])
    assert f"{100 * final:.2f}%" in summary
    assert f"{100 * best:.2f}% (step {best_step})" in summary
    assert "diverged at step 33" in summary


def test_settings_are_all_listed_when_preset_defaults_are_unknown(tmp_path):
    run = synthetic.make_run(tmp_path / "run", steps=10, probes=())
    html = write_report([run], out=tmp_path / "report").read_text(encoding="utf-8")
    assert "preset defaults not recorded" in html
    assert "All settings" in html and "<th>activations.value_range</th>" in html


def test_svg_on_request_is_linked_beside_the_png(tmp_path):
    run = synthetic.make_run(tmp_path / "run", steps=10, probe_every=5, probes=("distance",))
    report = write_report([run], out=tmp_path / "report", formats=("png", "svg"))
    html = report.read_text(encoding="utf-8")
    for name in ("loss_curves", "distance_from_init"):
        assert f'src="figures/{name}.png"' in html and f'href="figures/{name}.svg"' in html
        assert (report.parent / "figures" / f"{name}.svg").read_text().lstrip().startswith("<?xml")
    svg_only = write_report([run], out=tmp_path / "svg", formats=("svg",)).read_text(encoding="utf-8")
    assert 'src="figures/distance_from_init.svg"' in svg_only


def test_a_run_without_probes_or_metrics_still_gets_a_report(tmp_path):
    """A run killed right after it started: status running, no rows, no probes."""
    from normlab.store import RunStore

    RunStore.create(tmp_path / "run", config=synthetic.default_config(probes=[]), provenance={},
                    metric_columns=synthetic.METRIC_COLUMNS)
    html = write_report([tmp_path / "run"], out=tmp_path / "report").read_text(encoding="utf-8")
    assert "[running]" in html
    assert "no end time recorded" in html
    left_out = html.split('id="left-out"')[1]
    for title in ("Training curves", "Activation distributions", "Gradient statistics", "Distance from initialization"):
        assert title in left_out
    assert "<img" not in html


def test_a_run_with_only_some_probes_shows_only_those(tmp_path):
    run = synthetic.make_run(tmp_path / "run", steps=20, probes=("distance",))
    html = write_report([run], out=tmp_path / "report").read_text(encoding="utf-8")
    assert 'src="figures/distance_from_init.png"' in html
    assert 'src="figures/activation_histograms.png"' not in html
    assert "No activations probe data" in html


def test_a_directory_without_runs_is_a_one_line_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(NormlabError, match="neither a run directory nor a directory of runs"):
        write_report([tmp_path / "empty"], out=tmp_path / "report")


def test_unknown_formats_are_refused(pair_run, tmp_path):
    with pytest.raises(ValueError, match="formats"):
        write_report([pair_run], out=tmp_path, formats=("jpg",))


def test_a_figure_with_a_single_point_per_curve_is_one_line_not_empty_axes(tmp_path):
    """probe_every 10 over 10 steps measures step 0 only: the distance figure is a note, the loss is drawn."""
    run = synthetic.make_run(tmp_path / "run", steps=10, probe_every=10, probes=("distance",))
    html = write_report([run], out=tmp_path / "report").read_text(encoding="utf-8")
    assert 'src="figures/distance_from_init.png"' not in html
    assert not (tmp_path / "report" / "figures" / "distance_from_init.png").exists()
    notes = [line for line in html.split("<p") if 'class="note short"' in line]
    assert len(notes) == 1
    assert ("<b>Distance from initialization</b>: not drawn: at most 1 probe measurement per network, and a curve "
            "over training needs two") in notes[0]
    assert 'src="figures/loss_curves.png"' in html


@pytest.mark.parametrize("reduction, words", [("sum", "sum over the batch's examples"),
                                              ("mean", "mean over the batch")])
def test_the_loss_figure_and_the_summary_say_how_the_training_loss_is_reduced(tmp_path, reduction, words):
    run = synthetic.make_run(tmp_path / "run", steps=10, probe_every=5, probes=(),
                             info={"loss_reduction": {"train": reduction, "eval": "mean"}})
    html = write_report([run], out=tmp_path / "report").read_text(encoding="utf-8")
    caption = html.split('id="fig-loss_curves"')[1].split("</figcaption>")[0]
    assert f"each training batch in train mode ({escape(words)};" in caption
    assert "each the mean over its examples" in caption
    summary = html.split('id="summary"')[1].split("</section>")[0]
    assert ("(sum over the batch)" in summary) == (reduction == "sum")
    assert "Train and test losses are means over the evaluated examples" in summary


def test_paper_keys_are_defined_once_the_readme_table_is_papers():
    """The README's table of paper keys holds exactly ``PAPERS``; the report lists them as text."""
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    table = readme.split("| key | reference |\n|---|---|\n", 1)[1].split("\n\n", 1)[0]
    rows = dict(line.strip("|").strip().split(" | ", 1) for line in table.splitlines())
    assert {key: text.rstrip(" |") for key, text in rows.items()} == PAPERS
    assert reference_text(PAPERS["S18"]) == ("Santurkar, Tsipras, Ilyas & Madry, How does batch normalization help "
                                             "optimization? (arXiv 1805.11604), NeurIPS 2018")
    assert "https://" not in reference_text(PAPERS["d2l"]) and "`" not in reference_text(PAPERS["seed notebooks"])
