"""CPU seconds of the checks every upload must pass, over the given files, for bench/fanout.py's CPU budget.

    .venv/bin/python bench/validation_cpu.py FILE...

Runs Apertur's own image check (`sessions_app.decoding.inspect_file`: identify, then decode every byte; JPEGs at
1/8 scale) and SHA-256 on each file in this one process, and prints one JSON line: {"inspect_cpu_s", "sha256_cpu_s",
"files"}. Nothing else an upload costs (the multipart body, staging with fsync, the database) is counted: this is a
floor, not an estimate.
"""

import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    paths = sys.argv[1:]
    if not paths:
        raise SystemExit(__doc__)
    sys.path.insert(0, str(REPO))
    with tempfile.TemporaryDirectory(prefix="apertur-validation-cpu-") as scratch:
        if "APERTUR_VAR_DIR" not in os.environ:
            os.environ["APERTUR_VAR_DIR"] = scratch  # settings write generated keys there
        measure(paths)


def measure(paths: list[str]) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "apertur.settings")
    import django

    django.setup()
    from django.conf import settings

    from sessions_app.decoding import inspect_file

    started = time.process_time()
    for path in paths:
        inspection = inspect_file(path, allowed_mime_types=["image/jpeg"], max_pixels=settings.APERTUR_MAX_IMAGE_PIXELS)
        if inspection.refusal:
            raise SystemExit(f"{path}: refused ({inspection.refusal}: {inspection.detail})")
    inspected = time.process_time()
    for path in paths:
        hashlib.sha256(Path(path).read_bytes()).hexdigest()
    hashed = time.process_time()
    print(
        json.dumps(
            {
                "inspect_cpu_s": round(inspected - started, 2),
                "sha256_cpu_s": round(hashed - inspected, 2),
                "files": len(paths),
            }
        )
    )


if __name__ == "__main__":
    main()
