#!/usr/bin/env python
"""Screenshots of Label Studio tasks with the backend's predictions rendered (headless Chromium).

    .venv/bin/python scripts/screenshot.py [--out docs/screenshots] [--configs brush region_qa ...]

By default it starts its own Label Studio 1.23.2 (from .venv-ls) and backend (the toy model shipped in
weights/nextchat-toy, docs/toy-model.md; `--random`: a random tiny checkpoint, whose predictions are
meaningless but shaped right) on free loopback ports, creates one project per config with a toy-world
scene (three pages of different sizes for a valueList config; task
data from backend.dev.samples), retrieves predictions (for a config with nothing to pre-annotate, it draws a
box around the scene's first object through Label Studio's interactive endpoint and stores the answer),
then logs in with Chromium, opens each task (a
multi-image task on its second page, `--page`), selects its first predicted region and saves
docs/screenshots/<config>.png. Everything it started is stopped at the end.

Against a Label Studio that is already running:

    .venv/bin/python scripts/screenshot.py --url http://127.0.0.1:8080 --username U --password P \\
        --project 3 --task 5 --name my-task

Needs: Debian's chromium (`apt-get install -y chromium`) and the Python package `playwright`
(`.venv/bin/pip install playwright==1.65.2`; no browser download: it drives /usr/bin/chromium).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from backend.dev.demo import LABEL_CONFIG_DIR, TOY_CHECKPOINT, sample_scene  # noqa: E402
from backend.dev.harness import free_port, start_backend, start_label_studio  # noqa: E402
from backend.dev.samples import drawn_box, is_multi_image, sample_task_data  # noqa: E402

# the demo's main pre-annotation workflows: labels -> boxes + polygons, brush masks, a caption, a typed expression
DEFAULT_CONFIGS = ("boxes_polygons", "brush", "grounded_caption", "referring_prompt")
# as the machine notes say: without the background-networking flags Chromium keeps trying closed hosts
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]
REGION_SELECTOR = ".lsf-outliner-item"
# the multi-image pager's "next" arrow (Label Studio's Pagination: block__elem_mod class names)
NEXT_PAGE_SELECTOR = ".lsf-pagination__btn_arrow-right:not(.lsf-pagination__btn_arrow-right-double)"
PAGE_INDICATOR_SELECTOR = ".lsf-pagination__page-indicator"  # "2 of 3"
TEXT_INPUTS = {"prompt": "the red car", "question": "what is next to the red car?"}
PAGE_SIZES = ((640, 480), (480, 600), (560, 420))  # the pages of a multi-image task
PAGE_TIMEOUT_MS = 90_000  # --timeout


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "screenshots")
    parser.add_argument("--configs", nargs="+", default=list(DEFAULT_CONFIGS),
                        help="label_config/<name>.xml to shoot (own Label Studio mode)")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--random", action="store_true", help="a random tiny checkpoint instead of the toy model")
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for a page to render")
    parser.add_argument("--url", help="an existing Label Studio (then --username --password --project --task)")
    parser.add_argument("--username")
    parser.add_argument("--password")
    parser.add_argument("--project", type=int)
    parser.add_argument("--task", type=int)
    parser.add_argument("--name", default="task", help="file name (without .png) in existing-LS mode")
    parser.add_argument("--page", type=int, default=0, help="page (0-based) of a multi-image task, existing-LS mode")
    return parser.parse_args(argv)


def log_in(page, url: str, username: str, password: str) -> None:
    page.goto(f"{url}/user/login", wait_until="domcontentloaded")
    page.fill('input[name="email"]', username)
    page.fill('input[name="password"]', password)
    page.click('button[type="submit"]')
    page.wait_for_url(lambda current: "/user/login" not in current, timeout=PAGE_TIMEOUT_MS, wait_until="commit")


def shoot_task(page, url: str, project_id: int, task_id: int, out_path: Path, item_page: int = 0) -> int:
    """Open a task in the labeling UI, wait until its predicted regions are listed, turn a multi-image task
    to page `item_page` (0-based) with the image's own pager, select the first region listed (so its
    details show), save the screenshot; returns how many regions the UI lists."""
    page.goto(f"{url}/projects/{project_id}/data?task={task_id}", wait_until="domcontentloaded")
    page.wait_for_selector(REGION_SELECTOR, state="attached", timeout=PAGE_TIMEOUT_MS)
    wait_for_images(page)
    for _ in range(item_page):
        page.locator(NEXT_PAGE_SELECTOR).first.click()
        time.sleep(1)
        wait_for_images(page)
    regions = page.locator(REGION_SELECTOR)
    count = regions.count()
    select_region_on_page(page, regions, item_page)
    time.sleep(2)  # let the canvas redraw with the selection
    out_path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(out_path), timeout=PAGE_TIMEOUT_MS)
    return count


def select_region_on_page(page, regions, item_page: int) -> None:
    """Select the first listed region on page `item_page` (the outliner lists every page's regions, and
    selecting a region turns the image to its page)."""
    for index in range(regions.count()):
        regions.nth(index).click()
        if not item_page:
            return
        time.sleep(0.5)
        indicator = page.locator(PAGE_INDICATOR_SELECTOR).first.inner_text().split()
        if indicator and indicator[0] == str(item_page + 1):
            return
    raise SystemExit(f"error: no region listed on page {item_page + 1}")


def wait_for_images(page) -> None:
    page.wait_for_function(
        "() => [...document.querySelectorAll('img')].every(img => img.complete)", timeout=PAGE_TIMEOUT_MS)


def open_browser(playwright, chromium: str):
    if not Path(chromium).exists():
        raise SystemExit(f"error: no Chromium at {chromium}: apt-get install -y chromium")
    browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    return browser, page


def upload_urls(ls, images: list[Path]) -> list[str]:
    """The /data/upload/ URLs of these images, uploaded into a scratch project (Label Studio makes a task from
    an uploaded file only for configs with one data key, so the config's own tasks are imported)."""
    scratch = ls.create_project("uploads", '<View><Image name="image" value="$image"/></View>')
    ids = ls.upload_files(scratch["id"], images)
    data = {task["id"]: task["data"]["image"] for task in ls.list_tasks(scratch["id"])}
    return [data[task_id] for task_id in ids]


def make_projects(ls, configs: list[str], backend_url: str, work: Path) -> list[tuple[str, int, int, int]]:
    """One project per config with one task of uploaded image(s) and the backend's prediction;
    (name, project, task, page to show)."""
    shots = []
    for index, name in enumerate(configs):
        xml = (LABEL_CONFIG_DIR / f"{name}.xml").read_text()
        sizes = PAGE_SIZES if is_multi_image(xml) else PAGE_SIZES[:1]
        scenes = [sample_scene(size, index + page) for page, size in enumerate(sizes)]
        images = [work / f"{name}-{page}.png" for page in range(len(scenes))]
        for scene, path in zip(scenes, images):
            scene.image.save(path)
        project = ls.create_project(f"NExT-Chat: {name}", xml)
        (task_id,) = ls.import_tasks(project["id"], [sample_task_data(xml, upload_urls(ls, images), TEXT_INPUTS)])
        ml_backend = ls.connect_ml_backend(project["id"], backend_url, title="NExT-Chat")
        ls.retrieve_predictions(project["id"])
        stored = ls.list_predictions(task_id=task_id)
        if (not stored or not stored[0]["result"]) and not is_multi_image(xml):
            stored = store_drawn_box_answer(ls, project["id"], ml_backend["id"], task_id, xml, scenes[0])
        if not stored or not stored[0]["result"]:
            raise SystemExit(f"error: no prediction stored for {name}; see the backend log in {work}")
        shots.append((name, project["id"], task_id, 1 if len(sizes) > 1 else 0))
    return shots


def store_drawn_box_answer(ls, project_id: int, ml_backend_id: int, task_id: int, xml: str, scene) -> list[dict]:
    """For a config with nothing to pre-annotate (preannotate="false"): draw a box around the scene's first
    object with the first rectangle control (labelled with the object's category when the control has that
    label, else its first label), as the smart tool would; ask Label Studio's interactive endpoint; store
    the backend's answer (the box, its outline, its description) as the task's prediction. Returns the task's
    stored predictions that hold results."""
    from backend.studio.labeling import parse_label_config

    controls = [c for t in parse_label_config(xml).targets for c in t.region_controls if c.kind == "rectanglelabels"]
    if not controls or not scene.objects:
        return []
    obj, control = scene.objects[0], controls[0]
    label = (control.label(obj.category) or control.labels[0]).value
    drawn = drawn_box("drawnbox01", control.name, control.to_name, obj.box, scene.width, scene.height, label)
    answer = ls.interactive_annotating(ml_backend_id, task_id, {"result": [drawn]}).get("data", {})
    if not answer.get("result"):
        return []
    ls.import_predictions(project_id, [{"task": task_id, "result": answer["result"],
                                        "score": answer.get("score"), "model_version": answer.get("model_version")}])
    return [p for p in ls.list_predictions(task_id=task_id) if p["result"]]


def backend_checkpoint(random_weights: bool, work: Path) -> Path:
    """The shipped toy model, or (``random_weights``) a random tiny checkpoint written into ``work``."""
    if not random_weights:
        return TOY_CHECKPOINT
    checkpoint = work / "checkpoint"
    subprocess.run([sys.executable, "-m", "model.random_checkpoint", "--size", "tiny", "--out", str(checkpoint)],
                   cwd=REPO_ROOT, check=True, capture_output=True)
    return checkpoint


def own_label_studio(args: argparse.Namespace, sync_playwright) -> int:
    with tempfile.TemporaryDirectory(prefix="nextchat-screenshot-") as tmp:
        work = Path(tmp)
        checkpoint = backend_checkpoint(args.random, work)
        server = start_label_studio(work / "ls-data", work / "files", free_port(), username="shots@example.com")
        backend = None
        try:
            backend, backend_url = start_backend(
                checkpoint, checkpoint / "vision_tower", free_port(), work / "backend.log",
                env_overrides={"LABEL_STUDIO_URL": server.url, "LABEL_STUDIO_API_KEY": server.api_key})
            shots = make_projects(server.client(), args.configs, backend_url, work)
            with sync_playwright() as playwright:
                browser, page = open_browser(playwright, args.chromium)
                log_in(page, server.url, server.username, server.password)
                failures = 0
                for name, project_id, task_id, item_page in shots:
                    failures += not shoot_and_report(page, server.url, project_id, task_id, args.out / f"{name}.png",
                                                     item_page)
                browser.close()
        finally:
            if backend is not None:
                backend.stop()
            server.stop()
    return 1 if failures else 0


def shoot_and_report(page, url: str, project_id: int, task_id: int, out_path: Path, item_page: int = 0) -> bool:
    from playwright.sync_api import Error as PlaywrightError

    try:
        count = shoot_task(page, url, project_id, task_id, out_path, item_page)
    except PlaywrightError as error:
        print(f"{out_path}: FAILED: {str(error).splitlines()[0]}", file=sys.stderr)
        return False
    print(f"{out_path}: {count} regions listed")
    return True


def existing_label_studio(args: argparse.Namespace, sync_playwright) -> int:
    missing = [flag for flag in ("username", "password", "project", "task") if getattr(args, flag) is None]
    if missing:
        raise SystemExit(f"error: with --url also pass {', '.join('--' + m for m in missing)}")
    with sync_playwright() as playwright:
        browser, page = open_browser(playwright, args.chromium)
        log_in(page, args.url.rstrip("/"), args.username, args.password)
        shot = shoot_and_report(page, args.url.rstrip("/"), args.project, args.task, args.out / f"{args.name}.png",
                                args.page)
        browser.close()
    return 0 if shot else 1


def main(argv: list[str] | None = None) -> int:
    global PAGE_TIMEOUT_MS
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    PAGE_TIMEOUT_MS = int(args.timeout * 1000)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise SystemExit("error: `.venv/bin/pip install playwright` first (it uses Debian's chromium)") from None
    if args.url:
        return existing_label_studio(args, sync_playwright)
    return own_label_studio(args, sync_playwright)


if __name__ == "__main__":
    sys.exit(main())
