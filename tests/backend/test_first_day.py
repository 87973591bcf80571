"""What a new user hits first: a port in use, gunicorn run by hand, an empty stage-3 folder."""

from __future__ import annotations

import socket

from backend.__main__ import main
from backend.http.gunicorn_conf import gunicorn_options
from backend.settings import load_settings


def test_serve_on_a_port_in_use_says_which_and_how_to_pick_another(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--checkpoint", "unused", "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert f"cannot listen on 127.0.0.1:{port}" in err[0] and "--port" in err[0] and "PORT=" in err[0]


def test_gunicorn_config_module_carries_every_serve_option():
    import backend.http.gunicorn_conf as conf

    options = gunicorn_options(load_settings())
    for key, value in options.items():
        assert getattr(conf, key) == value, key
    assert conf.control_socket_disable is True
