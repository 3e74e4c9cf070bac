"""The kombu methods tasks.transport overrides still exist, with the signatures it was written against.

The overrides are found from the classes themselves: every attribute that a class of the
``tasks.transport`` package defines and that kombu's SQS ``Channel`` or ``Transport`` also has.
Each must be recorded in ``RECORDED`` with kombu's signature in the version tested (setup.cfg pins
its minor). A kombu release that renames, removes or changes one of them fails the test named
after it; so does a new override left unrecorded, or a recorded one no longer overridden.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Iterator
from typing import Any

import kombu
import pytest
from kombu.transport import SQS
from kombu.transport.SQS.SNS import SNS

import tasks.transport
import tasks.transport.fanout

#: The kombu release the signatures below were read from.
KOMBU_TESTED = "5.7.0"

#: kombu's own signature, in KOMBU_TESTED, of each attribute overridden in tasks.transport.
RECORDED: dict[str, str] = {
    "Channel.__init__": "(self, *args, **kwargs)",
    "Channel._create_queue": "(self, queue_name, attributes)",
    "Channel._delete": "(self, queue, exchange: 'str | None' = None, *args, **kwargs)",
    "Channel._delete_message": "(self, queue_name, message)",
    "Channel._envelope_payload": "(self, payload, raw_text, message, q_url)",
    "Channel._get_async": "(self, queue, count=1, callback=None)",
    "Channel._get_bulk": "(self, queue, max_if_unlimited=10, callback=None)",
    "Channel._lookup": "(self, exchange, routing_key, default=None)",
    "Channel._new_queue": "(self, queue, **kwargs)",
    "Channel._put": "(self, queue, message, **kwargs)",
    "Channel._prepare_json_payload": "(self, text)",
    "Channel._put_fanout": "(self, exchange: 'str', message: 'dict', routing_key, **kwargs)",
    "Channel._schedule_queue": "(self, queue)",
    "Channel.after_reply_message_received": "(self, queue)",
    "Channel.basic_ack": "(self, delivery_tag, multiple=False)",
    "Channel.basic_consume": "(self, queue, no_ack, callback, consumer_tag, *args, **kwargs)",
    "Channel.basic_reject": "(self, delivery_tag, requeue=False)",
    "Channel.close": "(self)",
    "Channel.default_region": "attribute (str)",
    "Channel.drain_events": "(self, timeout=None, callback=None, **kwargs)",
    "Channel.exchange_declare": (
        "(self, exchange=None, type='direct', durable=False, auto_delete=False, arguments=None, nowait=False, "
        "passive=False)"
    ),
    "Channel.fanout": "property (self) -> 'SnsFanout'",
    "Channel.get_message_attributes": "property (self) -> 'dict[str, Any]'",
    "Channel.prepare_queue_arguments": "(self, arguments, **kwargs)",
    "Channel.wait_time_seconds": "cached property (self) -> 'int'",
    "SNS._create_sns_topic": "(self, exchange_name: 'str') -> 'str'",
    "Transport.Channel": "class",
    "Transport.__init__": "(self, client, **kwargs)",
}

#: What Python puts in every class's namespace: not an override.
CLASS_MACHINERY = frozenset(
    {"__module__", "__doc__", "__dict__", "__weakref__", "__qualname__", "__annotations__", "__firstlineno__"}
    | {"__static_attributes__", "__orig_bases__", "__parameters__", "__abstractmethods__", "_abc_impl"}
)

#: Our class => the kombu class it extends, under the name used in RECORDED.
PAIRS: dict[str, tuple[type, type]] = {
    "Channel": (tasks.transport.Channel, SQS.Channel),
    "Transport": (tasks.transport.Transport, SQS.Transport),
    "SNS": (tasks.transport.fanout.SharedTopics, SNS),
}


def describe(attribute: Any) -> str:
    """What an attribute of a class is, comparably across releases: a callable's signature, a
    property's kind and getter signature, or the kind of a plain attribute."""
    if isinstance(attribute, property):
        return f"property {inspect.signature(attribute.fget)}"  # type: ignore[arg-type]
    if isinstance(attribute, functools.cached_property):
        return f"cached property {inspect.signature(attribute.func)}"
    if isinstance(attribute, (staticmethod, classmethod)):
        return f"{type(attribute).__name__} {inspect.signature(attribute.__func__)}"
    if inspect.isclass(attribute):
        return "class"
    if callable(attribute):
        return str(inspect.signature(attribute))
    return f"attribute ({type(attribute).__name__})"


def defined_in_ours(ours: type, kombu_base: type) -> dict[str, str]:
    """Attribute name => the module of ours defining it, for every class between ``ours`` and kombu."""
    found: dict[str, str] = {}
    for klass in ours.__mro__:
        if issubclass(kombu_base, klass):  # kombu's class or one of its bases: not ours
            continue
        for name in vars(klass):
            if name not in CLASS_MACHINERY:
                found.setdefault(name, klass.__module__)
    return found


def overrides(ours: type, kombu_base: type) -> dict[str, str]:
    """The attributes of ours that kombu's class has too, with the module overriding each."""
    return {name: module for name, module in defined_in_ours(ours, kombu_base).items() if hasattr(kombu_base, name)}


