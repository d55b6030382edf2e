"""Where a live server's threads spend their time, without py-spy: two profilers that run inside the process.

    .venv/bin/python bench/profile_server.py wall|cpu REPORT -- manage.py apertur_run --port 8000

runs the command (a Python script and its arguments) in this process. SIGUSR1 opens the window to profile, SIGUSR2
closes it and writes REPORT, per kind of thread (the main thread's event loop, the delivery worker threads, the
request threads, …):

- `wall`: a thread looks at every other thread's stack every 5 ms (`sys._current_frames()`) and counts the functions
  on it (inclusive) and at its top: where the threads are, running, waiting for the GIL or blocked (a socket read, a
  database lock, an idle worker's queue). Python 3.11 does not link the frame of a generator driven from C code (a
  `list(queryset)`) to its caller, so such samples miss their outer functions; the shares are a lower bound.
- `cpu`: cProfile in every thread started after this one, timed by the thread's own CPU clock (`time.thread_time`):
  own and cumulative CPU seconds per function within the window (the difference of two snapshots). cProfile slows
  Python code down (each call is timed), so the run is slower and Python's share is inflated: read it as a ranking.

bench/fanout.py --profile-wall / --profile-cpu runs its server this way, around the Apertur run.
"""

import collections
import cProfile
import os
import runpy
import signal
import sys
import threading
import time
from pathlib import Path

TOP = 45
REPO = str(Path(__file__).resolve().parent.parent)
PREFIXES = (REPO + "/", *(path + "/" for path in sys.path if path.endswith("site-packages")))


def _short(filename: str) -> str:
    for prefix in PREFIXES:
        if filename.startswith(prefix):
            return filename[len(prefix) :]
    return filename


def kind_of(thread: threading.Thread) -> str:
    return "main (event loop)" if thread is threading.main_thread() else type(thread).__name__


class WallSampler:
    def __init__(self, report: Path, interval: float = 0.005) -> None:
        self.report, self.interval = report, interval
        self.on = threading.Event()
        self.inclusive: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.top: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.samples: collections.Counter = collections.Counter()
        threading.Thread(target=self._run, daemon=True, name="profiler").start()

    def _run(self) -> None:
        me = threading.get_ident()
        while True:
            self.on.wait()
            time.sleep(self.interval)
            threads = {thread.ident: thread for thread in threading.enumerate()}
            for ident, frame in sys._current_frames().items():
                if ident == me or ident not in threads or not self.on.is_set():
                    continue
                kind = kind_of(threads[ident])
                self.samples[kind] += 1
                self.top[kind][f"{_short(frame.f_code.co_filename)}:{frame.f_code.co_name}"] += 1
                seen = set()
                while frame is not None:
                    seen.add(f"{_short(frame.f_code.co_filename)}:{frame.f_code.co_name}")
                    frame = frame.f_back
                self.inclusive[kind].update(seen)

    def start(self, *_) -> None:
        self.started = time.monotonic()
        self.on.set()

    def stop(self, *_) -> None:
        self.on.clear()
        lines = [
            f"wall-clock samples for {time.monotonic() - self.started:.1f} s, every {self.interval * 1000:g} ms",
            "",
        ]
        for kind, count in self.samples.most_common():
            lines += [f"== {kind}: {count} samples", "-- on the stack (inclusive)"]
            lines += [f"{n * 100 / count:6.1f} %  {name}" for name, n in self.inclusive[kind].most_common(TOP)]
            lines.append("-- at the top")
            lines += [f"{n * 100 / count:6.1f} %  {name}" for name, n in self.top[kind].most_common(TOP // 2)]
            lines.append("")
        self.report.write_text("\n".join(lines))


class CpuProfiler:
    """cProfile per thread (each thread's profiler is enabled by the thread itself, at its start)."""

    def __init__(self, report: Path) -> None:
        self.report = report
        self.profiles: list[tuple[threading.Thread, cProfile.Profile]] = []
        profiles, original = self.profiles, threading.Thread._bootstrap_inner

        # _bootstrap_inner runs in the new thread and calls run(), which subclasses (dramatiq's worker threads)
        # override: wrapping it reaches every thread.
        def profiled(thread: threading.Thread) -> None:
            profile = cProfile.Profile(time.thread_time)
            profiles.append((thread, profile))
            profile.enable()
            try:
                original(thread)
            finally:
                profile.disable()

        threading.Thread._bootstrap_inner = profiled  # type: ignore[attr-defined]
        self.main = cProfile.Profile(time.thread_time)
        self.profiles.append((threading.main_thread(), self.main))
        self.main.enable()

    @staticmethod
    def _snapshot(profile: cProfile.Profile) -> dict[tuple[str, str], tuple[float, float, int]]:
        """function → (own CPU seconds, cumulative CPU seconds, calls), from the profiler's tables as they are
        (`getstats` reads without stopping the profiler, which belongs to another thread)."""
        table: dict[tuple[str, str], tuple[float, float, int]] = {}
        for entry in profile.getstats():
            code = entry.code
            key = (_short(code.co_filename), code.co_name) if not isinstance(code, str) else ("~", code)
            own, total, calls = table.get(key, (0.0, 0.0, 0))
            table[key] = (own + entry.inlinetime, total + entry.totaltime, calls + entry.callcount)
        return table

    def start(self, *_) -> None:
        self.started = time.monotonic()
        self.before = {id(profile): self._snapshot(profile) for _, profile in self.profiles}

    def stop(self, *_) -> None:
        own: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        total: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        calls: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        threads: collections.Counter = collections.Counter()
        for thread, profile in list(self.profiles):
            kind, before = kind_of(thread), self.before.get(id(profile), {})
            threads[kind] += 1
            for key, (inline, cumulative, count) in self._snapshot(profile).items():
                was = before.get(key, (0.0, 0.0, 0))
                name = f"{key[0]}:{key[1]}"
                own[kind][name] += inline - was[0]
                total[kind][name] += cumulative - was[1]
                calls[kind][name] += count - was[2]
        lines = [f"CPU profile (cProfile, thread CPU clock) for {time.monotonic() - self.started:.1f} s", ""]
        for kind, _ in sorted(own.items(), key=lambda item: -sum(item[1].values())):
            spent = sum(own[kind].values())
            lines += [f"== {kind}: {threads[kind]} threads, {spent:.1f} CPU seconds in profiled calls"]
            lines.append("-- cumulative (the function and what it called): seconds, share, calls")
            lines += [
                f"{seconds:7.2f} s {seconds * 100 / spent:5.1f} % {calls[kind][name]:8d}  {name}"
                for name, seconds in total[kind].most_common(TOP)
            ]
            lines.append("-- own (the function's own code): seconds, share, calls")
            lines += [
                f"{seconds:7.2f} s {seconds * 100 / spent:5.1f} % {calls[kind][name]:8d}  {name}"
                for name, seconds in own[kind].most_common(TOP // 2)
            ]
            lines.append("")
        self.report.write_text("\n".join(lines))


def main() -> None:
    mode, report, separator, script, *arguments = sys.argv[1:]
    if mode not in ("wall", "cpu") or separator != "--":
        raise SystemExit(__doc__)
    profiler = WallSampler(Path(report)) if mode == "wall" else CpuProfiler(Path(report))
    signal.signal(signal.SIGUSR1, profiler.start)
    signal.signal(signal.SIGUSR2, profiler.stop)
    sys.argv = [script, *arguments]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
