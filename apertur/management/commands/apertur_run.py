from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apertur.broker import start_embedded_worker
from apertur.serving import serve
from sessions_app.encryption import encryption_key_ensure


class Command(BaseCommand):
    help = "Serve the site (uvicorn, ASGI) with delivery worker threads and the sweeper in the same process."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default=settings.APERTUR_HOST)
        parser.add_argument("--port", type=int, default=settings.APERTUR_PORT)
        parser.add_argument("--no-worker", action="store_true", help="serve only; run `rundramatiq` elsewhere")

    def handle(self, *args, host: str, port: int, no_worker: bool, **options) -> None:
        if no_worker and settings.EMBEDDED_BROKER:
            # The in-process broker only reaches workers in this process: nothing would ever deliver.
            raise CommandError("--no-worker needs DRAMATIQ_BROKER_URL and workers started with `rundramatiq`.")
        encryption_key_ensure()  # made here, on a write path, so the GETs showing the public key never write
        worker = None if no_worker else start_embedded_worker()
        try:
            serve(host=host, port=port, log_level="info")
        finally:
            if worker is not None:
                worker.stop(timeout=10_000)
