"""Exercises the Python SDK for tests/python_sdk.rs: typed parameters, failures
with tracebacks, fatal errors, caching, the run context and logging."""

from dataclasses import dataclass
from enum import Enum
from typing import Literal, Optional, TypedDict

from sluice import FatalError, TaskRunError, flow, get_run_logger, runtime, task


class Color(Enum):
    RED = "red"
    GREEN = "green"


@dataclass
class Point:
    x: int
    y: int = 0


class Options(TypedDict):
    label: str
    scale: float


@task
def describe_types(values: dict) -> dict[str, str]:
    """Names the Python type each value arrived as."""
    return {k: type(v).__name__ for k, v in values.items()}


@task
def shift(point: Point, by: int) -> Point:
    """Moves a point right."""
    return Point(x=point.x + by, y=point.y)


@flow
def typed(
    count: int,
    ratio: float,
    name: str,
    loud: bool,
    tags: list[str],
    weights: dict[str, float],
    nickname: Optional[str],
    mode: Literal["fast", "slow"],
    color: Color,
    origin: Point,
    options: Options,
    limit: int = 3,
) -> dict:
    """Reports the Python types its parameters arrived as."""
    arrived = {
        "count": type(count).__name__,
        "ratio": type(ratio).__name__,
        "color": type(color).__name__,
        "origin": type(origin).__name__,
        "options": type(options).__name__,
        "nickname": type(nickname).__name__,
        "limit": type(limit).__name__,
    }
    moved = shift(origin, count)
    return {"arrived": arrived, "moved": {"type": type(moved).__name__, "x": moved.x}, "color": color.value}


def _check_reading(value: int) -> None:
    if value > 40:
        raise ValueError(f"reading {value} is out of range")


@task(retries=1, retry_delay_seconds=0)
def explode(value: int) -> int:
    """Fails with a ValueError raised two frames down."""
    _check_reading(value)
    return value


@flow
def fails(value: int = 42) -> int:
    """Calls a task that raises."""
    return explode(value)


@flow
def recovers(value: int = 42) -> str:
    """Catches a failed task's error and carries on."""
    try:
        explode(value)
    except TaskRunError as e:
        return f"caught {e.kind}"
    return "no error"


@task(retries=3, retry_delay_seconds=0)
def give_up() -> None:
    """Raises a fatal error: retrying cannot help."""
    raise FatalError("the account is closed")


@flow
def fatal() -> None:
    """Calls a task that gives up at once."""
    give_up()


@task(cache=True)
def slow_square(x: int) -> int:
    """A cached task."""
    print(f"computing {x}")
    return x * x


@flow
def cached(x: int = 7) -> list[int]:
    """Calls the cached task twice with the same input."""
    return [slow_square(x), slow_square(x)]


@task
def whoami() -> dict:
    """The task's own view of the run context."""
    return {"task_run": runtime.task_run.name, "flow_run": runtime.flow_run.name}


@flow
def context() -> dict:
    """Logs at several levels and returns what the runtime context says."""
    logger = get_run_logger()
    logger.info("info from the logger")
    logger.warning("warning from the logger")
    print("printed line")
    futures = [whoami.submit() for _ in range(2)]
    return {
        "flow_run": runtime.flow_run.name,
        "flow_name": runtime.flow_run.flow_name,
        "parameters": runtime.flow_run.parameters,
        "tasks": [f.result() for f in futures],
    }
