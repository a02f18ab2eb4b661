"""Trivial Python flows for the Python SDK bench (runtime/benches/python_tasks.rs)."""

import time

from sluice import flow, task


@task
def noop(i: int) -> int:
    """Returns its input."""
    return i


@task
def hold(seconds: float) -> float:
    """Keeps its instance alive for a while (for the memory figure)."""
    time.sleep(seconds)
    return seconds


@flow
def parallel(count: int = 10, seconds: float = 0.0) -> int:
    """`count` tasks at once, each holding its instance for `seconds`."""
    hold.map([seconds] * count).result()
    return count


@flow
def sequential(count: int = 10) -> int:
    """`count` trivial tasks, one after another."""
    for i in range(count):
        noop(i)
    return count
