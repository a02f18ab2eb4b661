"""Flows, tasks, futures and the registry behind `@flow` and `@task`.

Inside a Sluice run (the component's `run-flow` / `run-task` exports are on the
stack) calling a task asks the host to run it in a fresh instance, and calling
a flow starts a subflow. Outside a run (plain Python, a unit test) both simply
call the function, so a flow file also runs on a laptop without Sluice.
"""

import datetime
import functools
import inspect
import json
import re
import typing

from . import _types

__all__ = [
    "Flow",
    "Task",
    "SluiceFuture",
    "FatalError",
    "TaskRunError",
    "DefinitionError",
    "flow",
    "task",
    "unmapped",
    "wait",
    "registry",
]


class FatalError(Exception):
    """Raise it (or a subclass) when trying again cannot help: no retries."""

    __module__ = "sluice"


class TaskRunError(Exception):
    """A task or subflow called from this run did not complete.

    `kind` is the host's reason (`failed`, `crashed`, `timed-out`, `cancelled`,
    `invalid-input`, `unknown`); `retryable` whether retrying may help.
    """

    __module__ = "sluice"

    def __init__(self, kind: str, message: str, retryable: bool = False):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.retryable = retryable


class DefinitionError(Exception):
    """A flow or task is declared in a way Sluice cannot run; names file and line."""

    def __init__(self, fn, message: str):
        code = getattr(fn, "__code__", None)
        where = f"{code.co_filename}:{code.co_firstlineno}: " if code else ""
        super().__init__(f"{where}{message}")
        self.filename = code.co_filename if code else None
        self.lineno = code.co_firstlineno if code else None


# What the host accepts as a flow or task name.
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


class _Registry:
    """Every flow and task declared so far, by name, in declaration order."""

    def __init__(self):
        self.flows: dict = {}
        self.tasks: dict = {}

    def add(self, table: dict, item) -> None:
        if item.name in table and table[item.name].fn is not item.fn:
            raise DefinitionError(item.fn, f"a second {item.kind} is named `{item.name}`: names must be unique")
        table[item.name] = item


registry = _Registry()


class _Run:
    """The host the current instance talks to, while an export is running."""

    host = None  # set by `_world` when the component runs inside Sluice
    depth = 0  # > 0 while run-flow or run-task is on the stack
    context = None  # the host's run context, fetched once per export call

    @classmethod
    def active(cls) -> bool:
        return cls.host is not None and cls.depth > 0


