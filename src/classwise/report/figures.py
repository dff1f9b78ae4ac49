"""Figures of the class-wise report (matplotlib, PNG at 150 dpi plus an SVG beside it).

Each function draws one figure of the paper on a fresh ``matplotlib.figure.Figure``
(no pyplot, so no global figure state and no GUI backend), saves it atomically
(temporary file, then rename) as ``<name>.png`` and ``<name>.svg`` (for papers)
and returns the PNG's path. Legends sit outside the axes, never over data;
heatmaps keep a readable size at any class count (tick labels only up to
:data:`_MAX_TICKS` classes). matplotlib is imported inside the functions, never
at import time.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..analysis.classwise import minmax
from ..fileio import atomic_open
from ..runfiles import RunFiles

_MAX_LEGEND = 20  # more classes than this: no legend / no numbers in cells
_MAX_TICKS = 60  # more classes than this: heatmaps without per-class tick labels
DPI = 150
_MAX_SIDE = 14.0  # inches: a heatmap of any class count stays printable


def path_of(name: str) -> str:
    """Where the report's figure ``name`` (its PNG) lives, relative to the run folder (under :attr:`RunFiles.figures`).

    The SVG is drawn beside it; the folder is the run layout's, never spelled here.
    """
    return (RunFiles(Path()).figures / name).as_posix()


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)  # the Agg canvas, without touching pyplot's global backend
    return fig


def _save(fig: Any, path: Path) -> Path:
    """Save ``fig`` as PNG at ``path`` and as SVG beside it, atomically (no "Software"/"Date" metadata)."""
    path = Path(path)
    with atomic_open(path.with_suffix(".svg")) as f:
        fig.savefig(f, format="svg", metadata={"Creator": None, "Date": None})
    with atomic_open(path) as f:
        fig.savefig(f, format="png", dpi=DPI, metadata={"Software": None})
    return path


def _side(k: int) -> float:
    """Height in inches of a K x K heatmap: grows with K, capped at :data:`_MAX_SIDE`."""
    return min(2.5 + 0.45 * k, _MAX_SIDE)


def _legend_above(ax: Any, n: int) -> None:
    """A legend above the axes, outside the data, in up to 4 columns."""
    ax.legend(fontsize=8, loc="lower left", bbox_to_anchor=(0.0, 1.01), ncols=min(max(n, 1), 4), frameon=False)


def _colors(k: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if k <= 10 else "tab20" if k <= 20 else "viridis"]
    return [cmap(i if k <= 20 else i / max(k - 1, 1)) for i in range(k)]


def plot_classwise_epochs(epochs: np.ndarray, per_class: np.ndarray, overall: np.ndarray,
                          class_names: list[str], path: Path, title: str = "",
                          ylabel: str = "robust accuracy (%)") -> Path:
    """Figure 1: class-wise robustness per epoch, one line per class.

    epochs: (E,); per_class: (E, K) percent; overall: (E,) percent, dashed black.
    The band between the best and the worst class at each epoch is shaded.
    """
    epochs, per_class = np.asarray(epochs), np.asarray(per_class, dtype=np.float64)
    fig = _figure(7, 4.5)
    ax = fig.subplots()
    with warnings.catch_warnings():  # an epoch with no class values leaves a hole, not a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanmin(per_class, 1), np.nanmax(per_class, 1)
    ax.fill_between(epochs, lo, hi, color="0.85", label="gap")
    for k, (name, color) in enumerate(zip(class_names, _colors(len(class_names)))):
        ax.plot(epochs, per_class[:, k], color=color, lw=1.2, label=name)
    ax.plot(epochs, overall, "k--", lw=2, label="overall")
    ax.set(xlabel="epoch", ylabel=ylabel, title=title)
    ax.xaxis.get_major_locator().set_params(integer=True)
    if len(class_names) <= _MAX_LEGEND:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, path)


def _annotate(ax: Any, matrix: np.ndarray, fmt: str) -> None:
    """Write each finite cell's value, white on dark cells."""
    top = np.nanmax(matrix) if np.isfinite(matrix).any() else 1.0
    for (i, j), v in np.ndenumerate(matrix):
        if np.isfinite(v):
            ax.text(j, i, format(v, fmt), ha="center", va="center", fontsize=7,
                    color="white" if v > 0.6 * top else "black")


