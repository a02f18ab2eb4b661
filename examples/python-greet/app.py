"""Sluice example flow written in Python directly against wit/flow.wit.

Built with componentize-py (see build.sh); no Rust SDK is involved. The
bindings (`wit_world`, `componentize_py_types`) are generated at build time
from the WIT, and the exported world is the class `WitWorld` below.
"""

import json
from typing import Any, List

import wit_world
from componentize_py_types import Err
from wit_world.imports import host
from wit_world.imports.types import (
    ComponentInfo,
    Failure,
    FlowInfo,
    LogLevel,
    RunError,
    RunError_Crashed,
    RunError_Failed,
    RunError_InvalidInput,
    RunError_Unknown,
    TaskCall,
    TaskInfo,
    TaskPolicy,
)

VERSION = "0.1.0"
DEFAULT_NAMES = ["Arthur", "Trillian"]
DEFAULT_GREETING = "Hello"

GREET_SCHEMA = json.dumps(
    {
        "type": "object",
        "properties": {
            "names": {
                "type": "array",
                "items": {"type": "string"},
                "default": DEFAULT_NAMES,
            },
            "greeting": {"type": "string", "default": DEFAULT_GREETING},
        },
        "additionalProperties": False,
    }
)

SHOUT_SCHEMA = json.dumps(
    {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "greeting": {"type": "string"},
        },
        "required": ["name", "greeting"],
    }
)


def _invalid(message: str) -> Err:
    return Err(RunError_InvalidInput(message))


def _parse_object(text: str) -> dict:
    """Parses a JSON object or raises Err(invalid-input)."""
    try:
        value = json.loads(text) if text.strip() else {}
    except ValueError as e:
        raise _invalid(f"not valid JSON: {e}")
    if not isinstance(value, dict):
        raise _invalid("expected a JSON object")
    return value


def _describe_error(error: RunError) -> str:
    if isinstance(error, (RunError_Failed, RunError_Crashed)):
        return f"{type(error).__name__.split('_', 1)[1].lower()}: {error.value.message}"
    return f"{type(error).__name__.split('_', 1)[1].lower()}: {error.value}"


def _retryable(error: RunError) -> bool:
    """The flow may be worth retrying only if the task's failure was."""
    if isinstance(error, (RunError_Failed, RunError_Crashed)):
        return error.value.retryable
    return False


def _greet(parameters: str) -> str:
    params = _parse_object(parameters)
    extra = sorted(set(params) - {"names", "greeting"})
    if extra:
        raise _invalid(f"unknown parameter(s): {', '.join(extra)}")
    names = params.get("names", DEFAULT_NAMES)
    greeting = params.get("greeting", DEFAULT_GREETING)
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise _invalid("`names` must be an array of strings")
    if not isinstance(greeting, str):
        raise _invalid("`greeting` must be a string")

    ctx = host.context()
    host.log(LogLevel.INFO, f"Flow run {ctx.flow_run_name}")
    host.log(LogLevel.INFO, f"Greeting {len(names)} names")

    calls = [
        TaskCall(name="shout", input=json.dumps({"name": n, "greeting": greeting}))
        for n in names
    ]
    handles = host.submit(calls)
    results = host.wait(handles)

    greetings: List[Any] = []
    for name, result in zip(names, results):
        if isinstance(result, Err):
            raise Err(
                RunError_Failed(
                    Failure(
                        message=f"task shout for {name!r} failed ({_describe_error(result.value)})",
                        retryable=_retryable(result.value),
                    )
                )
            )
        greetings.append(json.loads(result.value))
    return json.dumps(greetings)


def _shout(input: str) -> str:
    args = _parse_object(input)
    name, greeting = args.get("name"), args.get("greeting")
    if not isinstance(name, str) or not isinstance(greeting, str):
        raise _invalid("`name` and `greeting` must be strings")
    message = f"{greeting} {name}!"
    host.log(LogLevel.INFO, message)
    return json.dumps(message)


class WitWorld(wit_world.WitWorld):
    def describe(self) -> ComponentInfo:
        return ComponentInfo(
            version=VERSION,
            flows=[
                FlowInfo(
                    name="greet",
                    description="Greets everyone in a list, one task per name, in parallel.",
                    parameters_schema=GREET_SCHEMA,
                )
            ],
            tasks=[
                TaskInfo(
                    name="shout",
                    description="Returns `{greeting} {name}!` and logs it.",
                    input_schema=SHOUT_SCHEMA,
                    policy=TaskPolicy(
                        retries=1,
                        retry_delay_ms=100,
                        backoff=1.0,
                        jitter=0.0,
                        timeout_ms=5000,
                        cache=False,
                        cache_expiration_ms=None,
                    ),
                )
            ],
        )

    def run_flow(self, name: str, parameters: str) -> str:
        if name != "greet":
            raise Err(RunError_Unknown(name))
        return _guard(_greet, parameters)

    def run_task(self, name: str, input: str) -> str:
        if name != "shout":
            raise Err(RunError_Unknown(name))
        return _guard(_shout, input)


def _guard(body, arg: str) -> str:
    """Turns any stray Python exception into run-error.failed.

    componentize-py only maps `Err(...)` to the result's error case; any other
    exception escaping an export traps the instance (the host sees `crashed`).
    """
    try:
        return body(arg)
    except Err:
        raise
    except Exception as e:  # noqa: BLE001
        raise Err(RunError_Failed(Failure(message=f"{type(e).__name__}: {e}", retryable=True)))
