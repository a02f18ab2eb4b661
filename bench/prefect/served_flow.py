"""The flows served by `prefect_bench.py remote`, and run by its `cold` op.

Run as a subprocess with PREFECT_API_URL pointing at the benchmark's server,
it registers the deployments `bench-trivial/bench` and `bench-hold/bench`
and serves them until killed. It lives in its own module so that the
runner can import the flows by entrypoint.
"""
import time

from prefect import flow, serve


@flow(name="bench-trivial")
def bench_trivial(x: int = 0) -> int:
    return x


@flow(name="bench-hold")
def bench_hold(ms: int = 1000) -> int:
    """Stays running for `ms` milliseconds, to count concurrent runs in memory."""
    time.sleep(ms / 1000)
    return ms


if __name__ == "__main__":
    serve(bench_trivial.to_deployment(name="bench"), bench_hold.to_deployment(name="bench"),
          print_starting_message=True)
