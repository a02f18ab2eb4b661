"""Python guests that misbehave on purpose, for tests/python_sdk.rs: one loops
for ever, one allocates without end. Both must end recorded, the host intact."""

from sluice import flow, task


@task(timeout_seconds=1)
def loop_forever() -> int:
    """Never returns."""
    n = 0
    while True:
        n += 1


@flow
def spin() -> int:
    """Calls the task that never returns."""
    return loop_forever()


@flow
def hog() -> int:
    """Allocates a MiB at a time without end."""
    blocks = []
    while True:
        blocks.append(bytearray(1 << 20))
    return len(blocks)
