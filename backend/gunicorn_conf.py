"""gunicorn settings for the backend, derived from the same env settings as `python -m backend serve`.

    gunicorn -c python:backend.gunicorn_conf 'backend.app:create_app_from_env()'

One worker (the model is loaded once, in that worker, after the fork: CUDA does not survive a fork),
gthread with enough threads that every admitted and queued request plus /health has one.
"""

from __future__ import annotations

from backend.settings import Settings, load_settings


def gunicorn_options(settings: Settings) -> dict:
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return {
        "bind": f"{host}:{settings.port}",
        "workers": 1,
        "worker_class": "gthread",
        "threads": settings.server_threads,
        # gthread heartbeats from its main loop, so long predictions do not trip this; it only
        # catches a wedged worker. Label Studio itself gives up on /predict after 100 s.
        "timeout": int(settings.request_deadline_s) + 60,
        "graceful_timeout": 30,
        "keepalive": 5,
        "preload_app": False,
        "loglevel": settings.log_level.lower(),
        "errorlog": "-",
        "accesslog": None,  # access lines are off: Label Studio polls /health before every batch
        # gunicorn 27's control socket defaults to one path per user: several backends (tests, demo)
        # would share it. We do not use it.
        "control_socket_disable": True,
    }


_options = gunicorn_options(load_settings())
bind = _options["bind"]
workers = _options["workers"]
worker_class = _options["worker_class"]
threads = _options["threads"]
timeout = _options["timeout"]
graceful_timeout = _options["graceful_timeout"]
keepalive = _options["keepalive"]
preload_app = _options["preload_app"]
loglevel = _options["loglevel"]
errorlog = _options["errorlog"]
