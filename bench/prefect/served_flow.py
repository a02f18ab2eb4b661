"""The trivial flow served by `prefect_bench.py latency` / `memory`.

Run as a subprocess with PREFECT_API_URL pointing at the benchmark's server;
it registers the deployment `bench-trivial/bench` and serves it until killed.
It lives in its own module so that the runner can import it by entrypoint.
"""
from prefect import flow


@flow(name="bench-trivial")
def bench_trivial(x: int = 0) -> int:
    return x


if __name__ == "__main__":
    bench_trivial.serve(name="bench", print_starting_message=True)
