"""`python -m backend demo`: Label Studio 1.23.2 and this backend on loopback, with sample projects.

    python -m backend demo [--workdir runs/demo] [--ls-port 8080] [--backend-port 9090]
                           [--checkpoint DIR --vision-tower DIR | --random]

Starts Label Studio from its own venv (.venv-ls, made by scripts/install_label_studio.sh) as a
separate process, and `python -m backend serve` with the toy NExT-Chat shipped in weights/nextchat-toy
(docs/toy-model.md; `--random`: a tiny random checkpoint instead). Creates one project per config in
label_config/ with toy-world scenes the toy model never saw (local files and uploads; task data from
backend.dev.samples: a list of pages for a valueList config, per-task labels for a dynamic-labels one),
connects the backend, retrieves predictions, and prints the URL and login. Ctrl-C stops both. The process
helpers are in backend.dev.harness.
"""

from __future__ import annotations

import argparse
import json
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from backend.dev.harness import (
    LABEL_STUDIO_VERSION,
    REPO_ROOT,
    LabelStudioNotInstalled,
    LabelStudioServer,
    find_label_studio,
    free_port,
    port_is_free,
    start_backend,
    start_label_studio,
)
from backend.dev.samples import accepts_file_upload, is_multi_image, sample_task_data
from backend.studio.client import LabelStudioClient, LabelStudioError

LABEL_CONFIG_DIR = REPO_ROOT / "label_config"
TOY_CHECKPOINT = REPO_ROOT / "weights" / "nextchat-toy"


# ---- sample data -------------------------------------------------------------------------------
SAMPLE_SIZES = ((640, 480), (480, 360), (360, 480))
# Toy-world scenes of a seed the toy model never trained on (training: seed 0, stage 3: seed 1).
DEMO_SEED = 2026


def sample_scene(size: tuple[int, int], seed: int):
    """Toy-world scene ``seed`` of DEMO_SEED drawn at ``size`` (model.toy_world): the image and its truth."""
    from model.toy_world import draw_scene, scene_layout

    width, height = size
    return draw_scene(scene_layout(DEMO_SEED, seed), width, height)


def draw_sample_image(path: Path, size: tuple[int, int], seed: int) -> Path:
    """A toy-world street scene (cars, people, dogs, trees, ...) at ``size``, saved as ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sample_scene(size, seed).image.save(path)
    return path


def make_sample_images(folder: Path, count: int = 3, prefix: str = "sample") -> list[Path]:
    return [
        draw_sample_image(folder / f"{prefix}-{index}.png", SAMPLE_SIZES[index % len(SAMPLE_SIZES)], seed=index)
        for index in range(count)
    ]


def local_files_url(path: Path, files_root: Path) -> str:
    """The task URL of a file under LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT."""
    return "/data/local-files/?d=" + path.resolve().relative_to(files_root.resolve()).as_posix()


def create_demo_projects(ls: LabelStudioClient, backend_url: str, files_root: Path, upload_dir: Path) -> list[dict]:
    """One project per label_config/*.xml: a local-files task and an uploaded task each (a valueList config:
    one task of three local pages; a config that reads more than one data key: no upload, which Label
    Studio refuses there), backend connected. The local task's data comes from sample_task_data:
    a sample prompt / question / label list where the config reads one."""
    local_images = make_sample_images(files_root / "images", count=3, prefix="local")
    local_urls = [local_files_url(path, files_root) for path in local_images]
    uploads = make_sample_images(upload_dir, count=2, prefix="upload")[1:]
    projects = []
    for config_path in sorted(LABEL_CONFIG_DIR.glob("*.xml")):
        xml = config_path.read_text()
        project = ls.create_project(f"NExT-Chat demo: {config_path.stem}", xml)
        ls.add_local_files_storage(project["id"], files_root / "images")
        multi = is_multi_image(xml)
        ls.import_tasks(project["id"], [sample_task_data(xml, local_urls if multi else local_urls[:1])])
        if not multi and accepts_file_upload(xml):
            ls.upload_files(project["id"], uploads)
        ls.connect_ml_backend(project["id"], backend_url, title="NExT-Chat (demo weights)")
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
    parser.add_argument("--checkpoint", type=Path,
                        help="NExT-Chat checkpoint (default: the toy model shipped in weights/nextchat-toy)")
    parser.add_argument("--random", action="store_true",
                        help="use a tiny random checkpoint instead (meaningless predictions, for wiring checks)")
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
    if not args.random:
        return TOY_CHECKPOINT, TOY_CHECKPOINT / "vision_tower"
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


TOY_NOTE = """the toy NExT-Chat (weights/nextchat-toy, docs/toy-model.md): the release's
architecture at 2M parameters, trained by this project on toy-world scenes (cars, people, dogs, trees,
traffic lights, puddles, balls). The demo's images are toy-world scenes it never saw; on other images
its answers mean little."""
RANDOM_NOTE = """a tiny RANDOM checkpoint (--random). Its predictions are MEANINGLESS: they only show
that boxes, polygons, masks and descriptions flow into Label Studio in the right shape."""


def print_banner(server: LabelStudioServer, backend_url: str, first_project: dict, backend_log: Path,
                 model_note: str = TOY_NOTE) -> None:
    where = f"{server.url}/projects/{first_project['id']}/data"
    print(f"""
Label Studio {LABEL_STUDIO_VERSION}: {where}
  login:    {server.username}
  password: {server.password}
NExT-Chat backend: {backend_url} (connected to every demo project)
  its log:  {backend_log}   (why a prediction is empty is written there)

For `python -m backend export --from-project ID` and `python -m backend batch --from-project ID`
in another shell:
  export LABEL_STUDIO_URL={server.url}
  export LABEL_STUDIO_API_KEY={server.api_key}

NOTE: the backend runs {model_note}
For the released model run `python -m backend serve --checkpoint AoZhang/nextchat-7b-336 ...` (docs/deploy.md).

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
        backend_log = args.workdir / "backend.log"
        backend, backend_url = start_backend(
            checkpoint, vision_tower, backend_port, backend_log,
            env_overrides={"LABEL_STUDIO_URL": server.url, "LABEL_STUDIO_API_KEY": server.api_key},
        )
        ls = server.client()
        projects = sorted(ls.list_projects(), key=lambda project: project["id"])
        if projects:  # a second run on the same workdir: point the projects at this run's backend
            reconnect_projects(ls, projects, backend_url)
        else:
            projects = create_demo_projects(ls, backend_url, files_root, args.workdir / "uploads")
        print_banner(server, backend_url, projects[0], backend_log.resolve(), RANDOM_NOTE if args.random else TOY_NOTE)
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
