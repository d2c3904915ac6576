"""A controller outage as an operator's Prometheus sees it: the main series of a sync worker's metrics
endpoint, scraped every ``--every`` s during a real fault run, written as CSV and plotted as SVG.

One ``converge sync run --metrics-port`` process (MariaDB or SQLite store, the fabric controller as its own
process); a writer records ``--rate`` changes/s throughout (a steady cloud); the controller is stopped at
``--down-at`` s for ``--down-for`` s and started again; the writer stops at ``--write-for`` s and the run
ends when the journal is drained. Printed: the backlog's peak (depth, oldest change), the time from the
controller's return to an empty journal, and commit → acknowledgement latency quantiles before and after
the outage (from the histogram's buckets: upper bounds).

    .venv/bin/python benchmarks/metrics_outage.py [--store mariadb] [--rate 40] [--down-at 20] [--down-for 40]
        [--write-for 90] [--svg docs/img/metrics-outage.svg] [--csv FILE]
"""

from __future__ import annotations

import argparse
import csv
import socket
import sys
import threading
import time
from pathlib import Path

import httpx

sys.path.append(str(Path(__file__).parent))

from common import machine, report, rig  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from converge.bench.workload import Workload  # noqa: E402
from converge.store.intent import record_many  # noqa: E402

SERIES = ("journal_depth", "oldest_age", "controller_up", "applied", "batches_failed", "leases_held")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(url: str) -> tuple[dict[str, float], dict[float, float]]:
    """The series this report plots, and the latency histogram's cumulative buckets (le -> count)."""
    text = httpx.get(url, timeout=5.0).text
    row: dict[str, float] = {}
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "converge_journal_depth":
                row["journal_depth"] = s.value
            elif s.name == "converge_journal_oldest_age_seconds":
                row["oldest_age"] = s.value
            elif s.name == "converge_controller_up":
                row["controller_up"] = s.value
            elif s.name == "converge_operations_applied_total":
                row["applied"] = s.value
            elif s.name == "converge_batches_total" and s.labels.get("outcome") == "failed":
                row["batches_failed"] = s.value
            elif s.name == "converge_leases_held":
                row["leases_held"] = s.value
            elif s.name == "converge_change_applied_seconds_bucket":
                buckets[float(s.labels["le"])] = s.value
    return row, buckets


