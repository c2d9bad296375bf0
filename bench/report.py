"""Turns the raw JSON lines of one benchmark run into bench/results/latest.{jsonl,md,png}.

usage: python3 report.py RAW.jsonl OUT_DIR

RAW holds the lines the bench programs and peer harnesses print: asched's figures have no
"peer" member, a peer's figure names its peer. Every comparison is a ratio within this run.
"""
import json
import os
import platform
import subprocess
import sys
import time

# Figures where a smaller value is better; the others (rates) are better when larger.
SMALLER_IS_BETTER = {"ns", "us", "bytes"}

# name of an asched figure -> (baseline figure, baseline label) measured by asched itself.
BASELINES = {
    "lateness_interval_10ms_p50": ("lateness_raw_asio_timer_10ms_p50", "raw Asio steady_timer"),
    "lateness_interval_10ms_p99": ("lateness_raw_asio_timer_10ms_p99", "raw Asio steady_timer"),
    "lateness_10k_due_in_1s_p50": ("lateness_raw_asio_timer_10ms_p50", "raw Asio steady_timer"),
    "sqlite_store_jobs": ("sqlite_raw_claim", "raw SQLite claim"),
    "sqlite_store_acquire_release": ("sqlite_raw_claim_batched", "raw SQLite claim, 100 per transaction"),
    "postgres_store_jobs_1": ("postgres_raw_claim_1", "raw SKIP LOCKED claim, 1 client"),
    "postgres_store_jobs_2": ("postgres_raw_claim_2", "raw SKIP LOCKED claim, 2 clients"),
    "mariadb_store_jobs_1": ("mariadb_raw_claim_1", "raw MariaDB SKIP LOCKED claim, 1 client"),
    "mariadb_store_jobs_2": ("mariadb_raw_claim_2", "raw MariaDB SKIP LOCKED claim, 2 clients"),
}

for _n in ("10k", "100k", "1M"):
    BASELINES[f"dispatch_threadpool_{_n}"] = (f"dispatch_raw_threadpool_{_n}", "raw asio::thread_pool post")

PEERS = ["croner", "cron-parser", "apscheduler3"]


def advantage(unit, ours, theirs):
    """How many times better asched is (above 1: asched wins)."""
    if not ours or not theirs:
        return None
    return theirs / ours if unit in SMALLER_IS_BETTER else ours / theirs


