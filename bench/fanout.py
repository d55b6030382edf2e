"""Benchmark: fan-out to four storage destinations (S3, SFTP, WebDAV, webhook), against a plain script in the same run.

Starts moto_server and the project's SFTP, WebDAV and webhook test servers (tests/servers/), each in a process of
its own (bench/fanout_servers.py), and a live Apertur server (`manage.py apertur_run` on a scratch directory: worker
threads in the web process, SQLite and the in-process broker unless DATABASE_URL / DRAMATIQ_BROKER_URL say
otherwise) with one destination of each type. Then, in order:

1. warm-up: one image through all four destinations;
2. baseline: the --images files pushed straight to the four servers by bench/fanout_baseline.py (boto3, paramiko,
   requests), --per-destination threads per destination;
3. Apertur: the same files uploaded by --upload-concurrency client threads, timed from the first upload's start
   to the last `delivered_at` in the delivery-status API (polled every 0.5 s). The worker runs the baseline's
   concurrency: --per-destination attempts per destination (APERTUR_DESTINATION_CONCURRENCY), 4 x that in all
   (APERTUR_EMBEDDED_WORKER_THREADS, APERTUR_PROJECT_CONCURRENCY);
4. the baseline again (the machine drifts: Apertur's run is bracketed), then once more with a new connection per
   file for SFTP, WebDAV and the webhook, as Apertur's WebDAV and webhook backends make one per delivery (its SFTP
   worker threads keep theirs, docs/destinations.md);
5. memory: one ~--big-mb MB JPEG uploaded and delivered to all four, the delivering process's RSS sampled every
   5 ms and its VmHWM reset just before (last, so that every worker thread has run deliveries of every type: a
   thread's first S3 delivery builds its boto3 client, which the image would otherwise be charged for).

Every object of every run is read back from its server and compared by SHA-256: each image exactly once per
destination, nothing else. CPU is counted per process tree (the web process with its image decoders, rundramatiq
with its worker processes, each server), and a CPU budget compares what the machine could give Apertur at the
target ratio with a floor for any implementation that pushes through the same libraries and checks uploads as
Apertur does (bench/validation_cpu.py). Prints a table, then one JSON line.

    .venv/bin/python bench/fanout.py                       # 100 images, 2 transfers per destination (8 in all)
    .venv/bin/python bench/fanout.py --images 20 --big-mb 5
    .venv/bin/python bench/fanout.py --profile-wall /tmp/wall.txt   # where the server's threads spend the run
    .venv/bin/python bench/fanout.py --profile-cpu /tmp/cpu.txt     # where its CPU goes
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/apertur_bench DRAMATIQ_BROKER_URL=redis://127.0.0.1:6379/9 \\
        .venv/bin/python bench/fanout.py --separate-worker [--hold-deliveries]

--separate-worker runs the deliveries in `manage.py rundramatiq --processes P --threads 4 x --per-destination / P`
(P: --worker-processes, 1 unless given);
--hold-deliveries then freezes that worker (SIGSTOP) until every upload is answered, to time the deliveries alone.
"""

import argparse
import io
import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from fanout_apertur import GONE, Apertur, child_pids
from fanout_baseline import KINDS, run_baseline
from fanout_servers import Stores, sha256_file
from PIL import Image
from upload_and_deliver import free_port

# A noisy JPEG at quality 90 takes about 0.74 bytes per pixel.
BYTES_PER_PIXEL = 0.74
# Above the default 20 (MB of 2^20 bytes), so the ~20 MB image passes whatever its noise compresses to.
MAX_IMAGE_SIZE_MB = 32
# Issue 8's target: Apertur's fan-out within 1.25 x the baseline's time.
TARGET_RATIO = 1.25


def noisy_jpeg(size: tuple[int, int], quality: int) -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise(size, 64).convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def make_images(directory: Path, count: int) -> list[Path]:
    """`count` distinct 1600x1200 noise JPEGs (~1.2 MB each, as bench/upload_and_deliver.py uploads)."""
    directory.mkdir()
    paths = []
    for index in range(count):
        path = directory / f"img-{index:04d}.jpg"
        path.write_bytes(noisy_jpeg((1600, 1200), 85))
        paths.append(path)
    return paths


