"""A Prefect-style pipeline: a flow that calls tasks and two subflows.

Written as for Prefect; only the import line differs
(`from prefect import flow, task, get_run_logger`).
"""

from dataclasses import dataclass
from typing import Literal

from sluice import flow, get_run_logger, task


@dataclass
class Reading:
    station: str
    celsius: float


@task
def extract(stations: list[str]) -> list[Reading]:
    """Reads one temperature per station."""
    return [Reading(station=s, celsius=10.0 + 2.5 * i) for i, s in enumerate(stations)]


@task
def convert(reading: Reading, unit: Literal["C", "F"]) -> float:
    """Converts a reading to the unit asked for."""
    return reading.celsius if unit == "C" else reading.celsius * 9 / 5 + 32


@task
def summarize(values: list[float]) -> dict[str, float]:
    """Minimum, maximum and mean of the values."""
    return {"min": min(values), "max": max(values), "mean": sum(values) / len(values)}


@flow
def transform(readings: list[Reading], unit: Literal["C", "F"] = "C") -> list[float]:
    """Subflow: converts every reading, in parallel."""
    return convert.map(readings, unit).result()


@flow
def report(summary: dict[str, float], unit: str) -> str:
    """Subflow: writes the summary in one line."""
    line = f"min {summary['min']:.1f}°{unit}, max {summary['max']:.1f}°{unit}, mean {summary['mean']:.1f}°{unit}"
    print(line)
    return line


@flow(log_prints=True)
def weather(stations: list[str] = ["Oslo", "Lima", "Pune"], unit: Literal["C", "F"] = "C") -> str:
    """Reads a temperature per station, converts them and reports the range."""
    logger = get_run_logger()
    readings = extract(stations)
    logger.info("Read %d stations", len(readings))
    values = transform(readings, unit)
    return report(summarize(values), unit)


if __name__ == "__main__":
    weather()
