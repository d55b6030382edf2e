"""Serving the site with uvicorn: one process (`apertur_run`) or several (`apertur_web --workers N`).

uvicorn, when told to stop, waits for open requests to finish before it tells the application; a long poll would
hold a restart for minutes. This server wakes every waiter first, so each answers at once (a held poll with 204, a
`pollFrom` with the current snapshot, an event stream ends) and drops every Socket.IO connection (its clients
reconnect elsewhere), so the shutdown takes moments.
"""

import uvicorn
from uvicorn.supervisors import Multiprocess, multiprocess

from apertur import events


class Server(uvicorn.Server):
    async def shutdown(self, sockets=None) -> None:
        # Imported here: a worker process of `--workers N` unpickles this class before Django is set up (loading
        # `apertur.asgi:application` does that).
        from apertur import live_socket

        events.shutdown()
        await live_socket.shutdown()
        await super().shutdown(sockets=sockets)


class _WorkerProcess(multiprocess.Process):
    """A process of `--workers N`, serving with the `Server` above: uvicorn's supervisor makes each worker's
    server itself, a plain `uvicorn.Server`."""

    @property
    def server(self) -> uvicorn.Server:
        if self._server is None:
            self._server = Server(config=self.config)
        return self._server


def serve(*, host: str, port: int, workers: int = 1, **options) -> None:
    """Serve `apertur.asgi:application` until told to stop (SIGINT/SIGTERM)."""
    config = uvicorn.Config(
        "apertur.asgi:application",
        host=host,
        port=port,
        workers=workers,
        lifespan="on",
        timeout_graceful_shutdown=30,
        **options,
    )
    if workers > 1:
        multiprocess.Process = _WorkerProcess  # the name by which the supervisor makes its workers
        Multiprocess(config, sockets=[config.bind_socket()]).run()
    else:
        Server(config).run()
