from django.conf import settings
from django.core.management.base import BaseCommand

from apertur.serving import serve


class Command(BaseCommand):
    help = (
        "Serve the site only (uvicorn, ASGI, N worker processes); deliveries run in `rundramatiq` workers. "
        "Production: docs/deployment.md."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default=settings.APERTUR_HOST)
        parser.add_argument("--port", type=int, default=settings.APERTUR_PORT)
        parser.add_argument("--workers", type=int, default=2)
        parser.add_argument(
            "--forwarded-allow-ips", default="127.0.0.1", help="proxies whose X-Forwarded-* headers are trusted"
        )

    def handle(self, *args, host: str, port: int, workers: int, forwarded_allow_ips: str, **options) -> None:
        serve(
            host=host,
            port=port,
            workers=workers,
            proxy_headers=True,
            forwarded_allow_ips=forwarded_allow_ips,
            log_level="info",
        )