def _seconds_to_ms(value, what: str, fn) -> typing.Optional[int]:
    if value is None:
        return None
    if isinstance(value, datetime.timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise DefinitionError(fn, f"`{what}` must be a number of seconds (or a timedelta) >= 0, not {value!r}")
    return int(round(value * 1000))


def _description(fn, given) -> str:
    text = given if given is not None else inspect.getdoc(fn)
    return (text or "").strip()


def _schema(fn, kind: str) -> dict:
    try:
        return _types.callable_schema(fn, kind)
    except (_types.UnsupportedType, NameError) as e:
        raise DefinitionError(fn, f"{kind} `{fn.__name__}`, {e}") from None


def _return_hint(fn):
    try:
        return typing.get_type_hints(fn).get("return", inspect.Parameter.empty)
    except NameError:
        return inspect.Parameter.empty


class _Callable:
    """What flows and tasks share: a named function with a parameters schema."""

    kind = "callable"

    def __init__(self, fn, name, description):
        if not inspect.isfunction(fn):
            raise TypeError(f"@{self.kind} decorates a function, not {fn!r}")
        if inspect.iscoroutinefunction(fn):
            raise DefinitionError(fn, f"{self.kind} `{fn.__name__}` is async: write it as a plain function (tasks already run in parallel with .submit and .map)")
        self.fn = fn
        self.name = name or fn.__name__
        if not _NAME.match(self.name):
            raise DefinitionError(fn, f"{self.kind} name {self.name!r}: use letters, digits, `_`, `.` and `-` (128 at most), starting with a letter, digit or `_`")
        self.description = _description(fn, description)
        self.schema = _schema(fn, self.kind)
        self.signature = inspect.signature(fn)
        self.hints = typing.get_type_hints(fn)
        self.returns = _return_hint(fn)
        functools.update_wrapper(self, fn)

    def bind(self, args, kwargs) -> dict:
        """The call's arguments as a JSON object of parameter name -> value."""
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as e:
            raise TypeError(f"{self.kind} `{self.name}`: {e}") from None
        bound.apply_defaults()
        out = {}
        for key, value in bound.arguments.items():
            try:
                out[key] = _types.to_json(value)
            except TypeError as e:
                raise TypeError(f"{self.kind} `{self.name}` argument `{key}` {e}") from None
        return out

    def convert_input(self, values: dict) -> dict:
        """JSON input -> keyword arguments of the annotated types; ValueError if it does not fit."""
        out = {}
        for key, value in values.items():
            if key not in self.signature.parameters:
                raise ValueError(f"unknown parameter `{key}`")
            out[key] = _types.from_json(value, self.hints.get(key, inspect.Parameter.empty), key)
        return out

    def convert_result(self, text: str):
        value = json.loads(text)
        try:
            return _types.from_json(value, self.returns, f"result of {self.name}")
        except (ValueError, TypeError):
            return value

    def __repr__(self):
        return f"<{self.kind} {self.name}>"


class Flow(_Callable):
    """A function decorated with `@flow`. Calling it from a running flow starts a subflow."""

    kind = "flow"

    def __init__(self, fn, name=None, description=None):
        super().__init__(fn, name, description)
        registry.add(registry.flows, self)

    def __call__(self, *args, **kwargs):
        if not _Run.active():
            return self.fn(*args, **kwargs)
        parameters = json.dumps(self.bind(args, kwargs))
        return self.convert_result(_Run.host.run_subflow(self.name, parameters))


class Task(_Callable):
    """A function decorated with `@task`: each call runs in a fresh instance, through the host."""

    kind = "task"

    def __init__(self, fn, name=None, description=None, retries=0, retry_delay_seconds=0, backoff=1.0, jitter=0.0,
                 timeout_seconds=None, cache=False, cache_expiration=None):
        super().__init__(fn, name, description)
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise DefinitionError(fn, f"`retries` must be an integer >= 0, not {retries!r}")
        if isinstance(retry_delay_seconds, (list, tuple)):
            raise DefinitionError(fn, "`retry_delay_seconds` as a list is not supported: give the first delay and `backoff`")
        if isinstance(backoff, bool) or not isinstance(backoff, (int, float)) or backoff < 1.0:
            raise DefinitionError(fn, f"`backoff` must be a number >= 1.0, not {backoff!r}")
        if isinstance(jitter, bool) or not isinstance(jitter, (int, float)) or not 0.0 <= jitter <= 1.0:
            raise DefinitionError(fn, f"`jitter` must be a number from 0.0 to 1.0, not {jitter!r}")
        self.retries = retries
        self.retry_delay_ms = _seconds_to_ms(retry_delay_seconds, "retry_delay_seconds", fn) or 0
        self.backoff = float(backoff)
        self.jitter = float(jitter)
        self.timeout_ms = _seconds_to_ms(timeout_seconds, "timeout_seconds", fn)
        self.cache = bool(cache)
        self.cache_expiration_ms = _seconds_to_ms(cache_expiration, "cache_expiration", fn)
        registry.add(registry.tasks, self)

    def __call__(self, *args, wait_for=None, **kwargs):
        _wait_for(wait_for)
        if not _Run.active():
            return self.fn(*args, **kwargs)
        return self.convert_result(_Run.host.run_task(self.name, json.dumps(self.bind(args, kwargs))))

    def submit(self, *args, wait_for=None, **kwargs) -> "SluiceFuture":
        """Starts the task without waiting; `.result()` on the future waits."""
        _wait_for(wait_for)
        return self._start([(args, kwargs)])[0]

    def map(self, *args, wait_for=None, **kwargs) -> "SluiceFutureList":
        """One task run per item, in parallel; lists and tuples are mapped, `unmapped(x)` is passed to every call."""
        _wait_for(wait_for)
        return SluiceFutureList(self._start(_expand(self.name, args, kwargs)))

    def _start(self, calls):
        payloads = [json.dumps(self.bind(a, k)) for a, k in calls]
        if not _Run.active():
            return [SluiceFuture(self, None, _local=(a, k)) for a, k in calls]
        handles = _Run.host.submit([(self.name, p) for p in payloads])
        return [SluiceFuture(self, h) for h in handles]


def _wait_for(futures) -> None:
    """Prefect's `wait_for=`: the call starts once these futures have ended."""
    if futures:
        wait([f for f in futures if isinstance(f, SluiceFuture)])


class unmapped:
    """Wraps an argument of `Task.map` that every call gets whole."""

    def __init__(self, value):
        self.value = value


def _expand(name, args, kwargs):
    lengths = set()

    def mapped(value):
        return isinstance(value, (list, tuple, SluiceFutureList)) and not isinstance(value, unmapped)

    for value in list(args) + list(kwargs.values()):
        if mapped(value):
            lengths.add(len(value))
    if len(lengths) > 1:
        raise ValueError(f"task `{name}`.map: the mapped arguments have different lengths {sorted(lengths)}")
    count = lengths.pop() if lengths else 1

    def pick(value, i):
        if isinstance(value, unmapped):
            return value.value
        return value[i] if mapped(value) else value

    return [([pick(a, i) for a in args], {k: pick(v, i) for k, v in kwargs.items()}) for i in range(count)]


class SluiceFuture:
    """A submitted task run; `.result()` waits for it and returns its value or raises."""

    def __init__(self, task, handle, _local=None):
        self.task = task
        self.handle = handle
        self._local = _local
        self._done = False
        self._value = None
        self._error = None

    def _settle(self, ok: bool, payload):
        self._done = True
        if ok:
            self._value = self.task.convert_result(payload)
        else:
            self._error = payload

    def wait(self) -> None:
        if self._done:
            return
        if self._local is not None:
            args, kwargs = self._local
            try:
                self._done, self._value = True, self.task.fn(*args, **kwargs)
            except Exception as e:  # noqa: BLE001 - kept for .result(), as with a host-run task
                self._error = e
            return
        (outcome,) = _Run.host.wait([self.handle])
        self._settle(*outcome)

    def result(self, raise_on_failure: bool = True):
        self.wait()
        if self._error is not None:
            if raise_on_failure:
                raise self._error
            return self._error
        return self._value

    def _sluice_resolve(self):
        return self.result()

    def state(self):
        return "Pending" if not self._done else ("Failed" if self._error is not None else "Completed")


class SluiceFutureList(list):
    """The futures of a `Task.map`; `.result()` waits for all of them in one host call."""

    def wait(self) -> None:
        wait(self)

    def result(self, raise_on_failure: bool = True) -> list:
        wait(self)
        return [f.result(raise_on_failure) for f in self]


def wait(futures) -> None:
    """Waits until every future has ended (one host call for all of them)."""
    pending = [f for f in futures if not f._done]
    remote = [f for f in pending if f._local is None]
    if remote and _Run.active():
        for future, outcome in zip(remote, _Run.host.wait([f.handle for f in remote])):
            future._settle(*outcome)
    for future in pending:
        future.wait()


_FLOW_OPTIONS = ("name", "description", "version", "log_prints", "flow_run_name", "validate_parameters")


def flow(fn=None, *, name=None, description=None, version=None, log_prints=True, flow_run_name=None,
         validate_parameters=True):
    """Declares a flow: `@flow` or `@flow(name=..., description=...)`.

    `log_prints` is accepted for Prefect code and always on (prints reach the log);
    `version`, `flow_run_name` and `validate_parameters` are accepted and ignored.
    """
    if fn is not None:
        return Flow(fn, name, description)
    return lambda f: Flow(f, name, description)


def task(fn=None, *, name=None, description=None, retries=0, retry_delay_seconds=0, backoff=1.0, jitter=None,
         retry_jitter_factor=None, timeout_seconds=None, cache=False, cache_key_fn=None, cache_expiration=None,
         log_prints=True, tags=None, task_run_name=None):
    """Declares a task: `@task` or `@task(retries=3, retry_delay_seconds=2, timeout_seconds=30, cache=True)`.

    `retry_jitter_factor` (Prefect's name) is the same as `jitter`; a
    `cache_key_fn` turns caching on (the host keys the cache by task and
    input); `log_prints`, `tags` and `task_run_name` are accepted and ignored.
    """
    jitter_value = jitter if jitter is not None else (retry_jitter_factor if retry_jitter_factor is not None else 0.0)
    options = dict(name=name, description=description, retries=retries, retry_delay_seconds=retry_delay_seconds,
                   backoff=backoff, jitter=jitter_value, timeout_seconds=timeout_seconds,
                   cache=bool(cache or cache_key_fn), cache_expiration=cache_expiration)
    if fn is not None:
        return Task(fn, **options)
    return lambda f: Task(f, **options)
