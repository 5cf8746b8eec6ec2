"""The report of ``streamrec bench replay``: the markdown table, the PNG plots, JSON cleaning.

Kept apart from the runs because it is presentation only: nothing here changes a metric, and
matplotlib, an optional dependency (the ``bench`` extra), is imported only inside :func:`plot`,
so the runs and the table work without it.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from streamrec.bench.replay_metrics import lorenz
from streamrec.bench.replay_run import RunResult


def table(results: list[RunResult]) -> str:
    """The markdown table, one row per configuration x refresh interval."""
    head = ("| config | refresh | mode | HR@10 | NDCG@10 | cold HR@10 | coverage | Gini "
            "| list age mean / p50 (s) | events/s |")  # fmt: skip
    rows = [head, "|" + " --- |" * 10]
    for r in results:
        m = r.metrics
        rows.append(
            f"| {r.config} | {r.refresh_interval_s:g} s | {r.mode} | {m['hr@10']:.4f} | {m['ndcg@10']:.4f} "
            f"| {m['cold_hr@10']:.4f} | {m['coverage']:.3f} | {m['gini']:.3f} "
            f"| {m['freshness_mean_s']:.1f} / {m['freshness_p50_s']:.1f} | {m['events_per_s']:,.0f} |"
        )
    return "\n".join(rows)


def _rolling(hits: np.ndarray, window: int) -> np.ndarray:
    if len(hits) < window:
        window = max(1, len(hits))
    c = np.concatenate([[0.0], np.cumsum(hits)])
    return (c[window:] - c[:-window]) / window


def plot(results: list[RunResult], out_dir: Path, title: str) -> list[Path]:
    """``replay_hr.png`` (HR@10 over stream time) and ``replay_exposure.png`` (Lorenz curves)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 8), sharex=True)
    for r in results:
        if not len(r.times):
            continue
        when = np.asarray(r.times, dtype="datetime64[s]")
        cum = np.cumsum(r.hits) / np.arange(1, len(r.hits) + 1)
        ax1.plot(when, cum, label=f"{r.label} ({r.mode})")
        window = min(5000, max(1, len(r.hits) // 10))
        roll = _rolling(r.hits, window)
        ax2.plot(when[len(when) - len(roll):], roll, label=r.label, linewidth=0.8)
    ax1.set_ylabel("cumulative HR@10")
    ax1.set_title(f"{title}: HR@10 over stream time")
    ax1.legend(fontsize=8)
    ax1.grid(alpha=0.3)
    ax2.set_ylabel("rolling HR@10")
    ax2.set_title("rolling over a tenth of the evaluated events (at most 5000)", fontsize=9)
    ax2.grid(alpha=0.3)
    ax2.xaxis.set_major_formatter(mdates.ConciseDateFormatter(ax2.xaxis.get_major_locator()))
    fig.tight_layout()
    path = out_dir / "replay_hr.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths.append(path)

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 5))
    for r in results:
        x, y = lorenz(r.exposure)
        ax1.plot(x, y, label=f"{r.label} (Gini {r.metrics['gini']:.3f})")
        counts = np.sort(r.exposure)[::-1]
        counts = counts[counts > 0]
        if len(counts):
            ax2.loglog(np.arange(1, len(counts) + 1), counts, label=r.label)
    ax1.plot([0, 1], [0, 1], "k--", linewidth=0.7, label="equal exposure")
    ax1.set_xlabel("share of catalogue (least exposed first)")
    ax1.set_ylabel("share of top-10 exposure")
    ax1.set_title("Lorenz curve of exposure")
    ax1.legend(fontsize=8)
    ax1.grid(alpha=0.3)
    ax2.set_xlabel("item rank by exposure")
    ax2.set_ylabel("times shown in an evaluated top 10")
    ax2.set_title("exposure distribution")
    ax2.legend(fontsize=8)
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    path = out_dir / "replay_exposure.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths.append(path)
    return paths


def _clean(value):
    """JSON-safe (NaN becomes null)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return _clean(value.item())
    return value
