"""Python type hints <-> JSON Schema, and JSON values <-> typed Python values.

A flow's parameters and a task's inputs cross the host boundary as JSON. The
schema built here is what the host checks a call against before it runs; the
conversion turns the checked JSON back into the annotated types (dataclasses,
enums, ...) so the function body sees what its signature promised.
"""

import collections.abc
import dataclasses
import datetime
import enum
import inspect
import types
import typing

__all__ = ["UnsupportedType", "schema_of", "from_json", "to_json", "callable_schema"]

_NONE_TYPE = type(None)


class UnsupportedType(TypeError):
    """A type hint this SDK cannot turn into a JSON Schema."""


def _is_typeddict(hint) -> bool:
    return isinstance(hint, type) and issubclass(hint, dict) and hasattr(hint, "__required_keys__")


def _union_members(hint):
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        return typing.get_args(hint)
    return None


def schema_of(hint, _seen=()) -> dict:
    """The JSON Schema of values of type `hint`; raises UnsupportedType."""
    if hint is inspect.Parameter.empty or hint is typing.Any or hint is object:
        return {}
    if hint is None or hint is _NONE_TYPE:
        return {"type": "null"}
    if hint is bool:
        return {"type": "boolean"}
    if hint is int:
        return {"type": "integer"}
    if hint is float:
        return {"type": "number"}
    if hint is str:
        return {"type": "string"}
    if hint is datetime.datetime:
        return {"type": "string", "format": "date-time"}
    if hint is datetime.date:
        return {"type": "string", "format": "date"}
    if hint in (list, tuple):
        return {"type": "array"}
    if hint is dict:
        return {"type": "object"}
    members = _union_members(hint)
    if members is not None:
        return {"anyOf": [schema_of(m, _seen) for m in members]}
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return {"enum": list(args)}
    if origin is typing.Annotated:
        return schema_of(args[0], _seen)
    if origin in (list, collections.abc.Sequence):
        return {"type": "array", "items": schema_of(args[0], _seen)} if args else {"type": "array"}
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": schema_of(args[0], _seen)}
        items = [schema_of(a, _seen) for a in args]
        return {"type": "array", "prefixItems": items, "minItems": len(items), "maxItems": len(items)}
    if origin is dict:
        key, value = args if args else (str, typing.Any)
        if key is not str:
            raise UnsupportedType(f"dict keys must be str in JSON, not {_name(key)}")
        return {"type": "object", "additionalProperties": schema_of(value, _seen)}
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return {"title": hint.__name__, "enum": [m.value for m in hint]}
    if hint in _seen:
        raise UnsupportedType(f"{_name(hint)} refers to itself; recursive types are not supported")
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        hints = typing.get_type_hints(hint)
        properties, required = {}, []
        for field in dataclasses.fields(hint):
            schema = schema_of(hints.get(field.name, typing.Any), _seen + (hint,))
            if field.default is not dataclasses.MISSING:
                schema = dict(schema, default=to_json(field.default))
            elif field.default_factory is not dataclasses.MISSING:
                schema = dict(schema, default=to_json(field.default_factory()))
            else:
                required.append(field.name)
            properties[field.name] = schema
        return _object(hint.__name__, properties, required)
    if _is_typeddict(hint):
        hints = typing.get_type_hints(hint)
        properties = {k: schema_of(v, _seen + (hint,)) for k, v in hints.items()}
        required = [k for k in hints if k in hint.__required_keys__]
        return _object(hint.__name__, properties, required)
    raise UnsupportedType(f"type {_name(hint)} has no JSON form")


def _object(title, properties, required) -> dict:
    schema = {"title": title, "type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = required
    return schema


def _name(hint) -> str:
    return getattr(hint, "__qualname__", None) or repr(hint)


def callable_schema(fn, kind: str) -> dict:
    """The parameters object schema of `fn`, named after what it is (`flow`, `task`)."""
    signature = inspect.signature(fn)
    hints = typing.get_type_hints(fn, include_extras=True)
    properties, required = {}, []
    for name, param in signature.parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY):
            raise UnsupportedType(f"parameter `{name}`: *args, **kwargs and positional-only parameters have no JSON name")
        try:
            schema = dict(schema_of(hints.get(name, inspect.Parameter.empty)))
        except UnsupportedType as e:
            raise UnsupportedType(f"parameter `{name}`: {e}") from None
        schema.setdefault("title", name)
        if param.default is inspect.Parameter.empty:
            required.append(name)
        else:
            try:
                schema["default"] = to_json(param.default)
            except TypeError as e:
                raise UnsupportedType(f"parameter `{name}`: its default {e}") from None
        properties[name] = schema
    schema = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = required
    return schema


