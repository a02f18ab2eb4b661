"""Drives a live Sluice server through a client generated from its own
OpenAPI document (openapi-python-client): push the hello component, deploy
it, run it, poll until the run ends, read its logs. Every answer is parsed
by the generated models, so a response that does not fit the document
fails here; the client raises on any status the document does not list.

Environment: SLUICE_URL, SLUICE_TOKEN, HELLO_WASM. Run by tests/openapi_client.rs.
"""

import os
import sys
import time

from sluice_api_client import AuthenticatedClient
from sluice_api_client.api.artifacts import artifact, push_artifact
from sluice_api_client.api.deployments import create_run, deploy, deployment
from sluice_api_client.api.flow_runs import inspect_run, run_logs
from sluice_api_client.api.work_pools import create_queue
from sluice_api_client.models import (
    ClaimBody,
    DeployBody,
    DeployBodyParameters,
    ErrorBody,
    QueueRequest,
    RunBody,
    RunBodyParameters,
    StateType,
)
from sluice_api_client.api.workers import claim
from sluice_api_client.types import File


def main():
    client = AuthenticatedClient(
        base_url=os.environ["SLUICE_URL"], token=os.environ["SLUICE_TOKEN"], raise_on_unexpected_status=True
    )
    with open(os.environ["HELLO_WASM"], "rb") as component:
        payload = component.read()

    pushed = push_artifact.sync_detailed(client=client, body=File(payload=payload, file_name="hello_flow.wasm"))
    if pushed.status_code not in (200, 201):
        sys.exit(f"push answered {pushed.status_code}: {pushed.content!r}")
    digest = pushed.parsed.artifact.digest
    meta = artifact.sync(digest, client=client)
    if isinstance(meta, ErrorBody) or meta is None:
        sys.exit(f"artifact failed: {meta!r}")
    if meta.digest != digest or meta.size != len(payload):
        sys.exit(f"artifact metadata does not match the push: {meta!r}")

    body = DeployBody(
        artifact=digest, flow="hello", name="generated", parameters=DeployBodyParameters.from_dict({"name": "Python"})
    )
    deployed = deploy.sync(client=client, body=body)
    if isinstance(deployed, ErrorBody) or deployed is None:
        sys.exit(f"deploy failed: {deployed!r}")
    shown = deployment.sync("hello", "generated", client=client)
    if isinstance(shown, ErrorBody) or shown.name != "generated":
        sys.exit(f"deployment: {shown!r}")

    run = create_run.sync(
        "hello", "generated", client=client, body=RunBody(parameters=RunBodyParameters.from_dict({"name": "Client"}))
    )
    if isinstance(run, ErrorBody) or run is None:
        sys.exit(f"create_run failed: {run!r}")

    deadline = time.monotonic() + 60
    while True:
        detail = inspect_run.sync(run.id, client=client)
        if isinstance(detail, ErrorBody) or detail is None:
            sys.exit(f"inspect_run failed: {detail!r}")
        state = detail.flow_run.state
        if state in (StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED):
            break
        if time.monotonic() > deadline:
            sys.exit(f"run {run.id} still {state} after 60 s")
        time.sleep(0.1)
    if state != StateType.COMPLETED:
        sys.exit(f"run ended {state}: {detail.flow_run!r}")
    if detail.flow_run.result != "Said hello to Client":
        sys.exit(f"unexpected result {detail.flow_run.result!r}")

    logs = run_logs.sync(run.id, client=client)
    if isinstance(logs, ErrorBody) or logs is None:
        sys.exit(f"run_logs failed: {logs!r}")
    messages = [line.message for line in logs]
    if "Hello Client!" not in messages:
        sys.exit(f"no greeting among the logs: {messages}")

    # Refusals come back as the documented error body, parsed by the client:
    # a value over the document's maximum, and an array where an object is documented.
    too_long = claim.sync_detailed("gen", client=client, body=ClaimBody(limit=1, wait_ms=30001))
    if too_long.status_code != 422 or not isinstance(too_long.parsed, ErrorBody):
        sys.exit(f"wait_ms over its maximum: {too_long.status_code} {too_long.content!r}")
    over = create_queue.sync_detailed(
        "default", client=client, body=QueueRequest(name="huge", concurrency_limit=2**32)
    )
    if over.status_code != 422 or not isinstance(over.parsed, ErrorBody):
        sys.exit(f"concurrency_limit over its maximum: {over.status_code} {over.content!r}")
    print(f"passed: pushed {digest}, ran {run.id} to Completed, {len(messages)} log lines")


if __name__ == "__main__":
    main()