def problem(label: str, name: str, ours: type, kombu_base: type, recorded: dict[str, str]) -> str | None:
    """Why ``label.name`` fails the guard (None when it passes), naming the method and our module."""
    key = f"{label}.{name}"
    mine = defined_in_ours(ours, kombu_base)
    if name not in mine:
        return f"{key} is recorded but no class of tasks.transport defines it any more: remove it from RECORDED"
    where = mine[name]
    if not hasattr(kombu_base, name):
        return (
            f"kombu {kombu.__version__} has no {key} any more, overridden in {where}: the override is never "
            "called; find what replaced it in kombu and port the change"
        )
    now = describe(inspect.getattr_static(kombu_base, name))
    if key not in recorded:
        return (
            f"{where} overrides kombu's {key}, which RECORDED does not list: check the override against "
            f"kombu's code and record its signature {now!r}"
        )
    if now != recorded[key]:
        return (
            f"kombu {kombu.__version__} changed {key}, overridden in {where}: it was {recorded[key]!r} in kombu "
            f"{KOMBU_TESTED}, it is {now!r} now; port the override, then record the new signature"
        )
    return None


def every_name() -> Iterator[tuple[str, str]]:
    """(label, name) of every override found and every name recorded."""
    names = set(RECORDED)
    for label, (ours, kombu_base) in PAIRS.items():
        names |= {f"{label}.{name}" for name in overrides(ours, kombu_base)}
    for key in sorted(names):
        label, name = key.split(".", 1)
        yield label, name


NAMES = list(every_name())


@pytest.mark.parametrize(("label", "name"), NAMES, ids=[".".join(pair) for pair in NAMES])
def test_an_overridden_kombu_method_keeps_the_signature_it_had_in_the_kombu_tested(label: str, name: str) -> None:
    ours, kombu_base = PAIRS[label]
    found = problem(label, name, ours, kombu_base, RECORDED)
    assert found is None, found


def test_a_kombu_release_that_drops_or_changes_an_overridden_method_fails_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(SQS.Channel, "_delete_message")
    found = problem("Channel", "_delete_message", *PAIRS["Channel"], RECORDED)
    assert found is not None
    assert "has no Channel._delete_message any more, overridden in tasks.transport.fixes" in found

    monkeypatch.setattr(SQS.Channel, "_put", lambda self, queue, message, *, delay=None: None)
    found = problem("Channel", "_put", *PAIRS["Channel"], RECORDED)
    assert found is not None
    assert "changed Channel._put, overridden in tasks.transport.fanout" in found and "delay=None" in found


def test_the_package_overrides_what_the_issue_listed_at_least() -> None:
    found = overrides(*PAIRS["Channel"])
    assert {"basic_ack", "_put", "_lookup", "_delete_message", "_schedule_queue", "_create_queue"} <= set(found)
    assert found["basic_ack"] == "tasks.transport.acks"
    assert found["_lookup"] == "tasks.transport.fanout"


# --- the guard itself: each kind of rot is caught, with the method named ------------------


class _Kombu:
    """A stand-in for kombu's class, in its release after the one tested."""

    def __init__(self, client: object) -> None: ...

    def renamed_argument(self, delivery: object) -> None: ...


class _Ours(_Kombu):
    def __init__(self, client: object) -> None: ...

    def renamed_argument(self, delivery_tag: object) -> None: ...

    def removed_from_kombu(self) -> None: ...

    def ours_alone(self) -> None: ...


_RECORDED = {
    "Fake.__init__": "(self, client: 'object') -> 'None'",
    "Fake.renamed_argument": "(self, delivery_tag: 'object') -> 'None'",
    "Fake.removed_from_kombu": "(self) -> 'None'",
}


def test_the_guard_names_a_method_whose_kombu_signature_changed() -> None:
    found = problem("Fake", "renamed_argument", _Ours, _Kombu, _RECORDED)
    assert found is not None
    assert "changed Fake.renamed_argument" in found and "delivery_tag" in found and "(self, delivery" in found


def test_the_guard_names_an_override_of_a_method_kombu_no_longer_has() -> None:
    found = problem("Fake", "removed_from_kombu", _Ours, _Kombu, _RECORDED)
    assert found is not None and "has no Fake.removed_from_kombu any more" in found


def test_the_guard_names_a_new_override_not_recorded() -> None:
    found = problem("Fake", "renamed_argument", _Ours, _Kombu, {})
    assert found is not None and "overrides kombu's Fake.renamed_argument, which RECORDED does not list" in found


def test_the_guard_names_a_recorded_override_that_was_removed() -> None:
    found = problem("Fake", "gone", _Ours, _Kombu, {"Fake.gone": "(self)"})
    assert found is not None and "Fake.gone is recorded but no class of tasks.transport defines it" in found


def test_the_guard_passes_an_unchanged_override_and_ignores_methods_of_ours_alone() -> None:
    assert problem("Fake", "__init__", _Ours, _Kombu, _RECORDED) is None
    assert "ours_alone" not in overrides(_Ours, _Kombu)
    assert set(overrides(_Ours, _Kombu)) == {"__init__", "renamed_argument"}
