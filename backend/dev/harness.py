"""Process harness for development: Label Studio 1.23.2 from its own venv and this backend, started on
loopback as managed child processes, with their logs. Used by `python -m backend demo`, the end-to-end
test fixtures (tests/ls_fixture.py) and scripts; never by the serving path."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from backend.studio.client import LabelStudioClient, LabelStudioError, wait_for_health

REPO_ROOT = Path(__file__).resolve().parents[2]
LABEL_STUDIO_VERSION = "1.23.2"
INSTALL_HINT = "run `bash scripts/install_label_studio.sh` (creates .venv-ls with label-studio==1.23.2)"
# copied from our environment into Label Studio's; everything else is set explicitly, because LS
# reads HOST, USERNAME, PASSWORD, ... with and without a LABEL_STUDIO_ prefix
PASSED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "SYSTEMROOT")


class LabelStudioNotInstalled(RuntimeError):
    pass


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def find_label_studio() -> Path:
    """The `label-studio` executable: $LABEL_STUDIO_BIN, else .venv-ls/bin/label-studio."""
    configured = os.environ.get("LABEL_STUDIO_BIN")
    candidate = Path(configured) if configured else REPO_ROOT / ".venv-ls" / "bin" / "label-studio"
    if not (candidate.is_file() and os.access(candidate, os.X_OK)):
        raise LabelStudioNotInstalled(f"Label Studio {LABEL_STUDIO_VERSION} not found at {candidate}: {INSTALL_HINT}")
    return candidate


class ManagedProcess:
    """A child process in its own session (so stop() reaches its children too), output to a log file."""

    def __init__(self, name: str, args: list[str], env: dict, log_path: Path, cwd: Path | None = None):
        self.name = name
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "ab")
        self.popen = subprocess.Popen(
            args, env=env, cwd=cwd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM to the process group, SIGKILL after `timeout_s`; closes the log."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self.popen.poll() is not None:
                break
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.popen.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                continue
        if not self._log.closed:
            self._log.close()

    def wait_healthy(self, url: str, timeout_s: float, path: str = "/health") -> None:
        try:
            wait_for_health(url, timeout_s, self.popen, path)
        except LabelStudioError as error:
            self.stop()
            tail = f"--- last lines of {self.log_path} ---\n{self.log_tail()}"
            raise LabelStudioError(f"{self.name}: {error}\n{tail}") from None
        except BaseException:  # Ctrl-C while waiting: the child is in its own session, stop it here
            self.stop()
            raise


@dataclass
class LabelStudioServer:
    """A running Label Studio: where it is, how to log in, and its process."""

    url: str
    api_key: str
    username: str
    password: str
    data_dir: Path
    local_files_root: Path
    process: ManagedProcess | None = field(default=None, repr=False)
    personal_access_token: str = field(default="", repr=False)  # set by whoever creates one (once per user)

    def client(self, api_key: str | None = None) -> LabelStudioClient:
        return LabelStudioClient(self.url, api_key or self.api_key)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


def label_studio_env(data_dir: Path, files_root: Path, url: str, username: str, password: str,
                     token: str, extra: dict | None = None) -> dict:
    """Environment for a headless LS that accepts a backend on loopback/private addresses."""
    env = {name: os.environ[name] for name in PASSED_ENV if name in os.environ}
    env.update({
        "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
        "LABEL_STUDIO_HOST": url,  # /setup's hostname and LS's own links (default would be localhost:8080)
        "LABEL_STUDIO_USERNAME": username,
        "LABEL_STUDIO_PASSWORD": password,
        "LABEL_STUDIO_USER_TOKEN": token,
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
        "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(files_root),
        "ML_BLOCK_LOCAL_IP": "false",  # else a backend on 127.x/10.x/172.16.x/192.168.x gets 403
        "SSRF_PROTECTION_ENABLED": "false",  # else the auto-created /webhook to it is refused
        "LATEST_VERSION_CHECK": "false",
        "COLLECT_ANALYTICS": "false",
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra or {})
    return env


def start_label_studio(data_dir: Path, files_root: Path, port: int, *, host: str = "127.0.0.1",
                       username: str = "admin@example.com", password: str | None = None, token: str | None = None,
                       extra_env: dict | None = None, timeout_s: float = 300.0) -> LabelStudioServer:
    """Start LS headless on host:port with its data in `data_dir`; returns once /health answers 200."""
    executable = find_label_studio()
    url = f"http://{host}:{port}"
    password = password or secrets.token_urlsafe(12)
    token = token or secrets.token_hex(20)
    data_dir.mkdir(parents=True, exist_ok=True)
    files_root.mkdir(parents=True, exist_ok=True)
    env = label_studio_env(data_dir, files_root, url, username, password, token, extra_env)
    args = [str(executable), "start", "--no-browser", "--host", url, "--internal-host", host, "--port", str(port)]
    process = ManagedProcess("Label Studio", args, env, data_dir / "label-studio.log", cwd=data_dir)
    process.wait_healthy(url, timeout_s)
    return LabelStudioServer(url, token, username, password, data_dir, files_root, process)


def start_backend(checkpoint: Path | str, vision_tower: Path | str, port: int, log_path: Path, *,
                  host: str = "127.0.0.1", env_overrides: dict | None = None,
                  timeout_s: float = 300.0) -> tuple[ManagedProcess, str]:
    """`python -m backend serve` on CPU/fp32; returns (process, url) once its /ready says the model is loaded."""
    args = [sys.executable, "-m", "backend", "serve", "--checkpoint", str(checkpoint),
            "--vision-tower", str(vision_tower), "--device", "cpu", "--dtype", "fp32",
            "--host", host, "--port", str(port)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env_overrides or {})}
    process = ManagedProcess("NExT-Chat backend", args, env, log_path, cwd=REPO_ROOT)
    url = f"http://{host}:{port}"
    process.wait_healthy(url, timeout_s, path="/ready")
    return process, url
