"""`python -m backend serve`: the app under gunicorn in this process (one worker, gthread)."""

from __future__ import annotations

import socket

from backend.http.gunicorn_conf import gunicorn_options
from backend.predict.holder import load_model
from backend.settings import Settings


class PortInUse(OSError):
    """The port to bind is taken; the message says which and how to choose another."""


def check_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise PortInUse(f"cannot listen on {host}:{port} ({exc.strerror or exc}); another process uses it: "
                            f"pick another port with --port N or PORT=N") from None


def run_gunicorn(settings: Settings) -> None:
    """Serve under gunicorn in this process; returns when it stops. PortInUse before gunicorn starts."""
    from gunicorn.app.base import BaseApplication

    from backend.http.app import create_app

    check_port_free(settings.host, settings.port)

    class Server(BaseApplication):
        def load_config(self):
            for key, value in gunicorn_options(settings).items():
                self.cfg.set(key, value)

        def load(self):
            return create_app(settings, load=lambda: load_model(settings))

    Server().run()
