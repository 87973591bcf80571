#!/usr/bin/env python
"""Browser check of clicks that make and fix masks: label_config/click_to_mask.xml in a real Label Studio.

    .venv/bin/python scripts/click_check.py [--out docs/screenshots/click_to_mask.png]

Starts its own Label Studio 1.23.2 and backend (the shipped toy model, weights/nextchat-toy, whose SAM
learnt from box prompts only, so clicks are its weakest prompt; `--random`: a random tiny checkpoint, whose
masks are meaningless but shaped right) on free loopback ports, creates a click_to_mask.xml project with one
uploaded image, then in headless Chromium: picks the label, clicks on the image with the smart key point tool,
Alt+clicks beside it, waits for the returned mask to be rendered as a suggestion, saves the screenshot, accepts the
suggestion (✓) and reads the saved draft back. It prints each context the browser sent to
/interactive-annotating (what the backend reads: is_positive, value.labels) and exits 1 when a step fails.
Everything it started is stopped at the end.

Needs what scripts/screenshot.py needs: Debian's chromium and the Python package `playwright`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "scripts"))

from screenshot import backend_checkpoint, log_in, open_browser  # noqa: E402

from backend.dev.demo import LABEL_CONFIG_DIR, draw_sample_image  # noqa: E402 - after the sys.path lines above
from backend.dev.harness import free_port, start_backend, start_label_studio  # noqa: E402

TIMEOUT_MS = 120_000
LABEL = "object"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "screenshots" / "click_to_mask.png")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--steps", type=Path, help="also save a screenshot of every step in this folder")
    parser.add_argument("--random", action="store_true", help="a random tiny checkpoint instead of the toy model")
    return parser.parse_args(argv)


class Check:
    """The browser side: every interactive call it posts, and the steps it passed."""

    def __init__(self, page, steps: Path | None):
        self.page, self.steps, self.contexts, self.replies = page, steps, [], []
        page.on("request", self._on_request)
        page.on("response", self._on_response)

    def _on_request(self, request):
        if "interactive-annotating" in request.url:
            self.contexts.append(json.loads(request.post_data or "{}").get("context"))

    def _on_response(self, response):
        if "interactive-annotating" in response.url:
            try:
                self.replies.append(response.json())
            except Exception:  # noqa: BLE001 - a reply that is not JSON is reported as such
                self.replies.append({"not json": response.status})

    def shot(self, name: str) -> None:
        if self.steps is not None:
            self.steps.mkdir(parents=True, exist_ok=True)
            self.page.screenshot(path=str(self.steps / f"{name}.png"))

    def wait_for_calls(self, count: int) -> None:
        give_up = time.monotonic() + TIMEOUT_MS / 1000
        while len(self.replies) < count and time.monotonic() < give_up:
            self.page.wait_for_timeout(250)
        if len(self.replies) < count:
            raise RuntimeError(f"{count} interactive calls expected, {len(self.replies)} answered")


def image_box(page) -> dict:
    """Where the task image is on the page (the labeling canvas lies over it)."""
    page.wait_for_function("() => [...document.querySelectorAll('img')].some(img => img.complete && "
                           "img.naturalWidth === 640)", timeout=TIMEOUT_MS)
    handle = page.evaluate_handle("() => [...document.querySelectorAll('img')].filter(img => img.naturalWidth === 640)"
                                  ".sort((a, b) => b.clientWidth - a.clientWidth)[0]")  # not the list's thumbnail
    return handle.as_element().bounding_box()


def click_at(page, box: dict, fx: float, fy: float, negative: bool = False) -> None:
    x, y = box["x"] + fx * box["width"], box["y"] + fy * box["height"]
    page.mouse.move(x, y)
    if negative:
        page.keyboard.down("Alt")
    page.mouse.click(x, y)
    if negative:
        page.keyboard.up("Alt")


def run_in_browser(page, check: Check, url: str, project_id: int, task_id: int, out: Path, read_draft) -> list[str]:
    """The clicks, the screenshot, the acceptance, a click that fixes the accepted mask; returns the problems
    found (none: passed). ``read_draft()``: the task's saved draft results."""
    page.goto(f"{url}/projects/{project_id}/data?task={task_id}", wait_until="domcontentloaded")
    image_box(page)
    page.wait_for_timeout(1500)
    page.get_by_text("Auto-Annotation", exact=True).click()  # smart tools show only with it on
    page.locator(".lsf-label", has_text=LABEL).first.click()  # the KeyPointLabels label comes first
    page.locator(".lsf-toolbar__group").last.locator(".lsf-tool").first.click()  # the smart tools' group
    check.shot("1-label")
    box = image_box(page)
    print(f"image on the page at {box}")
    click_at(page, box, 0.45, 0.5)
    page.wait_for_timeout(500)
    check.shot("1b-clicked")
    check.wait_for_calls(1)
    # Label Studio drops the label selection after each new region unless "Keep label selected after creating
    # a region" is on (editor settings): pick it again, as an annotator does with its hotkey
    page.locator(".lsf-label", has_text=LABEL).first.click()
    click_at(page, box, 0.6, 0.55, negative=True)
    check.wait_for_calls(2)
    page.wait_for_timeout(3000)  # the brush suggestion is drawn on the canvas
    check.shot("2-suggested")
    out.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(out))
    problems = context_problems(check.contexts)
    reply = check.replies[-1].get("data", {}).get("result", []) if check.replies else []
    if not any(item.get("type") == "brushlabels" for item in reply):
        problems.append(f"the last reply holds no brush mask: {[item.get('type') for item in reply]}")
    accept = page.locator("[data-testid='bottombar-accept-suggestions-button']")
    if not accept.count():
        return problems + ["no accept button for the suggestions"]
    accept.first.click()
    page.wait_for_timeout(1500)
    check.shot("3-accepted")
    return problems + fix_the_accepted_mask(page, check, read_draft)


