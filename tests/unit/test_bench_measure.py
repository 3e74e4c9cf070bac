"""The benchmark's pure helpers (bench/measure.py): /proc parsing, counting, the JSON summary."""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from pathlib import Path

import pytest

from bench import measure

# proc(5): pid (comm) state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt
#          utime stime cutime cstime ...
STAT = "4242 (celery: worker (a) x) S 17 4242 4242 0 -1 4194560 100 0 0 0 {u} {s} {cu} {cs} 20 0 9 0 123 456 789"


def a_stat(pid: int, ppid: int, u: int = 0, s: int = 0, cu: int = 0, cs: int = 0, comm: str = "python") -> str:
    return f"{pid} ({comm}) S {ppid} 1 1 0 -1 0 0 0 0 0 {u} {s} {cu} {cs} 20 0 1 0 1 1 1"


def test_a_stat_line_with_spaces_and_parentheses_in_the_command_is_parsed() -> None:
    stat = measure.parse_stat(STAT.format(u=150, s=30, cu=7, cs=3))
    assert (stat.pid, stat.ppid, stat.utime, stat.stime, stat.cutime, stat.cstime) == (4242, 17, 150, 30, 7, 3)
    assert stat.ticks == 190


def test_a_tree_is_the_root_and_every_descendant_only() -> None:
    stats = [
        measure.parse_stat(a_stat(10, 1)),
        measure.parse_stat(a_stat(11, 10)),
        measure.parse_stat(a_stat(12, 11)),
        measure.parse_stat(a_stat(13, 1)),  # a sibling of the root: not in its tree
    ]
    assert {stat.pid for stat in measure.tree(10, stats)} == {10, 11, 12}
    assert measure.tree(99, stats) == []


def test_the_cpu_of_a_tree_counts_live_children_and_reaped_ones(tmp_path: Path) -> None:
    for pid, line in {
        "10": a_stat(10, 1, u=100, s=20, cu=5, cs=5),  # 5 + 5: children it reaped
        "11": a_stat(11, 10, u=30, s=10),
        "13": a_stat(13, 1, u=1000),
    }.items():
        (tmp_path / pid).mkdir()
        (tmp_path / pid / "stat").write_text(line)
    (tmp_path / "self").mkdir()  # not a process directory
    assert measure.tree_cpu_seconds(10, tmp_path) == pytest.approx(170 / measure.CLOCK_TICKS)


def test_the_cpu_of_this_process_grows_with_its_threads_work() -> None:
    before = measure.tree_cpu_seconds(os.getpid())

    def spin() -> None:
        deadline = time.process_time() + 0.3
        while time.process_time() < deadline:
            pass

    worker = threading.Thread(target=spin)
    worker.start()
    worker.join()
    assert measure.tree_cpu_seconds(os.getpid()) - before >= 0.2


def test_the_resident_memory_is_read_from_status() -> None:
    assert measure.parse_rss_kib("Name:\tpython\nVmRSS:\t  126000 kB\nThreads:\t9\n") == 126000
    assert measure.parse_rss_kib("Name:\tzombie\nState:\tZ\n") == 0
    assert measure.tree_rss_mib(os.getpid()) > 1


def recorded(action: str, body: dict[str, object] | None = None, encoded: bool = False) -> str:
    text = json.dumps(body or {})
    return json.dumps(
        {
            "headers": {"X-Amz-Target": f"AmazonSQS.{action}"},
            "body": base64.b64encode(text.encode()).decode() if encoded else text,
            "body_encoded": encoded,
        }
    )


def test_batches_count_their_entries_and_other_requests_one() -> None:
    lines = [
        recorded("DeleteMessage"),
        recorded("DeleteMessageBatch", {"Entries": [{"Id": str(i)} for i in range(7)]}),
        recorded("DeleteMessageBatch", {"Entries": [{"Id": "0"}, {"Id": "1"}]}, encoded=True),
        recorded("ReceiveMessage"),
        json.dumps({"headers": {"X-Amz-Target": "SNS.Publish"}, "body": ""}),  # not SQS
        "not json",
    ]
    counts = measure.messages_by_action("\n".join(lines))
    assert counts == {"DeleteMessage": 1, "DeleteMessageBatch": 9, "ReceiveMessage": 1}


def test_a_run_is_accounted_only_when_every_dispatched_delivery_is_delivered_failed_or_held() -> None:
    attempts = [("a", "success"), ("b", "error"), ("b", "success"), ("c", "error"), ("c", "abandoned")]
    book = measure.accounting(["a", "b", "c"], [*attempts, ("stranger", "success")])
    assert (book.dispatched, book.delivered, book.failed, book.held, book.accounted) == (3, 2, 1, 0, True)

    missing = measure.accounting(["a", "b", "c", "d"], attempts)  # d: never recorded
    assert (missing.delivered, missing.failed, missing.accounted) == (2, 1, False)

    assert not measure.accounting([], []).accounted