def make_big_image(directory: Path, megabytes: float) -> Path:
    width = int(math.sqrt(megabytes * 1_000_000 / BYTES_PER_PIXEL * 4 / 3))
    path = directory / "big.jpg"
    path.write_bytes(noisy_jpeg((width, width * 3 // 4), 90))
    return path


def process_status(pid: int, field: str) -> int:
    """A /proc/PID/status value (VmRSS, VmHWM) in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def cpu_seconds(pid: int, *, with_children: bool = True) -> float:
    """User + system CPU time so far of a process, all its threads, and by default of every process below it: the
    web process's image decoders (sessions_app/decoding.py) and rundramatiq's worker processes count too. Children
    that have exited count once their parent has reaped them (cutime, cstime)."""
    ticks = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
        except GONE:
            continue  # it ended and was reaped: its parent's cutime and cstime have it
        if with_children:
            pending += child_pids(current)
        ticks += sum(int(value) for value in fields[11 : 15 if with_children else 13])  # utime, stime, cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def iso_seconds(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def p50_ms_by_kind(values: dict[str, list[float]]) -> dict[str, float]:
    return {kind: round(statistics.median(values[kind]) * 1000, 1) for kind in KINDS}


class CpuMeter:
    """CPU seconds each process spent between `start()` and `stop()`."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids

    def _now(self) -> dict[str, float]:
        # The benchmark's own process started all the others: its children are counted under their own names.
        return {name: cpu_seconds(pid, with_children=name != "bench") for name, pid in self.pids.items()}

    def start(self) -> None:
        self.started = self._now()

    def stop(self) -> dict[str, float]:
        return {name: round(value - self.started[name], 2) for name, value in self._now().items()}


class Bench:
    def __init__(self, options: argparse.Namespace, scratch: Path) -> None:
        self.options = options
        self.files = make_images(scratch / "images", options.images)
        self.big = make_big_image(scratch, options.big_mb)
        self.digests = {path: sha256_file(path) for path in [*self.files, self.big]}
        self.stores = Stores(scratch, (scratch / "servers.log").open("wb"))
        concurrency = 4 * options.per_destination
        port = free_port()
        environment = {
            **os.environ,
            "APERTUR_VAR_DIR": str(scratch / "var"),
            "APERTUR_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "APERTUR_ALLOWED_PRIVATE_NETWORKS": "127.0.0.0/8",
            "APERTUR_LOG_LEVEL": "INFO",  # one line per attempt: "delivery … attempt … delivered in N ms"
            "APERTUR_EMBEDDED_WORKER_THREADS": str(concurrency),
            "APERTUR_DESTINATION_CONCURRENCY": str(options.per_destination),
            "APERTUR_PROJECT_CONCURRENCY": str(concurrency),
            "APERTUR_MAX_IMAGE_SIZE_MB": str(MAX_IMAGE_SIZE_MB),
            **{
                f"APERTUR_RATE_LIMIT_{name}": "100000"
                for name in ("UPLOAD_PAGE", "SESSION_CREATE", "SESSION_READ", "DEFAULT")
            },
        }
        # A failed start (a PostgreSQL database left by an earlier run, whose secrets this run's keys cannot
        # decrypt) must not leave the servers and Apertur's processes running.
        try:
            self.apertur = Apertur(
                scratch,
                environment,
                (scratch / "server.log").open("wb"),
                separate_worker_threads=concurrency if options.separate_worker else 0,
                separate_worker_processes=options.worker_processes,
                profile=options.profile,
            )
        except BaseException:
            self.stores.stop()
            raise
        try:
            self.kinds_by_id = {
                self.apertur.create_destination(destination_type, config): kind
                for kind, (destination_type, config) in self.stores.destinations().items()
            }
        except BaseException:
            self.stop()
            raise
        self.meter = CpuMeter(
            {"apertur": self.apertur.web.pid}
            | ({"apertur worker": self.apertur.worker.pid} if options.separate_worker else {})
            | {"bench": os.getpid()}
            | self.stores.pids()
        )
        self.runs: dict[str, dict[str, Any]] = {}
        self.verified = 0

    def verify_apertur(self, label: str, accepted: dict[str, tuple[Path, float]], sessions: list[str]) -> None:
        """Objects are below apertur/<session id>/ (S3's pathTemplate, the remotePath of SFTP and WebDAV); webhook
        requests are all POSTed to /apertur and named by their X-Aptr-Image-Id."""
        expected = {image: self.digests[path] for image, (path, _) in accepted.items()}
        prefixes = {kind: [f"apertur/{session}" for session in sessions] for kind in ("s3", "sftp", "webdav")}
        self.verified += self.stores.verify(label, expected, prefixes | {"webhook": ["apertur"]})

    def warm_up(self) -> None:
        sessions = self.apertur.create_sessions(list(self.kinds_by_id), 1)
        accepted = self.apertur.upload(self.files[:1], sessions, 1)
        self.apertur.wait_delivered(sessions, len(KINDS))
        self.verify_apertur("warm-up", accepted, sessions)

    def baseline(self, label: str, prefix: str, *, connection_per_file: bool) -> None:
        self.meter.start()
        result = run_baseline(
            self.stores.targets,
            self.files,
            prefix,
            per_destination=self.options.per_destination,
            connection_per_file=connection_per_file,
        )
        self.runs[label] = {
            "seconds": round(result.seconds, 2),
            "p50_ms": p50_ms_by_kind(result.durations),
            "cpu_s": self.meter.stop(),
            "pushing_cpu_s": round(result.pushing_cpu_seconds, 2),
        }
        expected = {path.name: self.digests[path] for path in self.files}
        self.verified += self.stores.verify(label, expected, {kind: [prefix] for kind in KINDS})

    def fan_out(self) -> None:
        apertur, hold = self.apertur, self.options.hold_deliveries
        sessions = apertur.create_sessions(list(self.kinds_by_id), len(self.files))
        if self.options.profile:
            apertur.signal_web(signal.SIGUSR1)
        self.meter.start()
        started = time.time()
        try:
            if hold:
                apertur.hold_deliveries()
            accepted = apertur.upload(self.files, sessions, self.options.upload_concurrency)
        finally:
            released = time.time()
            if hold:
                apertur.release_deliveries()
        images = apertur.wait_delivered(sessions, len(self.files) * len(KINDS))
        cpu = self.meter.stop()
        if self.options.profile:
            apertur.signal_web(signal.SIGUSR2)
        answered = {image: moment for image, (_, moment) in accepted.items()}
        lag: dict[str, list[float]] = {kind: [] for kind in KINDS}
        for image in images:
            for delivery in image["deliveries"]:
                delay = iso_seconds(delivery["delivered_at"]) - answered[image["image_id"]]
                lag[self.kinds_by_id[delivery["destination_id"]]].append(delay)
        last_delivered = max(iso_seconds(d["delivered_at"]) for image in images for d in image["deliveries"])
        attempts = apertur.attempts(sessions)
        kind_of = {identifier.replace("-", ""): kind for identifier, kind in self.kinds_by_id.items()}
        durations: dict[str, list[float]] = {kind: [] for kind in KINDS}
        for destination, seconds, _ in attempts:
            durations[kind_of[destination]].append(seconds)
        self.runs["apertur"] = {
            "seconds": round(last_delivered - started, 2),
            "uploads_seconds": round(max(answered.values()) - started, 2),
            "first_attempt_to_last_delivered_seconds": round(last_delivered - min(a[2] for a in attempts), 2),
            **({"released_to_last_delivered_seconds": round(last_delivered - released, 2)} if hold else {}),
            "attempts": len(attempts),
            "attempt_p50_ms": p50_ms_by_kind(durations),
            "upload_to_delivered_p50_ms": p50_ms_by_kind(lag),
            "cpu_s": cpu,
        }
        self.verify_apertur("apertur", accepted, sessions)

    def memory(self) -> dict[str, Any]:
        """The delivering process's RSS while one big image is uploaded and delivered to every destination: VmRSS,
        and its two parts, RssAnon (the heap: buffers) and RssFile (pages of mapped files, which the kernel can drop;
        the upload's JPEG check maps the staged file)."""
        apertur, pids = self.apertur, self.apertur.delivering_pids
        sessions = apertur.create_sessions(list(self.kinds_by_id), 1)
        time.sleep(2)  # let the last run's garbage settle
        fields = ("VmRSS", "RssAnon", "RssFile")

        def status(field: str) -> int:
            """Summed over the delivering processes (with --worker-processes above 1, the four deliveries may be
            spread over them)."""
            return sum(process_status(pid, field) for pid in pids)

        idle = {field: status(field) for field in fields}
        for pid in pids:
            Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS (proc(5))
        samples: list[tuple[float, dict[str, int]]] = []
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.is_set():
                samples.append((time.time(), {field: status(field) for field in fields}))
                time.sleep(0.005)

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            accepted = apertur.upload([self.big], sessions, 1)
            apertur.wait_delivered(sessions, len(KINDS))
        finally:
            sampling.set()
            sampler.join()
        ((_, answered),) = accepted.values()
        # Each process's high-water mark may come at a different moment: their sum is an upper bound.
        high_water = status("VmHWM")
        self.verify_apertur("memory", accepted, sessions)
        size = self.big.stat().st_size

        def peak(field: str, when=lambda moment: True) -> int:
            return max((values[field] for moment, values in samples if when(moment)), default=0)

        peak_rss = max(high_water, peak("VmRSS"))
        return {
            "file_bytes": size,
            "idle_rss": idle["VmRSS"],
            "peak_rss": peak_rss,
            "rise": peak_rss - idle["VmRSS"],
            "rise_per_file_size": round((peak_rss - idle["VmRSS"]) / size, 2),
            "rise_until_upload_answered": peak("VmRSS", lambda moment: moment <= answered) - idle["VmRSS"],
            "rise_after_upload_answered": peak("VmRSS", lambda moment: moment > answered) - idle["VmRSS"],
            "anon_rise": peak("RssAnon") - idle["RssAnon"],
            "file_rise": peak("RssFile") - idle["RssFile"],
            "samples": len(samples),
        }

    def stop(self) -> None:
        try:
            self.apertur.stop()
        finally:
            self.stores.stop()


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:  # NaN too
        raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=positive_int, default=100)
    parser.add_argument("--per-destination", type=positive_int, default=2, help="concurrent transfers per destination")
    parser.add_argument(
        "--upload-concurrency", type=positive_int, default=4, help="client threads uploading to Apertur"
    )
    parser.add_argument("--big-mb", type=positive_float, default=20, help="size of the memory test's image, in MB")
    parser.add_argument("--separate-worker", action="store_true", help="deliveries in rundramatiq (a broker needed)")
    parser.add_argument("--hold-deliveries", action="store_true", help="with --separate-worker: after the uploads")
    parser.add_argument(
        "--worker-processes",
        type=positive_int,
        default=1,
        help="with --separate-worker: rundramatiq --processes (the worker threads are shared out among them)",
    )
    for mode, what in (("wall", "where its threads are (sampled)"), ("cpu", "where its CPU goes (cProfile)")):
        parser.add_argument(
            f"--profile-{mode}",
            type=Path,
            metavar="REPORT",
            help=f"run the web process under bench/profile_server.py {mode}: {what} during the Apertur run "
            "(slows the server down: not for the timings)",
        )
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (logs, database, stores)")
    options = parser.parse_args()
    if options.separate_worker and not os.environ.get("DRAMATIQ_BROKER_URL"):
        parser.error("--separate-worker needs DRAMATIQ_BROKER_URL")
    if options.worker_processes != 1 and not options.separate_worker:
        parser.error("--worker-processes needs --separate-worker")
    if options.separate_worker and (4 * options.per_destination) % options.worker_processes:
        parser.error("--worker-processes must divide the worker threads (4 x --per-destination)")
    if options.hold_deliveries and not options.separate_worker:
        parser.error("--hold-deliveries needs --separate-worker")
    profiles = [(mode, path) for mode in ("wall", "cpu") if (path := getattr(options, f"profile_{mode}"))]
    if len(profiles) > 1:
        parser.error("one profile at a time")
    options.profile = profiles[0] if profiles else None

    scratch = Path(tempfile.mkdtemp(prefix="apertur-fanout-"))
    print(f"scratch directory {scratch}", file=sys.stderr)
    bench = Bench(options, scratch)
    try:
        bench.warm_up()
        bench.baseline("baseline", "baseline-1", connection_per_file=False)
        bench.fan_out()
        bench.baseline("baseline again", "baseline-2", connection_per_file=False)
        bench.baseline("baseline, new connection per file", "baseline-3", connection_per_file=True)
        memory = bench.memory()
    finally:
        bench.stop()
    runs = bench.runs
    baseline_seconds = statistics.mean([runs["baseline"]["seconds"], runs["baseline again"]["seconds"]])
    result = {
        "benchmark": "fanout",
        "database": "postgresql" if os.environ.get("DATABASE_URL", "").startswith("postgres") else "sqlite",
        "broker": "redis" if os.environ.get("DRAMATIQ_BROKER_URL") else "in-process",
        "worker": "separate rundramatiq" if options.separate_worker else "threads in the web process",
        "hold_deliveries": options.hold_deliveries,
        "images": options.images,
        "image_bytes_mean": int(statistics.mean(path.stat().st_size for path in bench.files)),
        "per_destination": options.per_destination,
        "worker_threads": 4 * options.per_destination,
        "worker_processes": options.worker_processes if options.separate_worker else 1,
        "upload_concurrency": options.upload_concurrency,
        "runs": runs,
        "ratio": round(runs["apertur"]["seconds"] / baseline_seconds, 2),
        "ratio_to_new_connection_per_file": round(
            runs["apertur"]["seconds"] / runs["baseline, new connection per file"]["seconds"], 2
        ),
        "cpu_budget": cpu_budget(runs, baseline_seconds, validation_cpu(bench.files, scratch)),
        "memory": memory,
        "verified_objects": bench.verified,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
    }
    report(result, baseline_seconds)
    print(json.dumps(result))
    if not options.keep:
        subprocess.run(["rm", "-rf", str(scratch)], check=False)


def validation_cpu(files: list[Path], scratch: Path) -> dict[str, Any] | None:
    """The CPU seconds of Apertur's image check and SHA-256 over the files (bench/validation_cpu.py), measured in a
    process of its own after the runs."""
    answer = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("validation_cpu.py")), *map(str, files)],
        env={**os.environ, "APERTUR_VAR_DIR": str(scratch / "validation-var")},
        capture_output=True,
        text=True,
    )
    if answer.returncode:
        # The runs are done and verified: report them without the floor rather than lose them.
        print(f"bench/validation_cpu.py failed, no floor in the CPU budget:\n{answer.stderr}", file=sys.stderr)
        return None
    return json.loads(answer.stdout.splitlines()[-1])


