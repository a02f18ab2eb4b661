"""Parallel tasks with `.map` and `.submit`, and a cached task, in the style
of Prefect's walkthrough. Written as for Prefect; only the import lines differ
(`prefect` and `prefect.tasks`).
"""

from datetime import timedelta

from sluice import flow, task
from sluice.tasks import task_input_hash


@task(cache_key_fn=task_input_hash, cache_expiration=timedelta(hours=1))
def square(x: int) -> int:
    """Squares a number (cached by its input for an hour)."""
    print(f"squaring {x}")
    return x * x


@task
def total(values: list[int]) -> int:
    """Adds the numbers up."""
    return sum(values)


@flow
def sum_of_squares(numbers: list[int] = [1, 2, 3, 4]) -> int:
    """Squares every number in parallel, then adds the squares."""
    squares = square.map(numbers)
    return total.submit(squares).result()


if __name__ == "__main__":
    print(sum_of_squares())
