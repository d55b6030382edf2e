"""Where a live server's threads spend their time, without py-spy: a sampling profiler inside the process.

    .venv/bin/python bench/sampling_profiler.py REPORT -- manage.py apertur_run --port 8000

runs the command (a Python script and its arguments) in this process with a thread that, while sampling is on, looks
at every other thread's stack every --interval seconds (`sys._current_frames()`). SIGUSR1 starts sampling, SIGUSR2
stops it and writes REPORT: per kind of thread (the main thread's event loop, the delivery worker threads, …), the
functions found most often on the stack (inclusive) and at its top (where the thread was), in % of that kind's
samples. A thread waiting for the GIL shows where it stopped, so on a CPU-bound process the non-idle samples say
where the CPU went; samples in a socket read or a lock wait say where threads waited.

The sampler needs the GIL too, so on a busy process it samples less often than asked; the shares stay comparable.
"""

import collections
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


def _where(code) -> str:
    filename = code.co_filename
    for prefix in PREFIXES:
        if filename.startswith(prefix):
            filename = filename[len(prefix) :]
            break
    return f"{filename}:{code.co_name}"


class Sampler:
    def __init__(self, report: Path, interval: float) -> None:
        self.report, self.interval = report, interval
        self.on = threading.Event()
        self.inclusive: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.leaf: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.samples: collections.Counter = collections.Counter()
        self.started = self.stopped = 0.0

    def run(self) -> None:
        me = threading.get_ident()
        while True:
            self.on.wait()
            time.sleep(self.interval)
            kinds = {thread.ident: self._kind(thread) for thread in threading.enumerate()}
            for ident, frame in sys._current_frames().items():
                if ident == me or not self.on.is_set():
                    continue
                kind = kinds.get(ident, "other")
                self.samples[kind] += 1
                self.leaf[kind][_where(frame.f_code)] += 1
                seen = set()
                while frame is not None:
                    seen.add(_where(frame.f_code))
                    frame = frame.f_back
                self.inclusive[kind].update(seen)

    @staticmethod
    def _kind(thread: threading.Thread) -> str:
        if thread is threading.main_thread():
            return "main (event loop)"
        return type(thread).__name__

    def _cpu_by_kind(self) -> collections.Counter:
        """CPU seconds (user + system) each kind of thread has used, from /proc/self/task/*/stat."""
        kinds = {thread.native_id: self._kind(thread) for thread in threading.enumerate()}
        used: collections.Counter = collections.Counter()
        for task in Path("/proc/self/task").iterdir():
            try:
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # the thread ended meanwhile
                continue
            ticks = int(fields[11]) + int(fields[12])
            used[kinds.get(int(task.name), "other")] += ticks / os.sysconf("SC_CLK_TCK")
        return used

    def start(self, *_) -> None:
        self.cpu_at_start = self._cpu_by_kind()
        self.started = time.monotonic()
        self.on.set()

    def stop(self, *_) -> None:
        self.on.clear()
        self.stopped = time.monotonic()
        cpu = self._cpu_by_kind()
        cpu.subtract(self.cpu_at_start)  # threads that ended meanwhile are lost; the worker's and the loop's live on
        lines = [
            f"sampled for {self.stopped - self.started:.1f} s, every {self.interval * 1000:g} ms asked",
            "CPU seconds meanwhile: " + ", ".join(f"{kind} {seconds:.1f}" for kind, seconds in cpu.most_common()),
            "",
        ]
        for kind, count in self.samples.most_common():
            lines.append(f"== {kind}: {count} samples")
            lines.append("-- on the stack (inclusive)")
            lines += [f"{n * 100 / count:6.1f} %  {name}" for name, n in self.inclusive[kind].most_common(TOP)]
            lines.append("-- at the top")
            lines += [f"{n * 100 / count:6.1f} %  {name}" for name, n in self.leaf[kind].most_common(TOP // 2)]
            lines.append("")
        self.report.write_text("\n".join(lines))


def main() -> None:
    arguments = sys.argv[1:]
    interval = 0.005
    if arguments[:1] == ["--interval"]:
        interval, arguments = float(arguments[1]), arguments[2:]
    report, separator, script, *rest = arguments
    if separator != "--":
        raise SystemExit(__doc__)
    sampler = Sampler(Path(report), interval)
    signal.signal(signal.SIGUSR1, sampler.start)
    signal.signal(signal.SIGUSR2, sampler.stop)
    threading.Thread(target=sampler.run, daemon=True, name="sampling-profiler").start()
    sys.argv = [script, *rest]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
