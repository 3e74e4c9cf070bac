"""make bench: what a delivery costs in CPU, time and SQS requests, next to Celery's own cost.

    make bench                                        # the Procfile's worker
    .venv/bin/python -m bench.run --pool threads --concurrency 32 --rounds 5 --breakdown

Everything runs here, on loopback: moto's server (SQS, with its request recorder), a MariaDB
database at 127.0.0.1:3306 (created and dropped), loopback receivers (local/recorder.py)
and the Procfile's worker command (for the no-op baseline, the same command on ``bench.noop``),
on the production defaults of every setting but WEBHOOK_ALLOWED_NETWORKS (loopback receivers)
and WORKER_EVENTS (off: task events are priced apart, by local.count_requests).
Every number comes from the same run:

1. rounds (``--rounds``, 3): in each, a raw POST loop (a plain ``requests.Session`` to the
   receiver, in its own process: the floor), then N no-op tasks (the same messages as
   deliveries), N deliveries (10 subscribers answering 200), and N deliveries again with the
   subscriber features off (the circuit breaker, the in-flight limit, the cache's reloads), each
   preloaded then drained by a fresh worker (the order alternates between rounds). A worker's
   CPU is utime + stime of it and its children (/proc), from the moment its log reports
   ``--warm-up`` tasks done (64: its threads and connections are open) until 64 are left (the
   tasks under way at both ends balance); rates over the same window. A delivery is done when
   its attempt is recorded (a held one is not). The medians are kept (the machine is
   shared: a round can be slowed down). The two drains, features on and off, differ by
   ±0.5 ms a delivery from one round to the next: the cost of the cache is also priced in
   this process (bench.cache: a load's CPU spread over the deliveries made meanwhile at the
   drains' rate, and a delivery's lookups and checks);
2. hanging, in each round too: N deliveries to 9 subscribers and N/9 more to a 10th, drained:
   the 10th answering at once; then answering after 15 s (WEBHOOK_TIMEOUT is 10 s), a new one
   each round, twice: while its circuit trips (until it is open), then, on a new worker and a
   new queue, with its circuit open. The rate to the 9 (until their N are done) with the 10th
   hanging, over the rate with the 10th healthy in the same round (the median of the rounds'
   ratios). The same pattern without a worker (receive 10, delete
   them but one in ten kept in flight) gives moto's own ratio: its receive slows down with the
   messages in flight. And what a hold costs: N deliveries to a subscriber whose circuit is
   open, each recorded held and parked in the database;
3. dispatch: the SQS requests of ``producer.dispatch`` of one lead matching 10 subscribers (a
   warm producer), and of ``webhooks dispatch`` (a new process), counted by moto's recorder;
4. per delivery: a running worker, idle, then M leads dispatched (one subscriber, first-try
   successes): every request counted from the dispatch until the last message is deleted;
5. per hop: K messages due in 2 hours (beyond SQS_MAX_DELAY) reach that worker, which puts
   each back for SQS_MAX_DELAY: every request counted, divided by K (a first K warm the
   worker's publishing connections up, and are shown apart);
6. isolation (bench.isolation): leads arriving at ``--leads-per-second`` to 10 subscribers, one
   answering 503, for ``--failing-seconds``, with the breaker off then on: the POSTs it
   received, on over off; then one subscriber down for the first 20 s of 40 s of leads and
   back after: are all its deliveries delivered?

With ``--breakdown``, each round also drains tasks doing one part of a delivery (bench.parts).
The run is accounted when every delivery dispatched is in the audit as delivered, failed (the
hanging ones: timeout, retry scheduled) or held (parked while a circuit is open, or back in
SQS over the in-flight limit); otherwise it is void, and says so. The last line printed is one JSON
object (bench.measure.KEYS).

The parts: bench.harness (environment, workers, measured drains), bench.scenarios (what is
measured), bench.report (medians, table, targets, JSON); this module runs them.
"""

from __future__ import annotations

import argparse
import functools
import os
import shlex
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench import measure, report
from bench.harness import DB, configure_environment
from bench.scenarios import Bench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=300, help="messages per drain (no-op, deliveries, hanging)")
    parser.add_argument("--rounds", type=int, default=3, help="raw POST, no-op and delivery drains: medians of these")
    parser.add_argument("--count", type=int, default=100, help="leads dispatched to count requests per delivery")
    parser.add_argument("--hops", type=int, default=20, help="long waits to count requests per hop")
    parser.add_argument("--raw-posts", type=int, default=2000)
    parser.add_argument(
        "--warm-up", type=int, default=64, help="tasks of each drain done before its measure starts (0: from ready)"
    )
    parser.add_argument("--pool", help="instead of the Procfile's (to compare)")
    parser.add_argument("--concurrency", type=int, help="instead of the Procfile's (to compare)")
    parser.add_argument("--breakdown", action="store_true", help="also price parts of a delivery (bench.parts)")
    parser.add_argument("--profile", metavar="DIR", help="py-spy a delivery drain into DIR (pip install py-spy)")
    parser.add_argument(
        "--leads-per-second", type=float, default=3.0, help="pace of the isolation runs' leads (each to 10 subscribers)"
    )
    parser.add_argument(
        "--failing-seconds", type=float, default=90.0, help="leads arriving in each failing-subscriber run"
    )
    parser.add_argument("--quick", action="store_true", help="the rounds only, no JSON")
    options = parser.parse_args()

    from local.count_requests import Moto
    from local.services import mysql

    logs = Path(tempfile.mkdtemp(prefix="bench-"))
    moto = Moto(logs)
    configure_environment(moto.port, logs / "spool")
    mysql(f"CREATE DATABASE {DB} CHARACTER SET utf8mb4")
    started = time.monotonic()
    try:
        from records import migrations

        migrations.upgrade()
        bench = Bench(options, logs, moto)
        print(f"bench: worker `{shlex.join(bench.command[1:])}`; logs in {logs}", flush=True)
        steps: list[tuple[str, Callable[[], None]]] = [
            (f"round {number + 1}", functools.partial(bench.round, number)) for number in range(options.rounds)
        ]
        steps.append(("the cache priced", bench.cache_price))
        steps.append(("rounds summed up", functools.partial(report.summarize_rounds, bench)))
        if not options.quick:
            steps += [
                ("dispatch counted", bench.dispatch_counts),
                ("per delivery and per hop counted", bench.per_delivery_and_hop),
                ("failing subscribers, breaker off then on", bench.failing),
                ("a subscriber down, then back", bench.recovery),
                ("isolation summed up", functools.partial(report.summarize_isolation, bench)),
            ]
        for name, step in steps:
            step()
            print(f"  {time.monotonic() - started:5.0f} s: {name}", flush=True)
        attempts = bench.audit()
        book = measure.accounting(bench.dispatched, attempts)
        strays = {delivery_id for delivery_id, _ in attempts} & bench.hops
        from records import trail

        trail_report = trail.verify(os.environ["DATABASE_URL"])
    finally:
        from records import database

        database.engine(os.environ["DATABASE_URL"]).dispose()
        mysql(f"DROP DATABASE IF EXISTS {DB}")
        moto.stop()

    report.print_results(bench, book, strays, trail_report, time.monotonic() - started)


if __name__ == "__main__":
    main()