def cpu_budget(
    runs: dict[str, dict[str, Any]], baseline_seconds: float, validation: dict[str, Any] | None
) -> dict[str, Any]:
    """What the machine could give Apertur at the target ratio: every core for TARGET_RATIO x the baseline's time,
    less what the destination servers and the benchmark's client needed in Apertur's own run. The servers work more
    for Apertur than for the baseline (SFTP's temporary name and rename, WebDAV's MKCOL per image), so the budget is
    also given as if they had worked as for the baseline (the mean of its two runs, whose meter also takes in making
    the folders and connections before its clock starts: this errs towards less left). Against it, a floor for any
    implementation that pushes through the same libraries and checks uploads as Apertur does: the baseline client's
    CPU while pushing, plus the uploads' image checks and SHA-256 (`validation`, None if it could not be measured)."""
    cores = os.cpu_count() or 1
    machine = cores * TARGET_RATIO * baseline_seconds
    baselines = [runs["baseline"], runs["baseline again"]]
    apertur_cpu = runs["apertur"]["cpu_s"]
    apertur = sum(seconds for name, seconds in apertur_cpu.items() if name.startswith("apertur"))
    others = sum(seconds for name, seconds in apertur_cpu.items() if not name.startswith("apertur"))
    servers_as_for_baseline = statistics.mean(
        sum(seconds for name, seconds in run["cpu_s"].items() if not name.startswith("apertur") and name != "bench")
        for run in baselines
    )
    pushing = statistics.mean(run["pushing_cpu_s"] for run in baselines)
    checks = validation["inspect_cpu_s"] + validation["sha256_cpu_s"] if validation else None
    return {
        "cores": cores,
        "machine_cpu_s": round(machine, 2),
        "servers_and_client_cpu_s": round(others, 2),
        "left_for_apertur_cpu_s": round(machine - others, 2),
        "left_for_apertur_servers_as_for_baseline_cpu_s": round(
            machine - servers_as_for_baseline - apertur_cpu["bench"], 2
        ),
        "apertur_cpu_s": round(apertur, 2),
        "baseline_pushing_cpu_s": round(pushing, 2),
        "upload_checks_cpu_s": None if checks is None else round(checks, 2),
        "floor_cpu_s": None if checks is None else round(pushing + checks, 2),
    }