def test_a_delivery_held_and_never_attempted_counts_as_held_and_one_attempted_after_by_its_attempt() -> None:
    attempts = [("a", "held"), ("b", "held"), ("b", "success"), ("c", "held"), ("c", "error"), ("d", "cancelled")]
    book = measure.accounting(["a", "b", "c", "d"], attempts)
    assert (book.delivered, book.failed, book.held) == (1, 1, 1)
    assert not book.accounted  # d ended without an attempt or a hold: not what the bench expects


def test_all_delivered_needs_a_success_for_every_wanted_delivery() -> None:
    attempts = [("a", "error"), ("a", "held"), ("a", "success"), ("b", "success"), ("c", "error")]
    assert measure.all_delivered(["a", "b"], attempts)
    assert not measure.all_delivered(["a", "b", "c"], attempts)
    assert not measure.all_delivered([], attempts)  # nothing to deliver proves nothing


def test_a_steady_condition_must_hold_without_a_break_for_its_duration() -> None:
    steady = measure.Steady(3.0)
    assert not steady.check(True, 10.0)
    assert not steady.check(True, 12.9)
    assert not steady.check(False, 13.0)  # a break: counted again from the next time it holds
    assert not steady.check(True, 14.0)
    assert not steady.check(True, 16.5)
    assert steady.check(True, 17.0)


def test_paired_measures_give_their_differences_and_must_pair_up() -> None:
    assert measure.paired([3.0, 2.5], [2.75, 2.5]) == [0.25, 0.0]
    with pytest.raises(ValueError, match="pairs"):
        measure.paired([1.0], [1.0, 2.0])


MEASURED = {
    "raw_post_cpu_ms": 0.61234,
    "noop_task_cpu_ms": 0.8,
    "delivery_cpu_ms": 2.9,
    "delivery_cpu_ms_features_off": 2.85,
    "subscriber_cache_cpu_ms": 0.0123,
    "noop_tasks_per_s": 90.0,
    "deliveries_per_s": 80.0,
    "healthy_rate_ratio_with_hanging": 0.96,
    "failing_subscriber_posts_ratio": 0.0612,
    "recovered_all": True,
    "sqs_requests_per_delivery": 2.0,
    "sqs_requests_per_hop": 1.25,
    "dispatch_requests_per_lead_10_subscribers": 10,
    "worker_rss_mb": 123.4,
}


def test_the_summary_has_every_key_in_order_and_says_whether_the_run_is_accounted() -> None:
    line = measure.summary(MEASURED, measure.Accounting(3, 2, 1))
    assert list(line) == list(measure.KEYS)
    assert line["raw_post_cpu_ms"] == 0.612
    assert line["failing_subscriber_posts_ratio"] == 0.061
    assert line["recovered_all"] is True
    assert line["accounted"] is True
    assert measure.summary(MEASURED, measure.Accounting(3, 2, 0))["accounted"] is False
    with pytest.raises(ValueError, match="delivery_cpu_ms"):
        measure.summary({k: v for k, v in MEASURED.items() if k != "delivery_cpu_ms"}, measure.Accounting(1, 1, 0))


def test_the_targets_are_checked_against_the_summary() -> None:
    line = measure.summary(MEASURED, measure.Accounting(3, 2, 1))
    met = {target.name: target.met for target in measure.targets(line)}
    assert met == {
        "delivery CPU": False,  # 2.9 > 0.8 + 0.612 + 1.0
        "delivery rate": False,  # 80 < 0.9 x 90
        "cost of the subscriber cache and checks, two drains": True,  # 2.9 <= 2.85 + 0.1
        "cost of the subscriber cache and checks, priced": True,  # 0.012 <= 0.1
        "hanging subscribers": True,
        "failing subscribers": True,
        "recovered": True,
        "SQS per delivery": True,
        "dispatch, 10 subscribers": True,
        "accounted": True,
    }
    worse = {
        **MEASURED,
        "delivery_cpu_ms_features_off": 2.75,
        "subscriber_cache_cpu_ms": 0.11,
        "healthy_rate_ratio_with_hanging": 0.94,
        "failing_subscriber_posts_ratio": 0.11,
        "recovered_all": False,
    }
    met = {target.name: target.met for target in measure.targets(measure.summary(worse, measure.Accounting(1, 1, 0)))}
    assert not any(
        met[name]
        for name in (
            "cost of the subscriber cache and checks, two drains",
            "cost of the subscriber cache and checks, priced",
            "hanging subscribers",
            "failing subscribers",
            "recovered",
        )
    )


def test_a_load_of_the_cache_is_shared_by_the_deliveries_made_until_the_next_one() -> None:
    from bench.cache import Price

    # a 4 ms load and a 1 ms look every 5 s at 40 deliveries/s: 200 deliveries share them, 0.025 ms each
    price = Price(load_ms=4.0, look_ms=1.0, checks_ms=0.002, rate=40.0, bound=5.0)
    assert price.per_delivery_ms == pytest.approx(0.027)
    assert Price(load_ms=4.0, look_ms=1.0, checks_ms=0.002, rate=4.0, bound=5.0).per_delivery_ms == pytest.approx(0.252)
