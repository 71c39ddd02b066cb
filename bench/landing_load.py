"""Load generators for the landing benchmark, and the server's CPU accounting.

Two closed-loop generators keep ``connections`` keep-alive connections busy for a fixed time,
sending no cookies (every landing request is a new visitor):

- ``wrk`` (C, epoll; ``apt-get install wrk``): about 40 µs of CPU per request here, so on a
  2-core machine it leaves the cores to the server;
- a Python client (threads and ``http.client``, in a process of its own), the fallback without
  wrk. It costs several times more CPU per request than wrk, and that CPU is taken from the
  server it measures: the benchmark reports hello-world through both so the difference shows.

Each returns a :class:`Run`: requests, seconds, p50/p99 latency, failures (connection errors and
non-200 answers) and the CPU the generator itself used.
"""

from __future__ import annotations

import http.client
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

# wrk's Lua hook prints the figures as JSON (its own table rounds p99 to two digits).
WRK_REPORT = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"micros":%d,"p50_us":%d,"p99_us":%d,"failures":%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""
WRK_INSTALL_HINT = "wrk not found: install it with `apt-get install wrk` (using the Python client)"


@dataclass(frozen=True)
class Run:
    """One timed run of one route."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    failures: int
    generator_cpu_seconds: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


def wrk_path() -> str | None:
    """The wrk executable, or ``None`` when it is not installed."""
    return shutil.which("wrk")


def run_wrk(url: str, connections: int, seconds: float) -> Run:
    """``wrk`` with two threads and ``connections`` keep-alive connections for ``seconds``
    (whole seconds, at least one: wrk takes no fractions)."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_REPORT)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        command = [
            wrk_path() or "wrk", "-t2", f"-c{connections}", f"-d{max(1, round(seconds))}s",
            "--timeout", "10s",
            "-s", script.name, "-H", "Accept: text/html", url,
        ]  # fmt: skip
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    finally:
        Path(script.name).unlink()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    figures = json.loads(output.strip().splitlines()[-1])
    return Run(
        requests=figures["requests"],
        seconds=figures["micros"] / 1e6,
        p50_ms=figures["p50_us"] / 1000,
        p99_ms=figures["p99_us"] / 1000,
        failures=figures["failures"],
        generator_cpu_seconds=cpu,
    )


def run_python(port: int, path: str, connections: int, seconds: float) -> Run:
    """The Python client in a process of its own (see :func:`python_client`)."""
    command = [sys.executable, str(Path(__file__)), str(port), path, str(connections), str(seconds)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    result = json.loads(output)
    latencies = sorted(result["latencies"])
    return Run(
        requests=len(latencies),
        seconds=result["elapsed"],
        p50_ms=statistics.median(latencies) * 1000,
        p99_ms=statistics.quantiles(latencies, n=100, method="inclusive")[98] * 1000,
        failures=result["failures"],
        generator_cpu_seconds=cpu,
    )


def python_client(port: int, path: str, connections: int, seconds: float) -> dict[str, object]:
    """Keep ``connections`` keep-alive requests in flight for ``seconds``; no cookies are kept."""
    deadline = time.perf_counter() + seconds
    latencies: list[list[float]] = [[] for _ in range(connections)]
    failures = [0] * connections

    def worker(slot: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                connection.request("GET", path, headers={"Accept": "text/html"})
                response = connection.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                connection.close()
                ok = False
            latencies[slot].append(time.perf_counter() - started)
            failures[slot] += 0 if ok else 1
        connection.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(slot,)) for slot in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {
        "latencies": [value for values in latencies for value in values],
        "failures": sum(failures),
        "elapsed": time.perf_counter() - started,
    }


def process_cpu_seconds(root_pid: int) -> float:
    """User + system CPU of ``root_pid`` and its children so far (gunicorn master and workers).

    Reads ``/proc``; returns 0.0 where it is not available.
    """
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        pid, parent = int(entry.name), int(fields[1])
        if pid == root_pid or parent == root_pid:
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


if __name__ == "__main__":
    port_arg, path_arg, connections_arg, seconds_arg = sys.argv[1:5]
    result = python_client(int(port_arg), path_arg, int(connections_arg), float(seconds_arg))
    print(json.dumps(result))
