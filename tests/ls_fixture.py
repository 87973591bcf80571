"""Pytest plugin: a real Label Studio 1.23.2 on loopback, our backend, and a loopback image server.

Fixtures (all session-scoped, started only when a test asks for them):

* `label_studio` -> LabelStudioServer: LS from .venv-ls on a free 127.0.0.1 port, a temp data dir,
  user + legacy token, a personal access token in `.personal_access_token`, local files served
  from `.local_files_root`, and the settings that let it accept a loopback backend
  (ML_BLOCK_LOCAL_IP=false, SSRF_PROTECTION_ENABLED=false). `.client()` is a LabelStudioClient.
  If Label Studio is not installed the fixture FAILS (never skips): run scripts/install_label_studio.sh.
* `image_server` -> LoopbackImageServer: a plain http server on 127.0.0.1 serving `.root`
  (CORS open, so the labeling UI can show its images too). `.url_for(path)` gives a file's URL.
* `random_tiny_checkpoint` -> Path: `python -m model.random_checkpoint --size tiny` (random weights
  with the locating bias, so answers contain boxes and masks; the plain fixture weights in
  shared/fixtures/nextchat-tiny rarely locate anything, which would leave region checks empty).
* `nextchat_backend` -> BackendServer: `python -m backend serve` with that checkpoint on
  a free 127.0.0.1 port, LABEL_STUDIO_URL set to `label_studio` and LABEL_STUDIO_API_KEY set to the
  personal access token (so image fetches go through the refresh exchange), the image server
  allowed in ALLOWED_IMAGE_HOSTS.

Tests that use them should be marked `@pytest.mark.e2e` (registered here): `pytest -m e2e`.
"""

from __future__ import annotations

import functools
import http.server
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from backend.dev.harness import (
    REPO_ROOT,
    LabelStudioNotInstalled,
    LabelStudioServer,
    ManagedProcess,
    free_port,
    start_backend,
    start_label_studio,
)
from backend.studio.client import LabelStudioError

LABEL_STUDIO_START_TIMEOUT_S = 400.0  # first start runs migrations: ~35-50 s here, slower on a busy CI
BACKEND_START_TIMEOUT_S = 300.0
# generous LS -> backend timeouts so a loaded 2-core CI machine does not mark the backend as down
TEST_LS_ENV = {
    "ML_TIMEOUT_PREDICT": "300",
    "ML_TIMEOUT_HEALTH": "10",
    "ML_TIMEOUT_SETUP": "15",
    "ML_CONNECTION_TIMEOUT": "10",
}


def pytest_configure(config):
    config.addinivalue_line("markers", "e2e: end-to-end tests against a real Label Studio 1.23.2 on loopback")


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory):
    root = tmp_path_factory.mktemp("label-studio")
    try:
        server = start_label_studio(
            root / "data", root / "files", free_port(), username="e2e@example.com",
            password="e2e-password-123", extra_env=TEST_LS_ENV, timeout_s=LABEL_STUDIO_START_TIMEOUT_S,
        )
    except LabelStudioNotInstalled as error:
        pytest.fail(f"end-to-end tests need Label Studio: {error}", pytrace=False)
    except LabelStudioError as error:
        pytest.fail(f"Label Studio did not start: {error}", pytrace=False)
    try:
        server.personal_access_token = server.client().create_personal_access_token()
        yield server
    finally:
        server.stop()


@dataclass
class LoopbackImageServer:
    url: str
    root: Path
    host_port: str

    def url_for(self, path: Path) -> str:
        return f"{self.url}/{path.relative_to(self.root).as_posix()}"


class QuietCorsHandler(http.server.SimpleHTTPRequestHandler):
    def end_headers(self):
        self.send_header("Access-Control-Allow-Origin", "*")
        super().end_headers()

    def log_message(self, format, *args):  # noqa: A002 - signature of the base class
        pass


@pytest.fixture(scope="session")
def image_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("http-images")
    handler = functools.partial(QuietCorsHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, name="image-server", daemon=True)
    thread.start()
    try:
        yield LoopbackImageServer(f"http://127.0.0.1:{port}", root, f"127.0.0.1:{port}")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@dataclass
class BackendServer:
    url: str
    process: ManagedProcess

    def log_tail(self, lines: int = 60) -> str:
        return self.process.log_tail(lines)


@pytest.fixture(scope="session")
def random_tiny_checkpoint(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("checkpoint") / "random-tiny"
    made = subprocess.run([sys.executable, "-m", "model.random_checkpoint", "--size", "tiny", "--out", str(out)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    if made.returncode != 0:
        pytest.fail(f"model.random_checkpoint failed:\n{made.stdout}\n{made.stderr}", pytrace=False)
    return out


@pytest.fixture(scope="session")
def nextchat_backend(label_studio: LabelStudioServer, image_server, random_tiny_checkpoint, tmp_path_factory):
    log_path = tmp_path_factory.mktemp("backend") / "backend.log"
    env = {
        "LABEL_STUDIO_URL": label_studio.url,
        "LABEL_STUDIO_API_KEY": label_studio.personal_access_token,
        "ALLOWED_IMAGE_HOSTS": image_server.host_port,
        "LOG_LEVEL": "INFO",
    }
    try:
        process, url = start_backend(
            random_tiny_checkpoint, random_tiny_checkpoint / "vision_tower", free_port(), log_path,
            env_overrides=env, timeout_s=BACKEND_START_TIMEOUT_S,
        )
    except LabelStudioError as error:
        pytest.fail(f"the backend did not start: {error}", pytrace=False)
    try:
        yield BackendServer(url, process)
    finally:
        process.stop()