def quantile(before: dict[float, float], after: dict[float, float], q: float) -> float | None:
    """The ``q`` quantile's bucket upper bound among observations between two scrapes."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1] if counts else 0.0
    if total <= 0:
        return None
    for bound, count in zip(bounds, counts, strict=True):
        if count >= q * total:
            return bound
    return bounds[-1]


def write_svg(path: Path, rows: list[dict[str, float]], marks: dict[str, float]) -> None:
    """Four stacked panels sharing the time axis; the outage shaded. Plain SVG: no plotting library."""
    panels = [("changes waiting (journal depth)", "journal_depth", "#1f77b4"),
              ("oldest pending change (s)", "oldest_age", "#d62728"),
              ("operations applied /s", "applied_rate", "#2ca02c"),
              ("controller up (1) / down (0)", "controller_up", "#9467bd")]
    width, panel_h, left, top, gap = 760, 120, 70, 30, 40
    height = top + len(panels) * (panel_h + gap) + 20
    t_max = max(r["t"] for r in rows) or 1.0
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{left}" y="18" font-size="13">Converge sync worker metrics through a controller outage '
           f'(scraped every {marks["every"]:g} s)</text>']
    plot_w = width - left - 20

    def x(t: float) -> float:
        return left + plot_w * t / t_max

    for i, (title, key, colour) in enumerate(panels):
        y0 = top + i * (panel_h + gap) + 10
        values = [r.get(key, 0.0) for r in rows]
        v_max = max(max(values), 1.0)
        out.append(f'<rect x="{x(marks["down"]):.1f}" y="{y0}" width="{x(marks["up"]) - x(marks["down"]):.1f}" '
                   f'height="{panel_h}" fill="#f2dede"/>')
        out.append(f'<line x1="{left}" y1="{y0 + panel_h}" x2="{left + plot_w}" y2="{y0 + panel_h}" stroke="#888"/>')
        out.append(f'<line x1="{left}" y1="{y0}" x2="{left}" y2="{y0 + panel_h}" stroke="#888"/>')
        out.append(f'<text x="{left + 4}" y="{y0 - 3}">{title}</text>')
        out.append(f'<text x="{left - 4}" y="{y0 + 4}" text-anchor="end">{v_max:.0f}</text>')
        out.append(f'<text x="{left - 4}" y="{y0 + panel_h}" text-anchor="end">0</text>')
        points = " ".join(f"{x(r['t']):.1f},{y0 + panel_h - panel_h * v / v_max:.1f}"
                          for r, v in zip(rows, values, strict=True))
        out.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="1.5"/>')
    axis_y = top + len(panels) * (panel_h + gap) - gap + 25
    for t in range(0, int(t_max) + 1, 10):
        out.append(f'<text x="{x(t):.1f}" y="{axis_y}" text-anchor="middle">{t} s</text>')
    out.append(f'<text x="{x(marks["down"]) + 3:.1f}" y="{top + 22}" fill="#a94442">controller stopped</text>')
    out.append("</svg>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", choices=["sqlite", "mariadb"], default="mariadb")
    ap.add_argument("--roots", type=int, default=50)
    ap.add_argument("--rate", type=float, default=40.0, help="changes recorded per second")
    ap.add_argument("--down-at", type=float, default=20.0)
    ap.add_argument("--down-for", type=float, default=40.0)
    ap.add_argument("--write-for", type=float, default=90.0)
    ap.add_argument("--every", type=float, default=1.0, help="scrape interval (s)")
    ap.add_argument("--svg", type=Path, default=Path("docs/img/metrics-outage.svg"))
    ap.add_argument("--csv", type=Path, default=None)
    args = ap.parse_args()

    with rig(args.store) as r:
        assert r.fabric is not None
        port = free_port()
        [worker] = r.sync_workers(1, "--metrics-port", str(port), "--log-level", "INFO")
        url = f"http://127.0.0.1:{port}/metrics"
        deadline = time.monotonic() + 30
        while True:
            try:
                scrape(url)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        workload = Workload(args.roots, seed=7)
        changes = workload.changes(10**9)
        stop_writing = threading.Event()
        recorded = 0

        def write() -> None:
            nonlocal recorded
            start = time.monotonic()
            while not stop_writing.is_set():
                due = int((time.monotonic() - start) * args.rate) - recorded
                if due > 0:
                    with r.engine.begin() as conn:
                        record_many(conn, [next(changes) for _ in range(due)])
                    recorded += due
                time.sleep(0.05)

        writer = threading.Thread(target=write, daemon=True)
        rows: list[dict[str, float]] = []
        hist: list[tuple[float, dict[float, float]]] = []
        t0 = time.monotonic()
        writer.start()
        down = up = None
        try:
            while True:
                t = time.monotonic() - t0
                if down is None and t >= args.down_at:
                    r.fabric.stop()
                    down = t
                if down is not None and up is None and t >= args.down_at + args.down_for:
                    r.fabric.start()
                    up = time.monotonic() - t0
                if t >= args.write_for:
                    stop_writing.set()
                row, buckets = scrape(url)
                row["t"] = t
                rows.append(row)
                hist.append((t, buckets))
                if stop_writing.is_set() and up is not None and row.get("journal_depth", 1) == 0:
                    break
                if t > args.write_for + 300:
                    print("gave up: the journal did not drain within 300 s of the writer stopping")
                    break
                time.sleep(max(0.0, args.every - (time.monotonic() - t0 - t)))
        finally:
            stop_writing.set()
            writer.join(5)
            worker.stop()
        assert down is not None and up is not None
        for prev, cur in zip(rows, rows[1:], strict=False):
            cur["applied_rate"] = (cur["applied"] - prev["applied"]) / max(1e-6, cur["t"] - prev["t"])
        rows[0]["applied_rate"] = 0.0
        drained = next((row["t"] for row in rows if row["t"] > up and row["journal_depth"] == 0), None)

        def between(a: float, b: float, q: float) -> float | None:
            first = next((h for t, h in hist if t >= a), {})
            last = next((h for t, h in reversed(hist) if t <= b), {})
            return quantile(first, last, q)

        write_svg(args.svg, rows, {"down": down, "up": up, "every": args.every})
        if args.csv:
            with open(args.csv, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=["t", *SERIES, "applied_rate"], extrasaction="ignore")
                w.writeheader()
                w.writerows(rows)
        report("metrics through a controller outage", {
            "machine": machine(), "store": args.store, "roots": args.roots, "rate (changes/s)": args.rate,
            "changes recorded": recorded, "scrapes": len(rows),
            "controller down (s)": f"{down:.1f} .. {up:.1f}",
            "peak journal depth": max(row["journal_depth"] for row in rows),
            "peak oldest pending (s)": round(max(row["oldest_age"] for row in rows), 1),
            "controller_up while down": sorted({row["controller_up"] for row in rows if down + 10 < row["t"] < up}),
            "batches failed (total)": rows[-1].get("batches_failed"),
            "drained after the controller's return (s)": None if drained is None else round(drained - up, 1),
            "latency p50/p99 before the outage (s, bucket bound)": (between(0, down, 0.5), between(0, down, 0.99)),
            "latency p50/p99 from the return to the end (s)": (between(up, rows[-1]["t"], 0.5),
                                                               between(up, rows[-1]["t"], 0.99)),
            "svg": str(args.svg),
        })


if __name__ == "__main__":
    main()
