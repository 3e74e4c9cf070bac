"""The benchmark's report: the rounds summed up (medians), the table, the targets and the JSON line."""

from __future__ import annotations

import json
import shlex
import statistics
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

from bench import measure
from bench.harness import HANG_SECONDS, Harness
from bench.isolation import RECOVERY_SCHEDULE, RECOVERY_SECONDS, FailingRun, Isolation

if TYPE_CHECKING:
    from records.trail import Report


def spread(values: Sequence[float], unit: str = "", digits: int = 2) -> str:
    """``median (min-max)`` of a round's values."""
    median = statistics.median(values)
    if len(values) == 1:
        return f"{median:.{digits}f}{unit}"
    return f"{median:.{digits}f}{unit} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def describe(counts: Counter[str], per: int) -> str:
    """``SendMessage 1.00, ReceiveMessage 0.12``: requests per unit, by action."""
    return ", ".join(f"{action.split(' ', 1)[-1]} {count / per:.2f}" for action, count in counts.most_common())


def summarize_rounds(bench: Harness) -> None:
    """The rounds' medians into ``bench.results``, and their rows into ``bench.rows``."""
    from bench.parts import PARTS

    n, rounds = bench.options.messages, len(bench.raw)
    noop, deliveries, off = bench.drains["noop"], bench.drains["deliveries"], bench.drains["features-off"]
    raw_cpu = [found["cpu_ms"] for found in bench.raw]
    bench.results.update(
        raw_post_cpu_ms=statistics.median(raw_cpu),
        noop_task_cpu_ms=statistics.median(d.cpu_ms for d in noop),
        delivery_cpu_ms=statistics.median(d.cpu_ms for d in deliveries),
        delivery_cpu_ms_features_off=statistics.median(d.cpu_ms for d in off),
        noop_tasks_per_s=statistics.median(d.per_second for d in noop),
        deliveries_per_s=statistics.median(d.per_second for d in deliveries),
        worker_rss_mb=max(d.rss_mib for d in deliveries),
    )
    each = f"median of {rounds} (min-max)" if rounds > 1 else "1 round"
    warm = min(bench.options.warm_up, n // 4)
    loaded = f"{n} preloaded, measured from the {warm}th done to the {warm}th left" if warm else f"{n} preloaded"
    wall = statistics.median(found["wall_ms"] for found in bench.raw)
    bench.rows += [
        ("raw POST CPU", spread(raw_cpu, " ms"), f"{bench.options.raw_posts} POSTs, {wall:.2f} ms each; {each}"),
        ("no-op task CPU", spread([d.cpu_ms for d in noop], " ms"), f"{loaded}, bench.noop worker; {each}"),
        ("delivery CPU", spread([d.cpu_ms for d in deliveries], " ms"), f"{loaded}, 10 subscribers; {each}"),
        (
            "same, subscriber features off",
            spread([d.cpu_ms for d in off], " ms"),
            "WEBHOOK_CIRCUIT_BREAKER=0, WEBHOOK_MAX_IN_FLIGHT_PER_SUBSCRIBER=0, SUBSCRIBER_CACHE_SECONDS=86400 "
            f"(no reload); {each}",
        ),
        (
            "features on - off, per round",
            spread(measure.paired([d.cpu_ms for d in deliveries], [d.cpu_ms for d in off]), " ms"),
            "the cost of the cache's reloads (every 5 s), the circuit and in-flight checks; "
            f"the two drains side by side; deliveries of the drains (on) held over the in-flight limit: "
            f"{bench.held_over_limit}",
        ),
        *cache_rows(bench),
        ("no-op drain rate", spread([d.per_second for d in noop], "/s", 1), f"{loaded}; {each}"),
        ("delivery drain rate", spread([d.per_second for d in deliveries], "/s", 1), f"{loaded}; {each}"),
        ("same, features off", spread([d.per_second for d in off], "/s", 1), f"{loaded}; {each}"),
        ("worker RSS", f"{bench.results['worker_rss_mb']:.0f} MiB", f"after {n} deliveries (the largest)"),
    ]
    for kind, drains in (("no-op", noop), ("delivery", deliveries)):
        counted: Counter[str] = sum((d.requests for d in drains), Counter())
        per = sum(counted.values()) / (n * len(drains))
        bench.rows.append((f"SQS per message, {kind} drains", f"{per:.2f}", describe(counted, n * len(drains))))
    if "hanging" in bench.drains:
        hanging = [d.per_second for d in bench.drains["hanging"]]
        closed = [d.per_second for d in bench.drains["hanging-closed"]]
        healthy = [d.per_second for d in bench.drains["healthy"]]
        # each round's drains over that round's healthy drain, then the median: the machine is
        # shared and moto slows down as a run goes on, so drains of one round compare best
        ratios = [rate / reference for rate, reference in zip(hanging, healthy, strict=True)]
        ratio = statistics.median(ratios)
        ratio_closed = statistics.median(rate / reference for rate, reference in zip(closed, healthy, strict=True))
        bench.results["healthy_rate_ratio_with_hanging"] = ratio
        alone = {kind: statistics.median(rates) for kind, rates in bench.sqs_rates.items()}
        moto_alone = alone["hanging"] / alone["healthy"]
        others, tenth = bench.tenth_sizes
        bench.rows += [
            (
                "rate to 9 subscribers, the 10th healthy",
                spread(healthy, "/s", 1),
                f"{others} + {tenth} to the 10th, measured until the {others} are done; {each}",
            ),
            (
                "same, the 10th hanging, its circuit closed",
                f"{spread(closed, '/s', 1)}: x {ratio_closed:.2f}",
                f"the 10th answers after {HANG_SECONDS} s (WEBHOOK_TIMEOUT 10 s), a new one each round: "
                f"the first drain, until its circuit opens; {each}",
            ),
            (
                "same, the 10th hanging, its circuit open",
                f"{spread(hanging, '/s', 1)}: x {ratio:.2f}",
                f"the next drain, a new worker on a new queue, default settings; over each round's healthy drain: "
                f"{', '.join(f'{each_ratio:.2f}' for each_ratio in ratios)} (the median is kept); "
                "POSTs to the 10th meanwhile: "
                f"{', '.join(str(posts) for posts in bench.hanging_posts)} (probes); {each}",
            ),
            (
                "same pattern, SQS alone (no worker)",
                f"{alone['hanging']:.1f}/s over {alone['healthy']:.1f}/s: x {moto_alone:.2f}",
                f"a loop: receive 10, delete them but one in ten kept in flight (or all); {each}",
            ),
        ]
    if "held" in bench.drains:
        held = bench.drains["held"]
        bench.rows.append(
            (
                "a delivery held by an open circuit",
                f"{spread([d.cpu_ms for d in held], ' ms')}, {spread([d.per_second for d in held], '/s', 1)}",
                f"{n} to 1 subscriber whose circuit is open, each recorded held and parked in the database "
                f"(CPU per delivery, rate; a delivery to the 9: {bench.results['delivery_cpu_ms']:.2f} ms); {each}",
            )
        )
    if bench.options.breakdown:
        base = statistics.median(d.cpu_ms for d in noop)
        for kind in PARTS:
            cpu = statistics.median(d.cpu_ms for d in bench.drains[kind])
            bench.rows.append((f"part `{kind}` CPU", f"{cpu:.2f} ms", f"no-op + {cpu - base:.2f} ms; bench.parts"))


def cache_rows(bench: Harness) -> list[tuple[str, str, str]]:
    """The cost of the cache priced in one process (bench.cache), when it was."""
    price = bench.cache
    if price is None:
        return []
    return [
        (
            "the cache's cost, priced",
            f"{price.per_delivery_ms:.3f} ms",
            f"a delivery's checks {price.checks_ms * 1000:.1f} us + its share of a load and a look for parked "
            f"deliveries {price.share_ms * 1000:.1f} us ({price.load_ms:.2f} + {price.look_ms:.2f} ms every "
            f"{price.bound:g} s at {price.rate:.1f} deliveries/s); "
            "bench.cache, in the bench's process, thread CPU",
        )
    ]


def summarize_isolation(bench: Isolation) -> None:
    """The rows of the failing subscribers' runs and of the recovery."""
    if bench.failing_runs is not None:
        off, on = bench.failing_runs
        ratio = bench.results["failing_subscriber_posts_ratio"]
        shape = (
            f"10 subscribers, 1 answering 503 throughout; {off.leads} leads x 10 over {off.seconds:.0f} s "
            f"(off), {on.leads} over {on.seconds:.0f} s (on), each attempted once (first retry at 10 min)"
        )
        bench.rows += [
            ("POSTs to the failing subscriber, breaker off", str(off.posts), shape),
            ("same, breaker on (defaults)", f"{on.posts}: x {ratio:.3f}", describe_circuit(on)),
        ]
    if bench.recovered is not None:
        found = bench.recovered
        last = "never" if found.last_after is None else f"the last {found.last_after:.0f} s after it came back"
        bench.rows.append(
            (
                "a subscriber down, then back",
                f"{found.delivered}/{found.deliveries} delivered",
                f"503 for the first {found.down:.0f} s of {RECOVERY_SECONDS} s of leads (1 of 10 subscribers), "
                f"then 200; retry schedule {RECOVERY_SCHEDULE}; {last}; "
                + "; ".join(
                    f"{event.kind.split('.')[-1]} at {(event.at - found.started_at).total_seconds():.0f} s"
                    for event in found.events
                ),
            )
        )


def describe_circuit(run: FailingRun) -> str:
    opened = [event for event in run.events if event.kind == "subscriber.circuit_opened"]
    if not opened:
        return "its circuit never opened"
    return (
        f"its circuit opened after {run.posts_before_opening} POSTs, then {len(opened) - 1} failed probe(s) "
        f"in {run.seconds:.0f} s"
    )


def print_results(bench: Harness, book: measure.Accounting, strays: set[str], trail: Report, seconds: float) -> None:
    """The table of every measure, the accounting and the audit trail's state, the targets, the JSON line last."""
    print()
    print(f"worker: `{shlex.join(bench.command[1:])}` ({seconds:.0f} s)")
    if bench.options.quick:
        print(measure.table(bench.rows))
        return
    line = measure.summary({**bench.results, **bench.flags}, book)
    if strays or not trail.ok:
        line["accounted"] = False
    verdict = "yes" if line["accounted"] else "NO: this run is VOID"
    detail = (
        f"dispatched {book.dispatched} = delivered {book.delivered} + failed {book.failed} + held {book.held}"
        " (failed: a retry scheduled; held: by an open circuit or the in-flight limit)"
    )
    if strays:
        detail += f"; {len(strays)} long waits were attempted early"
    rows = [
        *bench.rows,
        ("accounted", verdict, detail),
        ("audit trail", "intact" if trail.ok else "BROKEN", f"{trail.records} records, {trail.chains} chains"),
    ]
    print(measure.table(rows))
    print()
    targets = measure.targets(line)
    print(measure.table([(t.name, "met" if t.met else "NOT MET", t.detail) for t in targets], ("target", "", "")))
    if not line["accounted"]:
        print(f"\nthis run is VOID: {detail}" + ("" if trail.ok else f"; {trail.headline()}"))
    print()
    print(json.dumps(line))
