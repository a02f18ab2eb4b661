"""Unit tests of the SDK in plain Python (no host): schemas, conversions,
definition errors and local runs. `python3 -m unittest discover guest-sdk/python/tests`."""

import dataclasses
import enum
import json
import os
import sys
import typing
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from sluice import DefinitionError, FatalError, _core, _types, emit_event, flow, pause, task, unmapped  # noqa: E402


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclasses.dataclass
class Point:
    x: int
    y: float = 0.0
    color: Color = Color.RED


class Row(typing.TypedDict):
    name: str
    size: int


class SchemaTest(unittest.TestCase):
    def test_scalars_containers_and_defaults(self):
        def f(a: int, b: float, c: str, d: bool, e: list[int], g: dict[str, float], h: typing.Optional[str] = None,
              i: typing.Literal["x", "y"] = "x"):
            pass

        schema = _types.callable_schema(f, "flow")
        props = schema["properties"]
        self.assertEqual(props["a"]["type"], "integer")
        self.assertEqual(props["b"]["type"], "number")
        self.assertEqual(props["e"]["items"], {"type": "integer"})
        self.assertEqual(props["g"]["additionalProperties"], {"type": "number"})
        self.assertEqual(props["h"]["anyOf"], [{"type": "string"}, {"type": "null"}])
        self.assertIsNone(props["h"]["default"])
        self.assertEqual(props["i"]["enum"], ["x", "y"])
        self.assertEqual(schema["required"], ["a", "b", "c", "d", "e", "g"])
        self.assertFalse(schema["additionalProperties"])

    def test_dataclass_enum_and_typeddict(self):
        point = _types.schema_of(Point)
        self.assertEqual(point["required"], ["x"])
        self.assertEqual(point["properties"]["color"], {"title": "Color", "enum": ["red", "blue"], "default": "red"})
        row = _types.schema_of(Row)
        self.assertEqual(sorted(row["required"]), ["name", "size"])

    def test_unsupported_hints_are_named(self):
        with self.assertRaisesRegex(_types.UnsupportedType, "set"):
            _types.schema_of(set)
        with self.assertRaisesRegex(_types.UnsupportedType, "dict keys must be str"):
            _types.schema_of(dict[int, str])

    def test_definition_error_names_file_and_line(self):
        def bad(items: set):
            pass

        with self.assertRaises(DefinitionError) as caught:
            _core.Flow(bad)
        self.assertIn(f"{__file__}:{bad.__code__.co_firstlineno}", str(caught.exception))
        self.assertIn("parameter `items`", str(caught.exception))


class ConversionTest(unittest.TestCase):
    def test_json_back_to_types(self):
        self.assertEqual(_types.from_json({"x": 1, "color": "blue"}, Point), Point(x=1, y=0.0, color=Color.BLUE))
        self.assertIsInstance(_types.from_json(3, float), float)
        self.assertEqual(_types.from_json([{"x": 2}], list[Point]), [Point(x=2)])
        self.assertIsNone(_types.from_json(None, typing.Optional[int]))
        with self.assertRaisesRegex(ValueError, "count: expected an integer, got a string"):
            _types.from_json("3", int, "count")
        with self.assertRaisesRegex(ValueError, "expected an integer, got a boolean"):
            _types.from_json(True, int)

    def test_values_to_json(self):
        self.assertEqual(_types.to_json(Point(x=1)), {"x": 1, "y": 0.0, "color": "red"})
        self.assertEqual(_types.to_json((1, {"a": Color.BLUE})), [1, {"a": "blue"}])
        with self.assertRaisesRegex(TypeError, "no JSON form"):
            _types.to_json(object())


