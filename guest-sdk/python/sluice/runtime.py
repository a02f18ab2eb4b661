"""Where the code is running, like `prefect.runtime`: `flow_run`, `task_run`, `deployment`.

Every attribute is read from the host's run context; outside a run they are `None`
(or empty) so a flow also runs as plain Python.
"""

import json

from . import _core


def _context() -> dict:
    if not _core._Run.active():
        return {}
    if _core._Run.context is None:
        _core._Run.context = _core._Run.host.context()
    return _core._Run.context


class _FlowRun:
    @property
    def id(self):
        return _context().get("flow_run_id")

    @property
    def name(self):
        return _context().get("flow_run_name")

    @property
    def flow_name(self):
        return _context().get("flow_name")

    @property
    def parameters(self) -> dict:
        text = _context().get("parameters")
        return json.loads(text) if text else {}

    @property
    def scheduled_start_time(self):
        return _context().get("scheduled_time")

    @property
    def run_count(self) -> int:
        return _context().get("attempt", 0) if _context().get("task_run_id") is None else 1


class _TaskRun:
    @property
    def id(self):
        return _context().get("task_run_id")

    @property
    def name(self):
        return _context().get("task_run_name")

    @property
    def task_name(self):
        name = self.name
        return name.rsplit("-", 1)[0] if name else None

    @property
    def run_count(self) -> int:
        return _context().get("attempt", 0) if self.id is not None else 0


class _Deployment:
    @property
    def name(self):
        return _context().get("deployment")

    @property
    def flow_name(self):
        return _context().get("flow_name") if self.name else None


flow_run = _FlowRun()
task_run = _TaskRun()
deployment = _Deployment()
