"""The heap trim: at most once per interval, and only where the C library has malloc_trim."""

from __future__ import annotations

import ctypes

import pytest

from launch_supervisor.daemon import heap
from launch_supervisor.daemon.heap import HeapTrim


def test_it_trims_at_most_once_per_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not before `every` seconds from the start, then at most once per `every`."""
    calls: list[int] = []
    clock = [1000.0]
    monkeypatch.setattr(heap, "_malloc_trim", lambda: calls.append)
    monkeypatch.setattr(heap.time, "monotonic", lambda: clock[0])
    trim = HeapTrim(every=60.0)
    assert trim.available
    assert not trim.maybe()
    clock[0] += 60.0
    assert [trim.maybe(), trim.maybe()] == [True, False]
    clock[0] += 59.0
    assert not trim.maybe()
    clock[0] += 1.0
    assert trim.maybe()
    assert calls == [0, 0]


def test_without_malloc_trim_it_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """musl and macOS have no malloc_trim: the lookup fails, and the trim is a no-op."""

    class NoTrim:
        def __init__(self, name: object) -> None:
            pass

        def __getattr__(self, name: str) -> object:
            raise AttributeError(name)

    monkeypatch.setattr(ctypes, "CDLL", NoTrim)
    trim = HeapTrim()
    assert not trim.available
    assert not trim.maybe()


def test_on_this_machine_glibc_answers() -> None:
    """The daemon's VM runs Debian (glibc): the real call is found and returns."""
    assert HeapTrim(every=0.0).maybe()
