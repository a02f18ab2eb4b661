"""Checks a flow module before it is componentized: `sluice build` runs this with a
native Python so a syntax error, an unsupported type hint or a missing `@flow`
is reported with its file and line instead of a componentize-py traceback.

Usage: python -m sluice._check MODULE FILE [SOURCE_DIR]  (exit 2 with one message on stderr)
"""

import importlib
import os
import sys
import traceback

from . import _core


def _fail(message: str) -> None:
    sys.stderr.write(message.rstrip() + "\n")
    sys.exit(2)


def _syntax(paths) -> None:
    for path in paths:
        with open(path, "rb") as f:
            source = f.read()
        try:
            compile(source, path, "exec")
        except SyntaxError as e:
            column = f":{e.offset}" if e.offset else ""
            _fail(f"{e.filename or path}:{e.lineno}{column}: syntax error: {e.msg}")


def _user_frame(error: BaseException, root: str):
    """The innermost traceback frame in the user's files, as (file, line)."""
    found = None
    for frame in traceback.extract_tb(error.__traceback__):
        if os.path.abspath(frame.filename).startswith(root):
            found = (frame.filename, frame.lineno)
    return found


def main(argv) -> None:
    module, path = argv[0], argv[1]
    root = os.path.abspath(argv[2] if len(argv) > 2 else os.path.dirname(path))
    sources = []
    for folder, _dirs, files in os.walk(root):
        sources.extend(os.path.join(folder, f) for f in files if f.endswith(".py"))
    _syntax(sorted(set(sources) | {path}))
    try:
        importlib.import_module(module)
    except _core.DefinitionError as e:
        _fail(str(e))
    except ModuleNotFoundError as e:
        where = _user_frame(e, root)
        prefix = f"{where[0]}:{where[1]}: " if where else f"{path}: "
        hint = ""
        if e.name and e.name.split(".")[0] == "prefect":
            hint = " (write `from sluice import flow, task` instead of importing prefect)"
        else:
            hint = " (only the standard library, the sluice SDK and the files of --flow-dir are bundled)"
        _fail(f"{prefix}cannot import `{e.name}`{hint}")
    except BaseException as e:  # noqa: BLE001 - any failure at import time stops the build
        where = _user_frame(e, root)
        prefix = f"{where[0]}:{where[1]}: " if where else f"{path}: "
        _fail(f"{prefix}importing the flow module failed: {type(e).__name__}: {e}")
    if not _core.registry.flows:
        _fail(f"{path}: no @flow found: decorate the flow function with `@flow` (from sluice import flow)")
    flows = ", ".join(_core.registry.flows)
    tasks = ", ".join(_core.registry.tasks) or "none"
    sys.stdout.write(f"flows: {flows}; tasks: {tasks}\n")


if __name__ == "__main__":
    main(sys.argv[1:])
