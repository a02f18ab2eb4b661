"""Pausing a flow run for a person's input, and emitting events
(`sluice:flow@0.2.0`'s `suspend` and `emit-event`).

    @dataclass
    class Approval:
        approve: bool
        reason: str = ""

    answer = pause("approve the deploy?", input_type=Approval)

The input's JSON Schema comes from the same type-hint code as a flow's
parameters, and the input the person sent comes back as that type.
"""

import datetime
import json
import typing

from . import _core, _types

__all__ = ["pause", "emit_event"]


def _timeout_ms(timeout) -> typing.Optional[int]:
    if timeout is None:
        return None
    if isinstance(timeout, datetime.timedelta):
        timeout = timeout.total_seconds()
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0:
        raise ValueError(f"pause: `timeout` must be a number of seconds (or a timedelta) >= 0, not {timeout!r}")
    return int(round(timeout * 1000))


def pause(prompt: str, input_type=dict, timeout=None, default=None):
    """Pauses the flow run until a person sends input of `input_type`, and returns it.

    The run goes to `Paused` and holds no worker slot: this instance stops
    here. When someone resumes the run (`sluice flow-run resume <id> --input
    '{...}'`, the API or the run's page) the flow runs again from the start,
    replaying the tasks it completed from its journal, and this call returns
    the input converted to `input_type` (a dataclass, TypedDict, int, str...).
    Code before it must make the same calls on every attempt, as on a retry.

    With `timeout` (seconds or a timedelta) a run nobody resumed in time goes
    on with `default` (which must fit `input_type`) or, without one, ends
    `Failed`. Only a top-level flow may pause.
    """
    try:
        schema = _types.schema_of(input_type)
    except (_types.UnsupportedType, NameError) as e:
        raise TypeError(f"pause: `input_type` {e}") from None
    if not _core._Run.active():
        raise RuntimeError("pause() only works inside a Sluice flow run (`sluice run`, a deployment)")
    default_json = None if default is None else json.dumps(_types.to_json(default))
    text = _core._Run.host.suspend(prompt, json.dumps(schema), _timeout_ms(timeout), default_json)
    try:
        return _types.from_json(json.loads(text), input_type, "the input of the pause")
    except (ValueError, TypeError) as e:
        raise _core.FatalError(f"the input of the pause does not fit its type: {e}") from None


def emit_event(name: str, payload: typing.Optional[dict] = None) -> None:
    """Records an event of this run that automations can react to.

    `name` is 1 to 128 characters of `A-Z a-z 0-9 . _ -`, not starting with
    `sluice.` (kept for the events Sluice records itself); `payload` a dict
    that serialises to a JSON object of at most 64 KiB. Raises ValueError if
    the host refuses it. Outside a Sluice run it does nothing.
    """
    payload = {} if payload is None else payload
    if not isinstance(payload, dict):
        raise TypeError(f"emit_event: `payload` must be a dict, not {type(payload).__name__}")
    if not _core._Run.active():
        return
    _core._Run.host.emit_event(name, json.dumps(_types.to_json(payload)))
