"""`python -m backend demo`: Label Studio 1.23.2 and this backend on loopback, with sample projects.

    python -m backend demo [--workdir runs/demo] [--ls-port 8080] [--backend-port 9090]
                           [--checkpoint DIR --vision-tower DIR]

Starts Label Studio from its own venv (.venv-ls, made by scripts/install_label_studio.sh) as a
separate process, and `python -m backend serve` with a tiny *random* checkpoint (made once by
`python -m model.random_checkpoint --size tiny`). Creates one project per config in label_config/
with generated images (local files and uploads), connects the backend, retrieves predictions, and
prints the URL and login. Ctrl-C stops both. The process helpers here are also used by the
end-to-end test fixtures (tests/ls_fixture.py).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from backend.ls_api import LabelStudioClient, LabelStudioError, wait_for_health

REPO_ROOT = Path(__file__).resolve().parents[1]
LABEL_CONFIG_DIR = REPO_ROOT / "label_config"
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

    def wait_healthy(self, url: str, timeout_s: float) -> None:
        try:
            wait_for_health(url, timeout_s, self.popen)
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
    """`python -m backend serve` on CPU/fp32; returns (process, url) once its /health says the model is ready."""
    args = [sys.executable, "-m", "backend", "serve", "--checkpoint", str(checkpoint),
            "--vision-tower", str(vision_tower), "--device", "cpu", "--dtype", "fp32",
            "--host", host, "--port", str(port)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env_overrides or {})}
    process = ManagedProcess("NExT-Chat backend", args, env, log_path, cwd=REPO_ROOT)
    url = f"http://{host}:{port}"
    process.wait_healthy(url, timeout_s)
    return process, url


# ---- sample data -------------------------------------------------------------------------------
SAMPLE_SIZES = ((640, 480), (480, 360), (360, 480))


def draw_sample_image(path: Path, size: tuple[int, int], seed: int) -> Path:
    """A simple street-like scene (sky, road, a 'car', a 'person', a 'dog') so regions have something to sit on."""
    import random

    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    width, height = size
    image = Image.new("RGB", size, (135, 190, 235))
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, int(height * 0.65), width, height], fill=(90, 90, 95))
    car_x = rng.randint(0, width // 2)
    car_y = int(height * 0.55)
    draw.rectangle([car_x, car_y, car_x + width // 3, car_y + height // 8], fill=(200, 30, 40))
    for wheel_x in (car_x + width // 15, car_x + width // 4):
        draw.ellipse([wheel_x - 12, car_y + height // 9, wheel_x + 12, car_y + height // 9 + 24], fill=(20, 20, 20))
    person_x = rng.randint(width // 2, width - 40)
    draw.ellipse([person_x, int(height * 0.30), person_x + 30, int(height * 0.30) + 30], fill=(240, 200, 160))
    draw.rectangle([person_x + 5, int(height * 0.30) + 30, person_x + 25, int(height * 0.62)], fill=(30, 60, 160))
    dog_x = rng.randint(10, width - 90)
    draw.ellipse([dog_x, int(height * 0.72), dog_x + 80, int(height * 0.72) + 40], fill=(140, 90, 40))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def make_sample_images(folder: Path, count: int = 3, prefix: str = "sample") -> list[Path]:
    return [
        draw_sample_image(folder / f"{prefix}-{index}.png", SAMPLE_SIZES[index % len(SAMPLE_SIZES)], seed=index)
        for index in range(count)
    ]


def local_files_url(path: Path, files_root: Path) -> str:
    """The task URL of a file under LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT."""
    return "/data/local-files/?d=" + path.resolve().relative_to(files_root.resolve()).as_posix()


# Stored with the local-files task, so configs with a prompt / question TextArea have something to answer
# before anyone types (the keys are the TextAreas' names in label_config/).
SAMPLE_TEXT = {"prompt": "the red car", "question": "What is next to the red car?"}


def create_demo_projects(ls: LabelStudioClient, backend_url: str, files_root: Path, upload_dir: Path) -> list[dict]:
    """One project per label_config/*.xml: a local-files task and an uploaded task each, backend connected."""
    local_images = make_sample_images(files_root / "images", count=1, prefix="local")
    uploads = make_sample_images(upload_dir, count=2, prefix="upload")[1:]
    projects = []
    for config_path in sorted(LABEL_CONFIG_DIR.glob("*.xml")):
        project = ls.create_project(f"NExT-Chat demo: {config_path.stem}", config_path.read_text())
        ls.add_local_files_storage(project["id"], files_root / "images")
        ls.import_tasks(project["id"], [{"image": local_files_url(path, files_root), **SAMPLE_TEXT}
                                        for path in local_images])
        ls.upload_files(project["id"], uploads)
        ls.connect_ml_backend(project["id"], backend_url, title="NExT-Chat (random demo weights)")
        ls.retrieve_predictions(project["id"])
        projects.append(project)
        print(f"  project {project['id']}: {config_path.stem}", flush=True)
    return projects


def reconnect_projects(ls: LabelStudioClient, projects: list[dict], backend_url: str) -> None:
    for project in projects:
        for ml_backend in ls.list_ml_backends(project["id"]):
            if ml_backend["url"] != backend_url:
                ls.update_ml_backend(ml_backend, url=backend_url)
    print(f"  reusing {len(projects)} projects from an earlier run", flush=True)


# ---- the command ---------------------------------------------------------------------------------
def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m backend demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=REPO_ROOT / "runs" / "demo",
                        help="Label Studio data, images, checkpoint and logs (kept between runs)")
    parser.add_argument("--ls-port", type=int, default=8080, help="Label Studio port on 127.0.0.1 (0: any free)")
    parser.add_argument("--backend-port", type=int, default=9090, help="backend port on 127.0.0.1 (0: any free)")
    parser.add_argument("--checkpoint", type=Path, help="NExT-Chat checkpoint (default: a random tiny one)")
    parser.add_argument("--vision-tower", type=Path, help="CLIP vision tower (default: CHECKPOINT/vision_tower)")
    return parser.parse_args(argv)


def pick_port(requested: int, what: str) -> int:
    if requested == 0:
        return free_port()
    if not port_is_free("127.0.0.1", requested):
        raise SystemExit(f"error: port {requested} for {what} is in use; pass another with --{what}-port (0: any)")
    return requested


def ensure_checkpoint(args: argparse.Namespace) -> tuple[Path, Path]:
    if args.checkpoint:
        return args.checkpoint, args.vision_tower or args.checkpoint / "vision_tower"
    checkpoint = args.workdir / "random-tiny-checkpoint"
    if not (checkpoint / "config.json").is_file():
        print(f"making a random tiny checkpoint in {checkpoint} ...", flush=True)
        subprocess.run([sys.executable, "-m", "model.random_checkpoint", "--size", "tiny", "--out", str(checkpoint)],
                       cwd=REPO_ROOT, check=True)
    return checkpoint, checkpoint / "vision_tower"


def load_login(workdir: Path) -> dict:
    """The demo user's login, kept in workdir so a second run can reuse Label Studio's data."""
    login_file = workdir / "login.json"
    if login_file.is_file():
        return json.loads(login_file.read_text())
    login = {"username": "demo@example.com", "password": secrets.token_urlsafe(9), "token": secrets.token_hex(20)}
    workdir.mkdir(parents=True, exist_ok=True)
    login_file.write_text(json.dumps(login))
    login_file.chmod(0o600)
    return login


def print_banner(server: LabelStudioServer, backend_url: str, first_project: dict) -> None:
    where = f"{server.url}/projects/{first_project['id']}/data"
    print(f"""
Label Studio {LABEL_STUDIO_VERSION}: {where}
  login:    {server.username}
  password: {server.password}
NExT-Chat backend: {backend_url} (connected to every demo project)

NOTE: the backend runs a tiny RANDOM checkpoint. Its predictions are MEANINGLESS: they only show
that boxes, polygons, masks and descriptions flow into Label Studio in the right shape. For real
predictions run `python -m backend serve --checkpoint AoZhang/nextchat-7b-336 ...` (docs/deploy.md).

Press Ctrl-C to stop Label Studio and the backend.""", flush=True)


def stop_on_signals() -> None:
    """Ctrl-C and SIGTERM both end the demo through its `finally` (which stops LS and the backend);
    SIGINT is re-armed because a shell's background job starts with it ignored."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, interrupt)


def run_demo(args: argparse.Namespace) -> int:
    find_label_studio()
    stop_on_signals()
    ls_port, backend_port = pick_port(args.ls_port, "ls"), pick_port(args.backend_port, "backend")
    checkpoint, vision_tower = ensure_checkpoint(args)
    login = load_login(args.workdir)
    files_root = args.workdir / "files"
    print(f"starting Label Studio on 127.0.0.1:{ls_port} (first start takes about a minute) ...", flush=True)
    server = start_label_studio(args.workdir / "label-studio-data", files_root, ls_port,
                                username=login["username"], password=login["password"], token=login["token"])
    backend = None
    try:
        print(f"starting the backend on 127.0.0.1:{backend_port} ...", flush=True)
        backend, backend_url = start_backend(
            checkpoint, vision_tower, backend_port, args.workdir / "backend.log",
            env_overrides={"LABEL_STUDIO_URL": server.url, "LABEL_STUDIO_API_KEY": server.api_key},
        )
        ls = server.client()
        projects = sorted(ls.list_projects(), key=lambda project: project["id"])
        if projects:  # a second run on the same workdir: point the projects at this run's backend
            reconnect_projects(ls, projects, backend_url)
        else:
            projects = create_demo_projects(ls, backend_url, files_root, args.workdir / "uploads")
        print_banner(server, backend_url, projects[0])
        while server.process.alive() and backend.alive():
            time.sleep(1)
        print("a process exited; see the logs in", args.workdir, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
        return 0
    finally:
        if backend is not None:
            backend.stop()
        server.stop()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        return run_demo(args)
    except (LabelStudioNotInstalled, LabelStudioError, subprocess.CalledProcessError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
