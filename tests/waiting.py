"""Waiting for a condition without Django, so the local test servers (tests/servers/) can use it outside pytest too
(bench/fanout.py starts them as plain libraries)."""

import time
from collections.abc import Callable


def wait_until(predicate: Callable[[], object], timeout: float = 15, interval: float = 0.05):
    """Poll `predicate` until it returns something truthy; fail with a clear message otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)
