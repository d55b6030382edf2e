from django.apps import AppConfig


class AperturConfig(AppConfig):
    name = "apertur"

    def ready(self) -> None:
        from apertur import events, live_socket
        from apertur.api import schema  # noqa: F401 (registers the OpenAPI authentication extensions)

        # In every process that publishes (web, workers, commands): see apertur.live_socket.
        events.subscribe(live_socket.forward)
