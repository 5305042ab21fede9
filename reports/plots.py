"""Figures of the report, drawn with matplotlib (Agg) and embedded as PNG data URIs, so the
HTML page opens from a file with no network and no other file beside it."""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

WIDTH, HEIGHT = 6.4, 3.6


def data_uri(fig) -> str:
    """The figure as a `data:image/png;base64,...` URI; the figure is closed."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def seed_bands(frame: pd.DataFrame, x: str, y: str, group: str, *, title: str, xlabel: str,
               ylabel: str, markers: bool = False) -> str:
    """One line per `group` (mean over seeds of `y` at each `x`) with a min-max band over seeds;
    `markers`: a dot at each point too (a run of one point shows)."""
    fig, ax = plt.subplots(figsize=(WIDTH, HEIGHT))
    for name, rows in frame.groupby(group, sort=True):
        by_x = rows.groupby(x)["value"]
        mean, low, high = by_x.mean(), by_x.min(), by_x.max()
        (line,) = ax.plot(mean.index, mean.values, label=str(name), linewidth=1.5,
                          marker="o" if markers else None, markersize=3)
        if rows["seed"].nunique() > 1:
            ax.fill_between(mean.index, low.values, high.values, alpha=0.2, color=line.get_color())
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return data_uri(fig)


def pareto_front(points: pd.DataFrame) -> pd.DataFrame:
    """The points not dominated by another (no other point with FLOPs <= and accuracy >=, one
    of them strictly), sorted by FLOPs."""
    ordered = points.sort_values(["flops", "value"], ascending=[True, False])
    front, best = [], float("-inf")
    for _, row in ordered.iterrows():
        if row["value"] > best:
            front.append(row)
            best = row["value"]
    return pd.DataFrame(front)


def accuracy_vs_flops(points: pd.DataFrame, *, title: str) -> str:
    """Every (FLOPs, accuracy) eval point, coloured by pipeline, with the Pareto front."""
    fig, ax = plt.subplots(figsize=(WIDTH, HEIGHT))
    for name, rows in points.groupby("pipeline", sort=True):
        ax.scatter(rows["flops"], rows["value"], s=12, label=str(name), alpha=0.7)
    front = pareto_front(points)
    ax.step(front["flops"], front["value"], where="post", color="black", linewidth=1,
            label="Pareto front")
    ax.set(title=title, xlabel="FLOPs", ylabel="accuracy", xscale="log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return data_uri(fig)


def history(series: pd.DataFrame, *, title: str, ylabel: str) -> str:
    """A metric's value per run, oldest first (x: the runs, labelled by id and start date), the
    latest run marked."""
    fig, ax = plt.subplots(figsize=(WIDTH, HEIGHT * 0.8))
    x = list(range(len(series)))
    ax.plot(x, series["value"], marker="o", markersize=3, linewidth=1)
    ax.scatter(x[-1:], series["value"].iloc[-1:], color="crimson", zorder=3, label="this run")
    labels = [f"{run}\n{pd.Timestamp(t):%m-%d}" for run, t in zip(series["run_id"], series["started"],
                                                                 strict=True)]
    step = max(1, len(x) // 12)
    ax.set_xticks(x[::step], labels[::step], fontsize=7)
    ax.set(title=title, ylabel=ylabel, xlabel="run")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return data_uri(fig)


def curves_with_marks(panels: dict[str, pd.Series], marks: dict[str, float], *, title: str,
                      xlabel: str) -> str:
    """One panel per entry of `panels` (a series of y indexed by x), stacked on a shared x axis,
    each with a vertical line at every `marks` x (labelled in the first panel's legend)."""
    fig, axes = plt.subplots(len(panels), 1, sharex=True, squeeze=False,
                             figsize=(WIDTH, HEIGHT * 0.6 * max(len(panels), 1) + 0.6))
    styles = ("--", ":", "-.")
    for i, (ax, (ylabel, series)) in enumerate(zip(axes[:, 0], panels.items(), strict=True)):
        ax.plot(series.index, series.values, marker="o", markersize=3, linewidth=1.5)
        for j, (name, x) in enumerate(marks.items()):
            ax.axvline(x, color=f"C{j + 1}", linestyle=styles[j % len(styles)], linewidth=1.2,
                       label=name if i == 0 else None)
        ax.set(ylabel=ylabel)
        ax.grid(alpha=0.3)
    axes[0, 0].set_title(title)
    axes[-1, 0].set_xlabel(xlabel)
    if marks:
        axes[0, 0].legend(fontsize=7)
    return data_uri(fig)


def heatmap(table: pd.DataFrame, *, title: str, xlabel: str, ylabel: str, colorbar: str) -> str:
    """`table`'s cells coloured by value (rows down, columns across; NaN left blank), each cell
    written out when the table is small enough to read them."""
    values = table.to_numpy(dtype=float)
    fig, ax = plt.subplots(figsize=(max(WIDTH * 0.6, 0.8 * table.shape[1] + 1.5),
                                    max(HEIGHT * 0.6, 0.4 * table.shape[0] + 1.2)))
    image = ax.imshow(values, aspect="auto", cmap="viridis")
    ax.set_xticks(range(table.shape[1]), [str(c) for c in table.columns], rotation=45, ha="right",
                  fontsize=7)
    ax.set_yticks(range(table.shape[0]), [str(r) for r in table.index], fontsize=7)
    if values.size <= 120:
        for (row, column), value in np.ndenumerate(values):
            if np.isfinite(value):
                ax.text(column, row, f"{value:.2g}", ha="center", va="center", fontsize=6,
                        color="black" if image.norm(value) > 0.6 else "white")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    fig.colorbar(image, ax=ax, label=colorbar)
    return data_uri(fig)