def report(result: dict[str, Any], baseline_seconds: float) -> None:
    print(
        f"{result['images']} images x {len(KINDS)} destinations, {result['per_destination']} transfers per "
        f"destination ({result['worker_threads']} in all); {result['database']}, {result['broker']} broker, worker "
        f"{result['worker']}{', held during the uploads' if result['hold_deliveries'] else ''}; {result['machine']}"
    )
    print(f"{'run':36} {'seconds':>8} {'/ baseline':>10}   p50 per file, ms: " + "  ".join(KINDS))
    for label, run in result["runs"].items():
        p50 = run.get("p50_ms") or run["attempt_p50_ms"]
        cells = "  ".join(f"{p50[kind]:>{len(kind)}}" for kind in KINDS)
        print(f"{label:36} {run['seconds']:8.2f} {run['seconds'] / baseline_seconds:10.2f}   {cells}")
    apertur = result["runs"]["apertur"]
    phases = [
        f"uploads answered after {apertur['uploads_seconds']} s",
        f"first attempt to last delivered {apertur['first_attempt_to_last_delivered_seconds']} s",
    ]
    if "released_to_last_delivered_seconds" in apertur:
        phases.append(f"worker released to last delivered {apertur['released_to_last_delivered_seconds']} s")
    phases += [
        f"{apertur['attempts']} attempts",
        f"upload → delivered p50 (ms) {apertur['upload_to_delivered_p50_ms']}",
    ]
    print("apertur: " + "; ".join(phases))
    for label, run in result["runs"].items():
        print(f"CPU seconds, {label}: {run['cpu_s']}")
    budget = result["cpu_budget"]
    print(
        f"CPU budget at {TARGET_RATIO}x: {budget['machine_cpu_s']} CPU-s on {budget['cores']} cores; the four servers "
        f"and the client used {budget['servers_and_client_cpu_s']} of them in Apertur's run, which leaves "
        f"{budget['left_for_apertur_cpu_s']} for Apertur's {result['images']} uploads and "
        f"{result['images'] * len(KINDS)} deliveries; it used "
        f"{budget['apertur_cpu_s']}. With the servers working as for the baseline, "
        f"{budget['left_for_apertur_servers_as_for_baseline_cpu_s']} would be left. "
        + (
            f"Floor: {budget['floor_cpu_s']} (the baseline client's CPU while pushing "
            f"{budget['baseline_pushing_cpu_s']} + the uploads' image checks and SHA-256 "
            f"{budget['upload_checks_cpu_s']})."
            if budget["floor_cpu_s"] is not None
            else "Floor: not measured (bench/validation_cpu.py failed)."
        )
    )
    memory = result["memory"]
    megabytes = {key: round(value / 1e6, 1) for key, value in memory.items() if "rss" in key or "rise" in key}
    megabytes.pop("rise_per_file_size")
    print(
        f"memory, one {memory['file_bytes'] / 1e6:.1f} MB image to {len(KINDS)} destinations (MB): {megabytes}; "
        f"rise / file size {memory['rise_per_file_size']}"
    )
    print(f"verified {result['verified_objects']} objects by SHA-256")


if __name__ == "__main__":
    main()
