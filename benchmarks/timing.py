"""Timing on a noisy machine: calibrated loops, peers interleaved round by round, medians."""
import statistics
import time


def calls_per_sample(fn, target_seconds: float) -> int:
    """How many calls of ``fn`` fill about ``target_seconds`` (at least one)."""
    fn()
    count = 1
    while True:
        start = time.perf_counter()
        for _ in range(count):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed >= target_seconds / 4 or count >= 1 << 20:
            return max(1, round(count * target_seconds / max(elapsed, 1e-9)))
        count *= 4


def interleaved(functions: dict, rounds: int, target_seconds: float) -> dict:
    """Median seconds per call of each function, sampling them in turn ``rounds`` times.

    Each round visits every function once, starting one further along each time, so a slow
    patch of the machine (another process, a frequency drop) lands on all of them alike.
    The process's CPU time is kept too: with one thread per library (``--threads 1``) it is the
    figure a busy machine disturbs least, as time spent waiting for a core is not counted.
    """
    counts = {name: calls_per_sample(fn, target_seconds) for name, fn in functions.items()}
    samples = {name: [] for name in functions}
    cpu = {name: [] for name in functions}
    names = list(functions)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            fn, count = functions[name], counts[name]
            start, start_cpu = time.perf_counter(), time.process_time()
            for _ in range(count):
                fn()
            cpu[name].append((time.process_time() - start_cpu) / count)
            samples[name].append((time.perf_counter() - start) / count)
    return {name: {"median_s": statistics.median(s), "min_s": min(s), "cpu_median_s": statistics.median(cpu[name]),
                   "samples": len(s), "calls_per_sample": counts[name]} for name, s in samples.items()}


def median_wall(fn, repeats: int) -> float:
    """Median wall time of ``repeats`` single calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