def main(raw_path, out_dir):
    ours, peers = {}, {}
    with open(raw_path) as f:
        for line in f:
            line = line.strip()
            if not line.startswith("{"):
                continue
            rec = json.loads(line)
            if rec.get("peer") in PEERS:
                peers.setdefault(rec["name"], {})[rec["peer"]] = rec
            else:
                ours[rec["name"]] = rec

    rows = []
    for name, rec in ours.items():
        out = {k: rec.get(k) for k in ("name", "unit", "median", "min", "max", "repetitions")}
        out["peers"] = {p: r["median"] for p, r in peers.get(name, {}).items()}
        primary = next((p for p in PEERS if p in out["peers"]), None)
        if name in BASELINES and BASELINES[name][0] in ours:
            base, label = BASELINES[name]
            out["peer"], out["peer_median"] = label, ours[base]["median"]
            # Baselines are reported as ours / baseline, the way the targets are written.
            out["ratio"] = rec["median"] / ours[base]["median"] if ours[base]["median"] else None
        elif primary:
            out["peer"], out["peer_median"] = primary, out["peers"][primary]
            out["ratio"] = advantage(rec["unit"], rec["median"], out["peer_median"])
        else:
            out["peer"], out["peer_median"], out["ratio"] = None, None, None
        rows.append(out)

    def med(name):
        return ours.get(name, {}).get("median")

    def peer(name, p):
        return peers.get(name, {}).get(p, {}).get("median")

    cron_worst = max((r["median"] for n, r in ours.items()
                      if n.startswith("cron_next_") and n != "cron_next_geomean"), default=None)
    targets = []

    def target(what, value, goal, ok):
        targets.append({"target": what, "value": value, "goal": goal,
                        "met": None if value is None else bool(ok(value))})

    target("cron_next geometric mean: times faster than croner",
           advantage("ns", med("cron_next_geomean"), peer("cron_next_geomean", "croner")), ">= 12", lambda v: v >= 12)
    target("cron_next worst expression / own geometric mean",
           cron_worst / med("cron_next_geomean") if cron_worst and med("cron_next_geomean") else None, "<= 5",
           lambda v: v <= 5)
    # The dispatch sizes are N, 10 N and 100 N (10k, 100k and 1M in a full run).
    def size(name):
        label = name.rsplit("_", 1)[1]
        scale = {"k": 1000, "M": 1000000}.get(label[-1], 1)
        return int(label[:-1] if scale > 1 else label) * scale

    def sizes_of(prefix):
        return sorted((n for n in ours if n.startswith(prefix)), key=size)

    sizes = sizes_of("dispatch_coroutine_")
    for name in sizes:
        if peer(name, "croner") is not None:
            target(f"{name}: times croner's jobs/s", advantage("jobs/s", med(name), peer(name, "croner")),
                   ">= 10", lambda v: v >= 10)
    for kind, raw, goal in (("coroutine", "timer", 0.3), ("threadpool", "threadpool", 0.5)):
        for name in sizes_of(f"dispatch_{kind}_"):
            base = f"dispatch_raw_{raw}_{name.rsplit('_', 1)[1]}"
            target(f"{name} / raw {raw} baseline", med(name) / med(base) if med(base) else None,
                   f">= {goal}", lambda v, g=goal: v >= g)
    if len(sizes) >= 2:
        target(f"dispatch flat: {sizes[-1]} rate / {sizes[0]} rate",
               med(sizes[-1]) / med(sizes[0]) if med(sizes[0]) else None, ">= 0.8", lambda v: v >= 0.8)
    for name in sizes_of("dispatch_rss_per_queued_job_") + sizes_of("dispatch_heap_per_queued_job_"):
        target(name, med(name), "reported", lambda v: True)
    target("lateness p50 / raw Asio timer p50",
           med("lateness_interval_10ms_p50") / med("lateness_raw_asio_timer_10ms_p50")
           if med("lateness_raw_asio_timer_10ms_p50") else None, "<= 3", lambda v: v <= 3)
    target("lateness p99 (us)", med("lateness_interval_10ms_p99"), "< 1000", lambda v: v < 1000)
    target("scale: bytes per schedule", med("scale_bytes_per_schedule"), "< 1024", lambda v: v < 1024)
    target("SQLite store jobs/s / raw claim rate", med("sqlite_store_jobs") / med("sqlite_raw_claim")
           if med("sqlite_raw_claim") else None, ">= 0.5", lambda v: v >= 0.5)
    target("SQLite store acquire+run+release jobs/s / raw batched claim (100 per transaction)",
           med("sqlite_store_acquire_release") / med("sqlite_raw_claim_batched")
           if med("sqlite_raw_claim_batched") else None, ">= 0.5", lambda v: v >= 0.5)
    for clients in (1, 2):
        ours_pg, raw_pg = med(f"postgres_store_jobs_{clients}"), med(f"postgres_raw_claim_{clients}")
        target(f"PostgreSQL store jobs/s / raw single-row claim, {clients} process(es)",
               ours_pg / raw_pg if ours_pg and raw_pg else None, "> 1", lambda v: v > 1)
        batched = med(f"postgres_raw_claim_batched_{clients}")
        target(f"PostgreSQL store jobs/s / raw batched claim (100 per statement), {clients} process(es)",
               ours_pg / batched if ours_pg and batched else None, ">= 0.5", lambda v: v >= 0.5)
        ours_m, raw_m = med(f"mariadb_store_jobs_{clients}"), med(f"mariadb_raw_claim_{clients}")
        target(f"MariaDB store jobs/s / raw single-row claim, {clients} process(es)",
               ours_m / raw_m if ours_m and raw_m else None, "> 1", lambda v: v > 1)
        batched_m = med(f"mariadb_raw_claim_batched_{clients}")
        target(f"MariaDB store jobs/s / raw batched claim (100 per transaction), {clients} process(es)",
               ours_m / batched_m if ours_m and batched_m else None, ">= 0.5", lambda v: v >= 0.5)

    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "latest.jsonl"), "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
        for t in targets:
            f.write(json.dumps({"name": "target", **t}) + "\n")

    def fmt(v, unit=""):
        if v is None:
            return "–"
        if abs(v) >= 100:
            return f"{v:,.0f}"
        return f"{v:.2f}"

    versions = {}
    for p in peers.values():
        for name, r in p.items():
            if "version" in r:
                versions[name] = r["version"]
    lines = [
        "# asched benchmark results",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M %Z')} on {platform.node()} ({os.cpu_count()} cores, "
        f"{platform.platform()}). Every figure is the median over repetitions; min and max beside it. "
        "Ratios compare figures measured in this same run: for a peer, how many times better asched is "
        "(above 1: asched wins); for a raw baseline, asched / baseline.",
        "",
        "![asched against its peers](chart.png)",
        "",
        "## Targets",
        "",
        "| target | value | goal | |",
        "|---|---|---|---|",
    ]
    for t in targets:
        verdict = "not measured" if t["met"] is None else ("met" if t["met"] else "**MISSED**")
        lines.append(f"| {t['target']} | {fmt(t['value'])} | {t['goal']} | {verdict} |")
    lines += ["", "## Figures", "",
              "| figure | unit | asched median | min | max | croner | cron-parser | APScheduler 3 | baseline | ratio |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        base = f"{r['peer']}: {fmt(r['peer_median'])}" if r["name"] in BASELINES and r["peer"] else ""
        lines.append(
            f"| {r['name']} | {r['unit']} | {fmt(r['median'])} | {fmt(r['min'])} | {fmt(r['max'])} | "
            f"{fmt(r['peers'].get('croner'))} | {fmt(r['peers'].get('cron-parser'))} | "
            f"{fmt(r['peers'].get('apscheduler3'))} | {base} | {fmt(r['ratio'])} |")
    if versions:
        lines += ["", "Peer versions: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())) + "."]
    with open(os.path.join(out_dir, "latest.md"), "w") as f:
        f.write("\n".join(lines) + "\n")

    chart(rows, out_dir)


def chart(rows, out_dir):
    """Bars: how many times better asched is than each peer, per figure (log scale)."""
    figures = [r for r in rows if any(p in r["peers"] for p in PEERS)]
    if not figures:
        return
    data = os.path.join(out_dir, "chart.dat")
    with open(data, "w") as f:
        f.write("figure " + " ".join(PEERS) + "\n")
        for r in figures:
            vals = [advantage(r["unit"], r["median"], r["peers"].get(p)) for p in PEERS]
            f.write(r["name"].replace("_", "-") + " " + " ".join("NaN" if v is None else f"{v:.4f}" for v in vals) + "\n")
    script = f"""
set terminal pngcairo size 1400,700 font ',10'
set output '{os.path.join(out_dir, "chart.png")}'
set title 'asched against its peers: times better (above 1 asched wins; log scale), one run'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set logscale y
set yrange [0.1:*]
set grid ytics
set xtics rotate by -30 font ',9'
set bmargin 9
set lmargin 10
set rmargin 16
set key top left
set arrow from graph 0, first 1 to graph 1, first 1 nohead dashtype 2
plot '{data}' using 2:xtic(1) title 'croner', '' using 3 title 'cron-parser', '' using 4 title 'APScheduler 3'
"""
    try:
        subprocess.run(["gnuplot"], input=script, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"report: no chart ({e})", file=sys.stderr)
    finally:
        os.remove(data)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