class LocalRunTest(unittest.TestCase):
    """Outside Sluice, flows and tasks are plain calls, so a flow file runs as a script."""

    def setUp(self):
        _core.registry.flows.clear()
        _core.registry.tasks.clear()

    def test_flow_calls_tasks_submit_and_map(self):
        @task(retries=2, retry_delay_seconds=1.5, timeout_seconds=10, cache=True)
        def add(a: int, b: int = 1) -> int:
            """Adds."""
            return a + b

        @flow
        def main(n: int = 3) -> list:
            return [add(n), add.submit(n, b=2).result(), add.map([1, 2, 3], b=unmapped(10)).result()]

        self.assertEqual(main(), [4, 5, [11, 12, 13]])
        self.assertEqual(add.description, "Adds.")
        self.assertEqual((add.retries, add.retry_delay_ms, add.timeout_ms, add.cache), (2, 1500, 10000, True))

    def test_map_refuses_lists_of_different_lengths(self):
        @task
        def pair(a: int, b: int) -> int:
            return a + b

        with self.assertRaisesRegex(ValueError, "different lengths"):
            pair.map([1, 2], [1, 2, 3])

    def test_bad_options_are_refused_at_the_decorator(self):
        with self.assertRaisesRegex(DefinitionError, "jitter"):
            @task(jitter=2.0)
            def jittery() -> None:
                pass

    def test_two_flows_with_one_name_are_refused(self):
        @flow(name="same")
        def one() -> None:
            pass

        with self.assertRaisesRegex(DefinitionError, "names must be unique"):
            @flow(name="same")
            def two() -> None:
                pass


class _RecordingHost:
    """Stands in for the host imports: answers `suspend` with `answer`, records every call."""

    def __init__(self, answer: str):
        self.answer = answer
        self.calls = []

    def suspend(self, prompt, schema, timeout_ms, default):
        self.calls.append(("suspend", prompt, json.loads(schema), timeout_ms, default))
        return self.answer

    def emit_event(self, name, payload):
        self.calls.append(("emit_event", name, json.loads(payload)))


class PauseTest(unittest.TestCase):
    """`pause` sends the input type's schema and turns the input back into that type."""

    def inside_a_run(self, host):
        saved = (_core._Run.host, _core._Run.depth)
        _core._Run.host, _core._Run.depth = host, 1
        self.addCleanup(lambda: setattr(_core._Run, "host", saved[0]) or setattr(_core._Run, "depth", saved[1]))

    def test_the_input_comes_back_as_the_dataclass_its_schema_came_from(self):
        host = _RecordingHost('{"x": 3}')
        self.inside_a_run(host)
        point = pause("where?", input_type=Point, timeout=1.5, default=Point(x=1, y=2))
        self.assertEqual(point, Point(x=3))
        self.assertIsInstance(point.color, Color)
        _, prompt, schema, timeout_ms, default = host.calls[0]
        self.assertEqual((prompt, timeout_ms, json.loads(default)), ("where?", 1500, {"x": 1, "y": 2, "color": "red"}))
        self.assertEqual(schema, _types.schema_of(Point))
        self.assertEqual(schema["required"], ["x"])

    def test_scalars_and_typeddicts_are_converted_and_a_misfit_is_fatal(self):
        self.inside_a_run(_RecordingHost("5"))
        self.assertEqual(pause("how many?", input_type=int), 5)
        self.inside_a_run(_RecordingHost('{"name": "a", "size": 2}'))
        self.assertEqual(pause("which row?", input_type=Row), {"name": "a", "size": 2})
        self.inside_a_run(_RecordingHost('"five"'))
        with self.assertRaisesRegex(FatalError, "does not fit its type"):
            pause("how many?", input_type=int)

    def test_outside_a_run_pause_says_so_and_emit_event_does_nothing(self):
        with self.assertRaisesRegex(RuntimeError, "inside a Sluice flow run"):
            pause("approve?", input_type=bool)
        emit_event("deploy.done", {"ok": True})
        with self.assertRaisesRegex(TypeError, "no JSON form"):
            pause("what?", input_type=set)
        with self.assertRaisesRegex(ValueError, "timeout"):
            host = _RecordingHost("1")
            self.inside_a_run(host)
            pause("how many?", input_type=int, timeout=-1)

    def test_emit_event_sends_the_payload_as_json(self):
        host = _RecordingHost("")
        self.inside_a_run(host)
        emit_event("deploy.done", {"point": Point(x=1)})
        self.assertEqual(host.calls, [("emit_event", "deploy.done", {"point": {"x": 1, "y": 0.0, "color": "red"}})])
        with self.assertRaisesRegex(TypeError, "must be a dict"):
            emit_event("deploy.done", [1])


if __name__ == "__main__":
    unittest.main()