def plot_confusion(matrix: np.ndarray, labels_x: list[str], labels_y: list[str], path: Path,
                   fmt: str = ".1f", title: str = "", xlabel: str = "predicted class (under attack)",
                   ylabel: str = "true class") -> Path:
    """Figure 2: heatmap of a (R, C) matrix, rows true classes, with numbers in cells.

    Used for the robustness confusion matrix (percent of row) and its superclass
    folding. NaN cells stay blank; numbers are omitted above 20 rows or columns.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    side = _side(max(matrix.shape))
    fig = _figure(side + 1.2, side)
    _heatmap(fig, fig.subplots(), matrix, labels_x, labels_y, fmt, title, xlabel, ylabel)
    return _save(fig, path)


def _heatmap(fig: Any, ax: Any, matrix: np.ndarray, labels_x: list[str], labels_y: list[str], fmt: str,
             title: str, xlabel: str, ylabel: str) -> None:
    """Draw a (R, C) matrix on ``ax``: Blues, NaN blank, numbers when small, a colour bar."""
    im = ax.imshow(matrix, cmap="Blues", vmin=0, interpolation="nearest")
    if max(matrix.shape) <= _MAX_TICKS:
        size = 8 if max(matrix.shape) <= _MAX_LEGEND else 5
        ax.set_xticks(range(len(labels_x)), labels_x, rotation=45 if size == 8 else 90, ha="right", fontsize=size)
        ax.set_yticks(range(len(labels_y)), labels_y, fontsize=size)
    else:  # class indices only: names would overlap
        xlabel, ylabel = f"{xlabel} (index of {len(labels_x)})", f"{ylabel} (index of {len(labels_y)})"
    if max(matrix.shape) <= _MAX_LEGEND:
        _annotate(ax, matrix, fmt)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    fig.colorbar(im, ax=ax, shrink=0.8)


def plot_norm_vs_robustness(norms: np.ndarray, robustness: np.ndarray, class_names: list[str],
                            rho: float, path: Path) -> Path:
    """Figure 4: per class, min-max normalised weight norm and robustness.

    norms, robustness: (K,). Classes are ordered by robustness (most robust first)
    so that a monotone relation reads as two falling curves; rho is in the title.
    """
    order = np.argsort(-np.nan_to_num(np.asarray(robustness, dtype=np.float64), nan=-np.inf), kind="stable")
    x = np.arange(len(order))
    fig = _figure(max(5.0, 0.45 * len(order) + 2), 4)
    ax = fig.subplots()
    ax.plot(x, minmax(robustness)[order], "o-", label="robustness (normalised)")
    ax.plot(x, minmax(norms)[order], "s--", label="weight norm (normalised)")
    ax.set_xticks(x, [class_names[i] for i in order], rotation=45, ha="right", fontsize=8)
    ax.set(xlabel="class (most robust first)", ylabel="min-max normalised", ylim=(-0.05, 1.05))
    ax.set_title(f"Spearman rho = {rho:.2f}", loc="right", fontsize=9)
    _legend_above(ax, 2)
    return _save(fig, path)


def plot_classwise_bars(per_class_by_name: dict[str, np.ndarray], class_names: list[str],
                        path: Path, ylabel: str = "accuracy (%)", title: str = "",
                        errors: dict[str, np.ndarray] | None = None, split: int | None = None) -> Path:
    """Grouped bars: per class, one bar per row name (clean, each attack); values (K,) percent.

    Classes are drawn in the given order (the report passes them worst first).
    errors: name -> (K, 2) [lo, hi] intervals (percent) drawn as error bars;
    split: draw a dashed separator before this position (bottom-k | top-k views).
    """
    fig, ax = _grouped_bars(per_class_by_name, class_names, errors)
    ax.set(ylabel=ylabel, ylim=(0, 100))
    if title:
        ax.set_title(title, loc="right", fontsize=9)
    if split is not None:
        ax.axvline(split - 0.5, color="0.3", ls="--", lw=1)
    _legend_above(ax, len(per_class_by_name))
    return _save(fig, path)


def _grouped_bars(per_class_by_name: dict[str, np.ndarray], class_names: list[str],
                  errors: dict[str, np.ndarray] | None = None) -> tuple[Any, Any]:
    """(figure, axes) with one group of bars per class and one bar per name; values (K,)."""
    k, n = len(class_names), len(per_class_by_name)
    width = 0.8 / max(n, 1)
    fig = _figure(min(max(6.0, 0.3 * k * max(n, 1) + 2), 18.0), 4.2)
    ax = fig.subplots()
    for r, (name, values) in enumerate(per_class_by_name.items()):
        v = np.asarray(values, dtype=np.float64)
        yerr = None
        if errors is not None and name in errors:
            ci = np.asarray(errors[name], dtype=np.float64)
            yerr = np.nan_to_num(np.abs(np.stack([v - ci[:, 0], ci[:, 1] - v])), nan=0.0)
        ax.bar(np.arange(k) + (r - (n - 1) / 2) * width, v, width, label=name, yerr=yerr,
               error_kw={"lw": 0.7, "capsize": 1.5, "ecolor": "0.25"})
    ax.set_xticks(range(k), class_names, rotation=45 if k <= 30 else 90, ha="right", fontsize=8 if k <= 30 else 6)
    return fig, ax


def plot_homing(misclassified: np.ndarray, homing: np.ndarray | None, class_names: list[str], path: Path,
                title: str = "") -> Path:
    """Figure 3: (a) misclassified confusion matrix, counts, diagonal hidden; (b) homing matrix.

    misclassified: (K, K) counts (the diagonal is not drawn). homing: (K, K)
    counts of examples that home when class j (column) is removed; NaN
    columns (not retrained) stay blank. Without ``homing`` only panel (a).
    """
    m = np.asarray(misclassified, dtype=np.float64).copy()
    np.fill_diagonal(m, np.nan)
    panels = [(m, "(a) misclassified confusion matrix", "predicted (confound) class")]
    if homing is not None:
        h = np.asarray(homing, dtype=np.float64).copy()
        np.fill_diagonal(h, np.nan)
        panels.append((h, "(b) homing confusion matrix", "removed class"))
    side = _side(len(class_names))
    fig = _figure((side + 1.2) * len(panels), side + 0.4)
    for ax, (matrix, sub, xlabel) in zip(np.atleast_1d(fig.subplots(1, len(panels))), panels):
        _heatmap(fig, ax, matrix, class_names, class_names, ".0f", sub, xlabel, "true class")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_probability_variance(per_class_by_name: dict[str, np.ndarray], class_names: list[str],
                              path: Path, title: str = "") -> Path:
    """Figure 5a/5e: per class, mean variance of the predicted probability vector, one bar per model/input."""
    fig, ax = _grouped_bars(per_class_by_name, class_names)
    ax.set(xlabel="ground truth class", ylabel="mean variance of predicted probabilities")
    if title:
        ax.set_title(title, loc="right", fontsize=9)
    _legend_above(ax, len(per_class_by_name))
    return _save(fig, path)


def plot_probability_trajectory(probs: np.ndarray, steps: list[int], class_names: list[str], true_class: int,
                                path: Path, title: str = "") -> Path:
    """Figure 5b-d / 5f-h: one image's probability vector after each attack step, one panel per step.

    probs: (S, K) for the S ``steps``; the true class's bar is drawn dark.
    """
    probs = np.asarray(probs, dtype=np.float64)
    k = probs.shape[1]
    fig = _figure(max(3.0, 0.3 * k + 1.5) * len(steps), 3.2)
    colors = ["0.2" if c == true_class else "tab:orange" for c in range(k)]
    for ax, step, p in zip(np.atleast_1d(fig.subplots(1, len(steps), sharey=True)), steps, probs):
        ax.bar(range(k), p, color=colors)
        ax.set_xticks(range(k), class_names, rotation=90, fontsize=7)
        ax.set(title=f"step {step}", ylim=(0, 1), xlabel="predicted class")
    fig.axes[0].set_ylabel("probability")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_robustness_intervals(counts: np.ndarray, labels: list[str], path: Path, title: str = "") -> Path:
    """Figure 6: number of classes per 10% robustness interval; counts (10,)."""
    fig = _figure(7, 3.8)
    ax = fig.subplots()
    ax.bar(range(len(counts)), np.asarray(counts), color="tab:blue")
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
    ax.set(xlabel="robustness interval (%)", ylabel="number of classes", title=title)
    ax.yaxis.get_major_locator().set_params(integer=True)
    return _save(fig, path)


def plot_gap_comparison(standard: np.ndarray, robust: np.ndarray, class_names: list[str],
                        comparison: dict[str, Any], path: Path, overall: tuple[float, float] | None = None) -> Path:
    """Figure 7: per class, standard accuracy beside robust robustness; each largest gap hatched.

    standard, robust: (K,) percent; comparison: :func:`classwise.analysis.gap_comparison`;
    overall: (standard, robust) overall values, drawn as a first "All" group.
    Classes are sorted by robustness, worst first; the band from the worst to the
    best class of each model is hatched; the legend sits above the axes.
    """
    standard, robust = np.asarray(standard, dtype=np.float64), np.asarray(robust, dtype=np.float64)
    order = np.argsort(np.nan_to_num(robust, nan=np.inf), kind="stable")
    first = 1 if overall else 0
    names = ["All"] * first + [class_names[i] for i in order]
    x = np.arange(len(names))
    fig = _figure(min(max(6.0, 0.5 * len(names) + 2), 18.0), 4.6)
    ax = fig.subplots()
    rows = (("standard", "standard model: accuracy", "tab:blue", standard, -0.2),
            ("robust", "robust model: robustness", "tab:red", robust, 0.2))
    for r, (key, label, color, v, off) in enumerate(rows):
        block = comparison[key]
        heights = np.r_[[overall[r]] if overall else [], v[order]]
        ax.bar(x + off, heights, 0.4, color=color, label=_gap_label(label, block, class_names))
        ax.axhspan(v[block["worst"]], v[block["best"]], color=color, alpha=0.12, hatch="//", lw=0)
    ax.set_xticks(x, names, rotation=45 if len(names) <= 30 else 90, ha="right", fontsize=8)
    ax.set(ylabel="accuracy / robustness (%)", ylim=(0, 100), xlabel="class (least robust first)")
    ax.legend(fontsize=8, loc="lower left", bbox_to_anchor=(0.0, 1.01), ncols=1, frameon=False)
    return _save(fig, path)


def _gap_label(label: str, block: dict[str, Any], names: list[str]) -> str:
    return f"{label}, gap {block['gap']:.1f}% ({names[block['best']]} - {names[block['worst']]})"


def plot_tsne(natural: np.ndarray, adversarial: np.ndarray, labels: np.ndarray, class_names: list[str],
              path: Path) -> Path:
    """Figure 8: t-SNE of penultimate features, (a) natural and (b) adversarial test images.

    natural, adversarial: (N, 2) embeddings of the same N images; labels: (N,) true classes.
    """
    labels = np.asarray(labels)
    colors = _colors(len(class_names))
    fig = _figure(11, 5)
    axes = fig.subplots(1, 2)
    for ax, emb, sub in zip(axes, (natural, adversarial), ("(a) natural test images", "(b) adversarial test images")):
        for c, (name, color) in enumerate(zip(class_names, colors)):
            pts = np.asarray(emb)[labels == c]
            ax.scatter(pts[:, 0], pts[:, 1], s=6, color=color, label=name)
        ax.set(title=sub, xticks=[], yticks=[])
    if len(class_names) <= _MAX_LEGEND:
        axes[1].legend(fontsize=7, markerscale=2, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, path)


def plot_robustness_curves(eps: np.ndarray, per_class: np.ndarray, overall: np.ndarray, class_names: list[str],
                           path: Path, norm: str = "linf", title: str = "",
                           marks: dict[str, float] | None = None) -> Path:
    """Robust accuracy against eps, one curve per class (from minimal adversarial distances).

    eps: (E,) radii; per_class: (K, E) percent; overall: (E,) percent, dashed
    black. A dotted line at 50%; ``marks`` name -> eps draws vertical lines
    (e.g. the evaluation's eps). Classes beyond 20 get no legend.
    """
    eps, per_class = np.asarray(eps, dtype=np.float64), np.asarray(per_class, dtype=np.float64)
    fig = _figure(7, 4.5)
    ax = fig.subplots()
    for c, color in zip(range(per_class.shape[0]), _colors(per_class.shape[0])):
        ax.plot(eps, per_class[c], color=color, label=class_names[c], drawstyle="steps-post")
    ax.plot(eps, overall, "k--", label="overall", drawstyle="steps-post")
    ax.axhline(50.0, color="0.6", linestyle=":")
    for name, value in (marks or {}).items():
        ax.axvline(value, color="0.4", linestyle="-.", linewidth=0.8, label=name)
    unit = "L2" if norm == "l2" else "L-inf"
    ax.set(xlabel=f"eps ({unit})", ylabel="robust accuracy (%)", title=title, ylim=(-2, 102))
    if per_class.shape[0] <= _MAX_LEGEND:
        ax.legend(fontsize=7, ncol=2)
    return _save(fig, path)