def fix_the_accepted_mask(page, check: Check, read_draft) -> list[str]:
    """Click on the mask accepted above (read from the draft the editor saves): the answer must come under the
    mask's id, so that accepting it replaces the mask."""
    from backend.studio.geometry import brush_rle_to_mask

    draft = []
    for _ in range(40):  # the editor saves a draft a few seconds after a change
        draft = read_draft()
        if any(item.get("type") == "brushlabels" for item in draft):
            break
        page.wait_for_timeout(500)
    masks = [item for item in draft if item.get("type") == "brushlabels"]
    if len(masks) != 1 or any(item.get("type") == "keypointlabels" for item in draft):
        return [f"after ✓ the draft holds {[item.get('type') for item in draft]}, expected one brush mask"]
    rows, columns = np.nonzero(brush_rle_to_mask(masks[0]["value"]["rle"], 640, 480))
    middle = len(rows) // 2
    box = image_box(page)
    spot = ((columns[middle] + 0.5) / 640, (rows[middle] + 0.5) / 480)
    # a click on a region selects it instead of placing a key point: hide the regions (Ctrl+H) first
    page.locator(".lsf-label", has_text=LABEL).first.click()
    page.mouse.move(box["x"] + spot[0] * box["width"], box["y"] + spot[1] * box["height"])
    page.keyboard.press("Control+h")
    page.wait_for_timeout(500)
    check.shot("4-hidden")
    calls = len(check.replies)
    click_at(page, box, *spot)
    check.wait_for_calls(calls + 1)
    page.wait_for_timeout(2000)
    check.shot("4-fix-suggested")
    reply = check.replies[-1].get("data", {}).get("result", [])
    ids = [item.get("id") for item in reply if item.get("type") == "brushlabels"]
    print(f"fix: accepted mask {masks[0]['id']}, answer {ids}")
    if ids != [masks[0]["id"]]:
        return [f"the fix came back as {ids}, not under {masks[0]['id']}"]
    page.keyboard.press("Control+h")  # the regions visible again
    page.locator("[data-testid='bottombar-accept-suggestions-button']").first.click()
    changed = masks[0]["value"]["rle"]
    for _ in range(40):  # accepting replaces the mask: still one, with the new pixels, once the draft is saved
        draft = read_draft()
        now = [item for item in draft if item.get("type") == "brushlabels"]
        if len(now) != 1 or now[0]["value"]["rle"] != changed:
            break
        page.wait_for_timeout(500)
    check.shot("5-fix-accepted")
    kinds = [(item.get("type"), item.get("id")) for item in draft]
    replaced = len(now) == 1 and now[0]["value"]["rle"] != changed
    print(f"after accepting the fix the draft holds {kinds}; the mask's pixels changed: {replaced}")
    if kinds != [("brushlabels", masks[0]["id"])] or not replaced:
        return [f"after the fix the draft holds {kinds} (pixels changed: {replaced}), expected the mask replaced"]
    return []


