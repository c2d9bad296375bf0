"""Peer harness: APScheduler 3 (Debian's python3-apscheduler) on the figures asched measures.

usage: python3 apscheduler3.py cron_next|dispatch|lateness [repetitions] [size]

Prints one JSON line per figure with "peer": "apscheduler3", named like asched's figures.
"""
import asyncio
import datetime as dt
import json
import math
import statistics
import sys
import time

import apscheduler
from apscheduler.events import EVENT_JOB_EXECUTED, EVENT_JOB_SUBMITTED
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

try:
    from zoneinfo import ZoneInfo
except ImportError:  # pragma: no cover
    from backports.zoneinfo import ZoneInfo

PEER = "apscheduler3"


def emit(name, unit, values, reps):
    s = sorted(values)
    print(json.dumps({"name": name, "peer": PEER, "unit": unit, "median": s[len(s) // 2], "min": s[0],
                      "max": s[-1], "repetitions": reps, "version": apscheduler.__version__}), flush=True)


def cron_next(reps, calls):
    utc, berlin = ZoneInfo("UTC"), ZoneInfo("Europe/Berlin")
    start = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
    # The expressions of bench/cron_next.cpp, in APScheduler's own fields.
    cases = [
        ("every_5_minutes", lambda: CronTrigger(minute="*/5", timezone=utc)),
        ("9_to_17_weekdays", lambda: CronTrigger(day_of_week="mon-fri", hour="9-17", timezone=utc)),
        ("feb_29_yearly", lambda: CronTrigger(month="2", day="29", timezone=utc)),
        ("0230_daily_berlin_dst", lambda: CronTrigger(hour="2", minute="30", timezone=berlin)),
        ("last_day_of_month", lambda: CronTrigger(day="last", timezone=utc)),
        ("seconds_field", lambda: CronTrigger(second="*/10", timezone=utc)),
        ("crontab_line", lambda: CronTrigger.from_crontab("15 3 * * 1-5", timezone=berlin)),
    ]
    log_sum = 0.0
    for name, make in cases:
        runs = []
        for _ in range(reps):
            trigger = make()
            prev = None
            now = start
            t0 = time.perf_counter_ns()
            for _ in range(calls):
                nxt = trigger.get_next_fire_time(prev, now)
                prev = nxt if nxt is not None else None
            runs.append((time.perf_counter_ns() - t0) / calls)
        emit(f"cron_next_{name}", "ns", runs, reps)
        log_sum += math.log(sorted(runs)[len(runs) // 2])
    print(json.dumps({"name": "cron_next_geomean", "peer": PEER, "unit": "ns",
                      "median": math.exp(log_sum / len(cases)), "repetitions": reps}), flush=True)


async def _noop():
    return 1


def dispatch_once(n):
    """n one-off coroutine jobs due at once; jobs per second from start to the last one."""

    async def main():
        scheduler = AsyncIOScheduler(job_defaults={"misfire_grace_time": None, "coalesce": False},
                                     executors={"default": {"type": "asyncio"}})
        done = asyncio.Event()
        count = 0

        def on_executed(_):
            nonlocal count
            count += 1
            if count == n:
                done.set()

        scheduler.add_listener(on_executed, EVENT_JOB_EXECUTED)
        now = dt.datetime.now(dt.timezone.utc)
        for _ in range(n):
            scheduler.add_job(_noop, "date", run_date=now)
        t0 = time.perf_counter()
        scheduler.start()
        await done.wait()
        elapsed = time.perf_counter() - t0
        scheduler.shutdown(wait=False)
        return n / elapsed

    return asyncio.run(main())


def dispatch(reps, n):
    for size in (n, n * 10):
        runs = [dispatch_once(size) for _ in range(reps)]
        label = f"{size // 1000}k" if size % 1000 == 0 else str(size)
        emit(f"dispatch_coroutine_{label}", "jobs/s", runs, reps)


def lateness(reps, seconds):
    """A 10 ms interval job for `seconds`: submission time minus scheduled time, in us."""

    async def main():
        scheduler = AsyncIOScheduler(job_defaults={"misfire_grace_time": None, "coalesce": False,
                                                   "max_instances": 100})
        late = []

        def on_submitted(event):
            now = dt.datetime.now(dt.timezone.utc)
            for t in event.scheduled_run_times:
                late.append((now - t).total_seconds() * 1e6)

        scheduler.add_listener(on_submitted, EVENT_JOB_SUBMITTED)
        start = dt.datetime.now(dt.timezone.utc) + dt.timedelta(milliseconds=500)
        scheduler.add_job(_noop, IntervalTrigger(seconds=0.01, start_date=start,
                                                 end_date=start + dt.timedelta(seconds=seconds)))
        scheduler.start()
        await asyncio.sleep(seconds + 1.0)
        scheduler.shutdown(wait=False)
        return late

    p50, p99, mx = [], [], []
    for _ in range(reps):
        v = sorted(asyncio.run(main()))
        p50.append(v[len(v) // 2])
        p99.append(v[min(len(v) - 1, int(0.99 * len(v)))])
        mx.append(v[-1])
    emit("lateness_interval_10ms_p50", "us", p50, reps)
    emit("lateness_interval_10ms_p99", "us", p99, reps)
    emit("lateness_interval_10ms_max", "us", mx, reps)


if __name__ == "__main__":
    what = sys.argv[1]
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    if what == "cron_next":
        cron_next(reps, int(sys.argv[3]) if len(sys.argv) > 3 else 20000)
    elif what == "dispatch":
        dispatch(reps, int(sys.argv[3]) if len(sys.argv) > 3 else 10000)
    elif what == "lateness":
        lateness(reps, int(sys.argv[3]) if len(sys.argv) > 3 else 5)
    else:
        sys.exit(f"unknown figure {what}")
