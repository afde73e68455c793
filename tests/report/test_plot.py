"""The Pareto plot keeps its markers apart and its axes show the differences (#18 item 6): a true log
axis for omega with no "0" tick, an accuracy axis zoomed on the best plans, PTQ and QAT side by side."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from mpsearch.report.plots import ZOOM_POINTS, plot_pareto  # noqa: E402

from test_truth import SUMMARY  # noqa: E402


@pytest.fixture()
def figure(tmp_path, monkeypatch):
    """Draw the demo's figures and keep the figure open for inspection."""
    monkeypatch.setattr(plt, "close", lambda fig=None: None)
    frontier = [dict(p) for p in SUMMARY["frontier"]]
    frontier[0]["acc_ptq"] = 0.5599  # the collapsed W2A8 point
    baselines = dict(SUMMARY["baselines"], zero={"size_bytes": 50000.0, "omega": 0.0, "acc_ptq": 0.9833})
    path = plot_pareto(tmp_path / "p.png", "size_bytes", frontier, baselines, SUMMARY["chosen"])
    assert path.stat().st_size > 10_000
    fig = plt.gcf()
    yield fig
    matplotlib.pyplot.close("all")


def test_omega_axis_is_log_without_a_zero_tick(figure):
    ax = figure.axes[0]
    fig = figure
    fig.canvas.draw()
    assert ax.get_yscale() == "log"
    assert all(t.get_text() not in ("0", "$\\mathdefault{0}$") for t in ax.get_yticklabels())
    ys = [y for line in ax.lines for y in line.get_ydata()]
    assert min(ys) > 0  # nothing drawn at 0
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(lab.startswith("omega 0 (not drawn): ZERO") for lab in labels)


def test_accuracy_axis_zooms_on_the_best_and_marks_the_collapsed_point(figure):
    ax = figure.axes[1]
    lo, hi = ax.get_ylim()
    # the chosen 97.77, W4A8 98.05 / 98.61 and W8A8 98.33 fill the axis; 56% does not squash them
    assert lo > 98.61 - ZOOM_POINTS - 1 and hi < 99.5 and hi - lo < 2.5
    texts = [t.get_text() for t in ax.texts]
    assert texts.count("56.0%") == 2  # the frontier's and W2A8's collapsed points, written


def test_ptq_and_qat_of_one_plan_are_drawn_apart(figure):
    ax = figure.axes[1]
    marks = {}
    for line in ax.lines:
        if line.get_label().startswith("chosen") or line.get_label().startswith("uniform W4A8"):
            marks[line.get_label()] = (float(line.get_xdata()[0]), float(line.get_ydata()[0]))
    (x1, y1), (x2, y2) = marks["chosen PTQ"], marks["chosen QAT"]
    assert y1 == y2 == pytest.approx(97.77)  # same value: only the dodge keeps them apart
    assert x2 - x1 > 0.02 * (50.0 - 10.59)  # more than a marker's width on this axis
    assert marks["uniform W4A8 QAT"][0] > marks["uniform W4A8 PTQ"][0]