def context_problems(contexts: list) -> list[str]:
    """The contexts the browser sent must be the ones backend/predict/clicks.py reads."""
    problems = []
    if len(contexts) < 2:
        return [f"{len(contexts)} contexts sent, 2 expected"]
    first, second = (context.get("result", []) for context in contexts[:2])
    flags = [[item.get("is_positive") for item in result if item.get("type") == "keypointlabels"]
             for result in (first, second)]
    if flags != [[True], [True, False]]:
        problems.append(f"is_positive per context: {flags}, expected [[True], [True, False]]")
    if not all(item.get("value", {}).get("keypointlabels") == [LABEL] for item in second):
        problems.append(f"labels: {[item.get('value') for item in second]}")
    return problems


def latest_draft(ls, task_id: int) -> list[dict]:
    drafts = ls.request_json("GET", f"/api/tasks/{task_id}").get("drafts") or []
    return max(drafts, key=lambda draft: draft.get("updated_at") or "")["result"] if drafts else []


def main(argv: list[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise SystemExit("error: `.venv/bin/pip install playwright` first (it uses Debian's chromium)") from None
    with tempfile.TemporaryDirectory(prefix="nextchat-clicks-") as tmp:
        work = Path(tmp)
        checkpoint = backend_checkpoint(args.random, work)
        server = start_label_studio(work / "ls-data", work / "files", free_port(), username="clicks@example.com")
        backend = None
        try:
            backend, backend_url = start_backend(
                checkpoint, checkpoint / "vision_tower", free_port(), work / "backend.log",
                env_overrides={"LABEL_STUDIO_URL": server.url, "LABEL_STUDIO_API_KEY": server.api_key})
            ls = server.client()
            config = (LABEL_CONFIG_DIR / "click_to_mask.xml").read_text()
            project = ls.create_project("NExT-Chat: click to mask", config)
            (task_id,) = ls.upload_files(project["id"], [draw_sample_image(work / "clicks.png", (640, 480), seed=3)])
            ls.connect_ml_backend(project["id"], backend_url,
                                  title="NExT-Chat (random tiny weights)" if args.random else "NExT-Chat (toy model)")
            # no pre-annotation on opening the task: only what the clicks ask for
            ls.request_json("PATCH", f"/api/projects/{project['id']}",
                            json={"show_collab_predictions": False, "evaluate_predictions_automatically": False})
            with sync_playwright() as playwright:
                browser, page = open_browser(playwright, args.chromium)
                page.set_default_timeout(TIMEOUT_MS)
                log_in(page, server.url, server.username, server.password)
                check = Check(page, args.steps)
                try:
                    problems = run_in_browser(page, check, server.url, project["id"], task_id, args.out,
                                              lambda: latest_draft(ls, task_id))
                except Exception as error:  # noqa: BLE001 - reported as the check's failure
                    check.shot("failed")
                    if args.steps is not None:
                        (args.steps / "failed.html").write_text(page.content())
                    problems = [f"{type(error).__name__}: {str(error).splitlines()[0]}"]
                browser.close()
            for index, context in enumerate(check.contexts):
                print(f"context {index}: {json.dumps(context)}")
            print(f"draft at the end: {[item['type'] for item in latest_draft(ls, task_id)]}")
        finally:
            if backend is not None:
                print(backend.log_tail(15))
                backend.stop()
            server.stop()
    for problem in problems:
        print(f"FAILED: {problem}", file=sys.stderr)
    print(f"{args.out}: {'FAILED' if problems else 'passed'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
