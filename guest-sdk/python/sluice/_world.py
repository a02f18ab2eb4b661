"""The component's exports (`describe`, `run-flow`, `run-task`), generic over
what `@flow` and `@task` registered, and the host imports behind `_core`.

Imported only inside a component built by `sluice build`: `wit_world` is the
binding componentize-py generates from `wit/v0.2/flow.wit` (`sluice:flow@0.2.0`).
"""

import json
import os
import sys
import traceback

import wit_world
from componentize_py_types import Err
from wit_world.imports import host
from wit_world.imports.types import (
    ComponentInfo,
    Failure,
    FlowInfo,
    LogLevel,
    RunError_Cancelled,
    RunError_Crashed,
    RunError_Failed,
    RunError_InvalidInput,
    RunError_TimedOut,
    RunError_Unknown,
    TaskCall,
    TaskInfo,
    TaskPolicy,
)

from . import _core

_LEVELS = {
    "trace": LogLevel.TRACE,
    "debug": LogLevel.DEBUG,
    "info": LogLevel.INFO,
    "warning": LogLevel.WARNING,
    "error": LogLevel.ERROR,
}

_KINDS = {
    RunError_Failed: "failed",
    RunError_Crashed: "crashed",
    RunError_InvalidInput: "invalid-input",
    RunError_Unknown: "unknown",
    RunError_TimedOut: "timed-out",
    RunError_Cancelled: "cancelled",
}


def _task_error(name: str, error) -> _core.TaskRunError:
    kind = _KINDS.get(type(error), "failed")
    if isinstance(error.value, Failure):
        message, retryable = error.value.message, error.value.retryable
    else:
        message, retryable = str(error.value), False
    return _core.TaskRunError(kind, f"`{name}` ended {kind}: {message}", retryable)


class _Host:
    """The host imports in the shape `_core` uses (plain values and TaskRunError)."""

    def run_task(self, name: str, payload: str) -> str:
        try:
            return host.run_task(name, payload)
        except Err as e:
            raise _task_error(name, e.value) from None

    def run_subflow(self, name: str, payload: str) -> str:
        try:
            return host.run_subflow(name, payload)
        except Err as e:
            raise _task_error(name, e.value) from None

    def submit(self, calls):
        self._names = getattr(self, "_names", {})
        handles = host.submit([TaskCall(name=n, input=p) for n, p in calls])
        for handle, (name, _) in zip(handles, calls):
            self._names[handle] = name
        return handles

    def wait(self, handles):
        outcomes = []
        for handle, result in zip(handles, host.wait(handles)):
            name = self._names.pop(handle, "task")
            if isinstance(result, Err):
                outcomes.append((False, _task_error(name, result.value)))
            else:
                outcomes.append((True, result.value))
        return outcomes

    def suspend(self, prompt: str, schema: str, timeout_ms, default) -> str:
        try:
            return host.suspend(prompt, schema, timeout_ms, default)
        except Err as e:
            raise _task_error("pause", e.value) from None

    def emit_event(self, name: str, payload: str) -> None:
        try:
            host.emit_event(name, payload)
        except Err as e:
            raise ValueError(f"event `{name}` refused: {e.value}") from None

    def log(self, level: str, message: str) -> None:
        host.log(_LEVELS.get(level, LogLevel.INFO), message)

    def context(self) -> dict:
        c = host.context()
        return {
            "flow_run_id": c.flow_run_id,
            "flow_run_name": c.flow_run_name,
            "flow_name": c.flow_name,
            "deployment": c.deployment,
            "attempt": c.attempt,
            "scheduled_time": c.scheduled_time,
            "parameters": c.parameters,
            "task_run_id": c.task_run_id,
            "task_run_name": c.task_run_name,
        }


_core._Run.host = _Host()
VERSION = "0.1.0"


_SDK_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _traceback(e: BaseException) -> str:
    """The exception's traceback without the SDK's own frames: the user's code is what failed."""
    frames = [f for f in traceback.extract_tb(e.__traceback__) if not f.filename.startswith(_SDK_DIR)]
    lines = ["Traceback (most recent call last):\n"] if frames else []
    lines += traceback.format_list(frames) + traceback.format_exception_only(type(e), e)
    return "".join(lines).rstrip()


def _describe_error(e: BaseException) -> str:
    if isinstance(e, MemoryError) and not str(e):
        return "MemoryError: out of memory (the instance reached its memory limit)"
    text = str(e)
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _invoke(item, text: str) -> str:
    """Runs `item` with its JSON input; every failure becomes the matching run-error."""
    try:
        values = json.loads(text) if text.strip() else {}
        if not isinstance(values, dict):
            raise ValueError("expected a JSON object")
        kwargs = item.convert_input(values)
    except (ValueError, TypeError) as e:
        raise Err(RunError_InvalidInput(f"{item.kind} `{item.name}`: {e}"))
    _core._Run.depth += 1
    _core._Run.context = None
    try:
        result = item.fn(**kwargs)
        return json.dumps(_core._types.to_json(result))
    except Err:
        raise
    except (Exception, SystemExit) as e:  # noqa: BLE001 - every guest error is the run's failure
        retryable = not isinstance(e, _core.FatalError)
        if isinstance(e, _core.TaskRunError):
            retryable = retryable and e.retryable
        # Prefect's wording; the whole traceback is one log line so it reads as one.
        host.log(LogLevel.ERROR, "Encountered exception during execution:\n" + _traceback(e))
        raise Err(RunError_Failed(Failure(message=_describe_error(e), retryable=retryable)))
    finally:
        _core._Run.depth -= 1
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - a closed stream must not hide the result
                pass


def _line_buffered() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(line_buffering=True)
        except Exception:  # noqa: BLE001
            pass


class WitWorld(wit_world.WitWorld):
    def describe(self) -> ComponentInfo:
        reg = _core.registry
        return ComponentInfo(
            version=VERSION,
            flows=[
                FlowInfo(name=f.name, description=f.description, parameters_schema=json.dumps(f.schema))
                # The host runs the first flow by default: a module declares its
                # subflows before the flow that calls them, so the last one leads.
                for f in reversed(list(reg.flows.values()))
            ],
            tasks=[
                TaskInfo(
                    name=t.name,
                    description=t.description,
                    input_schema=json.dumps(t.schema),
                    policy=TaskPolicy(
                        retries=t.retries,
                        retry_delay_ms=t.retry_delay_ms,
                        backoff=t.backoff,
                        jitter=t.jitter,
                        timeout_ms=t.timeout_ms,
                        cache=t.cache,
                        cache_expiration_ms=t.cache_expiration_ms,
                    ),
                )
                for t in reg.tasks.values()
            ],
        )

    def run_flow(self, name: str, parameters: str) -> str:
        item = _core.registry.flows.get(name)
        if item is None:
            raise Err(RunError_Unknown(name))
        _line_buffered()
        return _invoke(item, parameters)

    def run_task(self, name: str, input: str) -> str:
        item = _core.registry.tasks.get(name)
        if item is None:
            raise Err(RunError_Unknown(name))
        _line_buffered()
        return _invoke(item, input)
