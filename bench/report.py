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
    noop, deliveries = bench.drains["noop"], bench.drains["deliveries"]
    raw_cpu = [found["cpu_ms"] for found in bench.raw]
    bench.results.update(
        raw_post_cpu_ms=statistics.median(raw_cpu),
        noop_task_cpu_ms=statistics.median(d.cpu_ms for d in noop),
        delivery_cpu_ms=statistics.median(d.cpu_ms for d in deliveries),
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
        ("no-op drain rate", spread([d.per_second for d in noop], "/s", 1), f"{loaded}; {each}"),
        ("delivery drain rate", spread([d.per_second for d in deliveries], "/s", 1), f"{loaded}; {each}"),
        ("worker RSS", f"{bench.results['worker_rss_mb']:.0f} MiB", f"after {n} deliveries (the largest)"),
    ]
    for kind, drains in (("no-op", noop), ("delivery", deliveries)):
        counted: Counter[str] = sum((d.requests for d in drains), Counter())
        per = sum(counted.values()) / (n * len(drains))
        bench.rows.append((f"SQS per message, {kind} drains", f"{per:.2f}", describe(counted, n * len(drains))))
    if "hanging" in bench.drains:
        hanging = [d.per_second for d in bench.drains["hanging"]]
        healthy = [d.per_second for d in bench.drains["healthy"]]
        ratio = statistics.median(hanging) / statistics.median(healthy)
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
                "same, the 10th hanging",
                f"{spread(hanging, '/s', 1)}: x {ratio:.2f}",
                f"the 10th answers after {HANG_SECONDS} s (WEBHOOK_TIMEOUT 10 s); {each}",
            ),
            (
                "same pattern, SQS alone (no worker)",
                f"{alone['hanging']:.1f}/s over {alone['healthy']:.1f}/s: x {moto_alone:.2f}",
                f"a loop: receive 10, delete them but one in ten kept in flight (or all); {each}",
            ),
        ]
    if bench.options.breakdown:
        base = statistics.median(d.cpu_ms for d in noop)
        for kind in PARTS:
            cpu = statistics.median(d.cpu_ms for d in bench.drains[kind])
            bench.rows.append((f"part `{kind}` CPU", f"{cpu:.2f} ms", f"no-op + {cpu - base:.2f} ms; bench.parts"))


def print_results(bench: Harness, book: measure.Accounting, strays: set[str], trail: Report, seconds: float) -> None:
    """The table of every measure, the accounting and the audit trail's state, the targets, the JSON line last."""
    print()
    print(f"worker: `{shlex.join(bench.command[1:])}` ({seconds:.0f} s)")
    if bench.options.quick:
        print(measure.table(bench.rows))
        return
    line = measure.summary(bench.results, book)
    if strays or not trail.ok:
        line["accounted"] = False
    verdict = "yes" if line["accounted"] else "NO: this run is VOID"
    detail = f"dispatched {book.dispatched} = delivered {book.delivered} + failed {book.failed}"
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
