"""gunicorn settings for the backend, derived from the same env settings as `python -m backend serve`.

    gunicorn -c python:backend.http.gunicorn_conf 'backend.http.app:create_app_from_env()'

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


# every option, so `gunicorn -c python:backend.http.gunicorn_conf` runs exactly as `python -m backend serve`
globals().update(gunicorn_options(load_settings()))
