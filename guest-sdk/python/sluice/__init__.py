"""Sluice flows in Python, spelled like Prefect.

    from sluice import flow, task, get_run_logger

    @task(retries=2, retry_delay_seconds=1)
    def say_hello(name: str) -> str:
        get_run_logger().info("Hello %s!", name)
        return f"Hello {name}!"

    @flow
    def hello(name: str = "Marvin") -> str:
        \"\"\"Says hello, from a task of its own.\"\"\"
        return say_hello(name)

Build it with `sluice build flow.py`; every task call runs in a fresh, isolated
instance of the component, and the host applies retries, timeouts and caching.
"""

from . import runtime
from ._core import (
    DefinitionError,
    FatalError,
    Flow,
    SluiceFuture,
    SluiceFutureList,
    Task,
    TaskRunError,
    flow,
    task,
    unmapped,
    wait,
)
from ._input import emit_event, pause
from ._logging import get_run_logger

__all__ = [
    "DefinitionError",
    "FatalError",
    "Flow",
    "SluiceFuture",
    "SluiceFutureList",
    "Task",
    "TaskRunError",
    "emit_event",
    "flow",
    "get_run_logger",
    "pause",
    "runtime",
    "task",
    "unmapped",
    "wait",
]