def to_json(value):
    """A JSON-ready copy of `value` (dataclasses, enums, tuples, dates included)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, enum.Enum):
        return to_json(value.value)
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if isinstance(key, enum.Enum):
                key = key.value
            if not isinstance(key, str):
                raise TypeError(f"has a dict key {key!r}: JSON object keys are strings")
            out[key] = to_json(item)
        return out
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_json(v) for v in value]
    resolve = getattr(value, "_sluice_resolve", None)
    if resolve is not None:
        return to_json(resolve())
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return to_json(dump(mode="json"))
    raise TypeError(f"is a {type(value).__name__}, which has no JSON form")


def from_json(value, hint, where: str = "value"):
    """`value` (decoded JSON) as type `hint`; raises ValueError naming `where`."""
    if hint is inspect.Parameter.empty or hint is typing.Any or hint is object:
        return value
    if hint is None or hint is _NONE_TYPE:
        if value is not None:
            raise ValueError(f"{where}: expected null, got {_json_kind(value)}")
        return None
    if hint is bool:
        return _expect(value, bool, where, "a boolean")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ValueError(f"{where}: expected an integer, got {_json_kind(value)}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where}: expected a number, got {_json_kind(value)}")
        return float(value)
    if hint is str:
        return _expect(value, str, where, "a string")
    if hint is datetime.datetime:
        return datetime.datetime.fromisoformat(_expect(value, str, where, "a date-time string"))
    if hint is datetime.date:
        return datetime.date.fromisoformat(_expect(value, str, where, "a date string"))
    if hint in (list, tuple):
        return hint(_expect(value, list, where, "an array"))
    if hint is dict:
        return _expect(value, dict, where, "an object")
    members = _union_members(hint)
    if members is not None:
        if value is None and _NONE_TYPE in members:
            return None
        errors = []
        for member in members:
            if member is _NONE_TYPE:
                continue
            try:
                return from_json(value, member, where)
            except (ValueError, TypeError) as e:
                errors.append(str(e))
        raise ValueError("; ".join(errors) or f"{where}: no member of {hint} fits")
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        if value not in args:
            raise ValueError(f"{where}: expected one of {list(args)}, got {value!r}")
        return value
    if origin is typing.Annotated:
        return from_json(value, args[0], where)
    if origin in (list, collections.abc.Sequence):
        items = _expect(value, list, where, "an array")
        return [from_json(v, args[0] if args else typing.Any, f"{where}[{i}]") for i, v in enumerate(items)]
    if origin is tuple:
        items = _expect(value, list, where, "an array")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(from_json(v, args[0], f"{where}[{i}]") for i, v in enumerate(items))
        if len(items) != len(args):
            raise ValueError(f"{where}: expected {len(args)} items, got {len(items)}")
        return tuple(from_json(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(items, args)))
    if origin is dict:
        obj = _expect(value, dict, where, "an object")
        value_hint = args[1] if args else typing.Any
        return {k: from_json(v, value_hint, f"{where}.{k}") for k, v in obj.items()}
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(value)
        except ValueError:
            raise ValueError(f"{where}: {value!r} is not a {hint.__name__}") from None
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        obj = _expect(value, dict, where, "an object")
        hints = typing.get_type_hints(hint)
        fields = {f.name for f in dataclasses.fields(hint)}
        unknown = sorted(set(obj) - fields)
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {', '.join(unknown)}")
        return hint(**{k: from_json(v, hints.get(k, typing.Any), f"{where}.{k}") for k, v in obj.items()})
    if _is_typeddict(hint):
        obj = _expect(value, dict, where, "an object")
        hints = typing.get_type_hints(hint)
        return {k: from_json(v, hints.get(k, typing.Any), f"{where}.{k}") for k, v in obj.items()}
    return value


def _expect(value, kind, where, words):
    if isinstance(value, bool) and kind is not bool:
        raise ValueError(f"{where}: expected {words}, got a boolean")
    if not isinstance(value, kind):
        raise ValueError(f"{where}: expected {words}, got {_json_kind(value)}")
    return value


def _json_kind(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
