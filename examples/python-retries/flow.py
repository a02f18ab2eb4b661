"""A flaky task with retries, in the style of Prefect's walkthrough.

The scores API "times out" on the first two attempts of each call; the host
retries the task (a fresh instance each time) until it answers. Written as
for Prefect; only the import line differs.
"""

from sluice import flow, get_run_logger, runtime, task


@task(retries=3, retry_delay_seconds=0.05, backoff=2.0)
def fetch_score(team: str) -> int:
    """Asks a flaky scores API for a team's score."""
    attempt = runtime.task_run.run_count
    if attempt < 3:
        raise ConnectionError(f"scores API timed out for {team} (attempt {attempt})")
    get_run_logger().info("Got the score of %s on attempt %d", team, attempt)
    return len(team) * 7


@flow
def scores(teams: list[str] = ["Ravens", "Owls"]) -> dict[str, int]:
    """Fetches every team's score, retrying the flaky API."""
    return {team: fetch_score(team) for team in teams}


if __name__ == "__main__":
    print(scores())
