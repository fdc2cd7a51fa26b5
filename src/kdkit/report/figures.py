"""The report's pictures, drawn with matplotlib's Agg canvas (no display, no pyplot global state) and
returned as PNG bytes. Each function takes numbers already computed in kdkit.report.numbers."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from kdkit.errors import KdkitError
from kdkit.run.rundir import LABELS

COLORS = {"teacher": "#4c72b0", "student_alone": "#8c8c8c", "student_kd": "#dd8452"}
DPI = 100


def new_figure(width: float, height: float, ncols: int = 1):
    """A figure and its axes on the Agg canvas; a clear error when the optional matplotlib is missing."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise KdkitError("reports need matplotlib: pip install 'kdkit[report]'") from None
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def reliability(
    bins: dict[str, dict[str, np.ndarray]], eces: dict[str, float], labels: Mapping[str, str] = LABELS
) -> bytes:
    """One reliability diagram per model: accuracy per confidence bin against the diagonal of perfect calibration."""
    fig, axes = new_figure(4.0 * len(bins), 3.8, len(bins))
    for ax, (role, b) in zip(axes, bins.items(), strict=True):
        edges = b["edges"]
        width = np.diff(edges)
        filled = b["count"] > 0
        ax.bar(edges[:-1][filled], b["accuracy"][filled], width=width[filled], align="edge",
               color=COLORS[role], edgecolor="white", label="accuracy")
        ax.bar(edges[:-1][filled], (b["confidence"] - b["accuracy"])[filled], bottom=b["accuracy"][filled],
               width=width[filled], align="edge", color="none", edgecolor="#c44e52", hatch="//", label="gap")
        ax.plot([0, 1], [0, 1], color="black", lw=1, ls="--")
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", title=f"{labels[role]} (ECE {eces[role]:.3f})")
        ax.set_ylabel("accuracy")
    axes[0].legend(loc="upper left", fontsize=8)
    return png(fig)


def per_class(
    classes: Sequence[str], accuracy: dict[str, np.ndarray], agreement: dict[str, np.ndarray],
    labels: Mapping[str, str] = LABELS,
) -> bytes:
    """Grouped bars per class: accuracy of every model (left) and agreement with the teacher (right)."""
    k = len(classes)
    fig, axes = new_figure(min(24.0, max(10.0, 0.3 * k)), 3.8, 2)
    x = np.arange(k)
    ticks = x if k <= 40 else x[:: -(-k // 20)]  # at most ~20 labels when there are many classes
    for ax, values, title in ((axes[0], accuracy, "accuracy per true class"),
                              (axes[1], agreement, "agreement with the teacher per true class")):
        width = 0.8 / len(values)
        for i, (role, v) in enumerate(values.items()):
            ax.bar(x + (i - (len(values) - 1) / 2) * width, np.nan_to_num(v), width, color=COLORS[role],
                   label=labels[role])
        ax.set_xticks(ticks, [classes[t] for t in ticks], rotation=90 if k > 20 else 0)
        ax.set(ylim=(0, 1.05), title=title, xlabel="class")
        ax.legend(fontsize=8, loc="lower right")
    return png(fig)


def kl_histogram(kl: dict[str, dict[str, np.ndarray]], labels: Mapping[str, str] = LABELS) -> bytes:
    """Histogram of per-sample KL(teacher || student), one panel per split, both students overlaid."""
    fig, axes = new_figure(5.0 * len(kl), 3.6, len(kl))
    for ax, (split, by_role) in zip(axes, kl.items(), strict=True):
        top = max(float(np.quantile(v, 0.99)) for v in by_role.values()) or 1.0
        edges = np.linspace(0.0, top, 41)
        for role, v in by_role.items():
            ax.hist(np.clip(v, 0, top), bins=edges, alpha=0.6, color=COLORS[role],
                    label=f"{labels[role]} (mean {v.mean():.3f})")
        ax.set(xlabel="KL(teacher || student) per sample (nats)", ylabel="samples", title=split)
        ax.legend(fontsize=8)
    return png(fig)


def confusion(classes: Sequence[str], matrices: dict[str, np.ndarray], labels: Mapping[str, str] = LABELS) -> bytes:
    """Teacher's predicted label (rows) against each student's predicted label (columns), row-normalised."""
    fig, axes = new_figure(5.2 * len(matrices), 4.8, len(matrices))
    k = len(classes)
    for ax, (role, counts) in zip(axes, matrices.items(), strict=True):
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.nan_to_num(counts / counts.sum(axis=1, keepdims=True))
        image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        if k <= 15:
            for i, j in np.ndindex(k, k):
                if counts[i, j]:
                    ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if share[i, j] > 0.5 else "black")
        ticks = np.arange(k) if k <= 30 else np.linspace(0, k - 1, 10).astype(int)
        ax.set_xticks(ticks, [classes[t] for t in ticks])
        ax.set_yticks(ticks, [classes[t] for t in ticks])
        agree = np.trace(counts) / max(counts.sum(), 1)
        ax.set(xlabel=f"{labels[role]} predicts", ylabel="teacher predicts",
               title=f"teacher vs {labels[role]} (agreement {agree:.3f})")
        fig.colorbar(image, ax=ax, shrink=0.8, label="share of teacher's row")
    return png(fig)


def training_curves(
    curves: dict[str, dict[str, list[tuple[int, float]]]], losses: dict[str, list[str]],
    labels: Mapping[str, str] = LABELS,
) -> bytes:
    """Three panels per epoch: every loss term of every model, accuracy (train and validation) and the
    validation agreement with the teacher."""
    fig, axes = new_figure(15.0, 3.8, 3)
    for model, series in curves.items():
        color, name = COLORS.get(model), labels.get(model, model)
        for key in losses.get(model, []):
            epochs, values = zip(*series[key], strict=True)
            axes[0].plot(epochs, values, "-" if key == "train_loss" else ":", color=color, marker=".",
                         label=f"{name}: {key.removeprefix('train_')}")
        for key in ("train_accuracy", "val_accuracy", "val_agreement"):
            if key in series:
                epochs, values = zip(*series[key], strict=True)
                ax = axes[2] if key == "val_agreement" else axes[1]
                ax.plot(epochs, values, "-" if key.startswith("train_") else "--", color=color, marker=".",
                        label=f"{name}: {key.split('_')[0]}")
    if all(v > 0 for line in axes[0].get_lines() for v in line.get_ydata()) and axes[0].get_lines():
        axes[0].set_yscale("log")
    titles = ("loss terms (train, raw values)", "accuracy", "agreement with the teacher")
    for ax, title in zip(axes, titles, strict=True):
        ax.set(xlabel="epoch", title=title)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes, color="#888")
    return png(fig)


def tradeoff(points: Sequence[dict[str, Any]], title: str = "accuracy vs latency") -> bytes:
    """Accuracy against latency at batch 1 (log scale); points are dicts with label, latency_ms, accuracy,
    optional color, marker and latency_std/accuracy_std for error bars."""
    fig, axes = new_figure(6.5, 4.4)
    from matplotlib.ticker import FuncFormatter

    ax = axes[0]
    for p in points:
        ax.errorbar(p["latency_ms"], p["accuracy"], xerr=p.get("latency_std"), yerr=p.get("accuracy_std"),
                    fmt=p.get("marker", "o"), color=p.get("color"), ms=9, capsize=3, label=p["label"])
    ax.set_xscale("log")
    ax.margins(x=0.2, y=0.12)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "25" else ""))
    ax.set(xlabel="latency at batch 1 (ms, log scale)", ylabel="test accuracy", title=title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return png(fig)
