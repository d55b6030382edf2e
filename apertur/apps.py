from django.apps import AppConfig


class AperturConfig(AppConfig):
    name = "apertur"

    def ready(self) -> None:
        from apertur import events, live_socket

        # In every process that publishes (web, workers, commands): see apertur.live_socket.
        events.subscribe(live_socket.forward)
