"""Pauses for typed input and emits events, for tests/python_sdk.rs."""

from dataclasses import dataclass

from sluice import emit_event, flow, pause, task


@dataclass
class Approval:
    approve: bool
    note: str = ""


@task
def prepare(target: str) -> str:
    return f"prepared {target}"


@flow
def approval(target: str = "prod") -> str:
    """Prepares, waits for a person's Approval, then says what it did."""
    prepared = prepare(target)
    answer = pause("Approve the deploy?", input_type=Approval)
    assert isinstance(answer, Approval), f"pause returned a {type(answer).__name__}"
    verb = "deployed" if answer.approve else "held"
    return f"{prepared}; {verb} ({answer.note})"


@flow
def timed(wait_seconds: float = 1.0) -> int:
    """Waits for a number; nobody answers, so the default goes on."""
    value = pause("How many?", input_type=int, timeout=wait_seconds, default=7)
    assert isinstance(value, int), f"pause returned a {type(value).__name__}"
    return value * 6


@flow
def emits() -> list[str]:
    """Emits a good event and one with a bad name; says how each went."""
    answers = []
    for name in ["deploy.approved", "two words"]:
        try:
            emit_event(name, {"by": "tests"})
            answers.append("ok")
        except ValueError as e:
            answers.append(str(e))
    return answers
