"""Hardening: a checklist of hostile and broken input, row by row (the row numbers below), plus overload, auth,
secrets and a load test.

Every test ends with `assert_alive`: the app still answers /health within 1 s. Rows covered elsewhere:
4 (special tokens) and 16 (parallel requests) and 20 (one broken task in five) in test_predictor.py,
6/8/9 at the fetcher level in test_images.py, 15 (loading / failed model) in test_app.py.
Rows 10 (malicious pickles, checksums) and 17 (content-keyed caches) belong to model/, which loads the
weights and owns the image cache; here we check that no request can choose weights.
"""

from __future__ import annotations

import base64
import concurrent.futures
import gc
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import tracemalloc

import pytest
import torch

from tests.backend.fakes import (
    FakeNextChat,
    ImageServer,
    data_uri,
    drawn_box_context,
    label_config,
    ls_task,
    make_app,
    png_bytes,
    predict_body,
    send_bytes,
    send_nothing_for,
    setup_body,
    textarea_context,
)

BOXES = label_config("boxes_polygons.xml")
DESCRIBE = label_config("region_descriptions.xml")
GOOD = data_uri(png_bytes(64, 48))


def assert_alive(client):
    started = time.monotonic()
    reply = client.get("/health")
    assert reply.status_code == 200 and time.monotonic() - started < 1.0


def assert_visible_refusal(reply, fragment: str, shapes_allowed: int = 0) -> list[str]:
    """An interactive refusal: 200, the reason as a marked message line, no shape but the drawn box's echo."""
    from backend.studio.results.textarea import MESSAGE_PREFIX

    assert reply.status_code == 200, reply.get_data(as_text=True)
    results = reply.get_json()["results"][0]["result"]
    messages = [text for item in results if item["type"] == "textarea" for text in item["value"]["text"]
                if text.startswith(MESSAGE_PREFIX)]
    assert len([item for item in results if item["type"] != "textarea"]) <= shapes_allowed
    assert all("\n" not in text and "Traceback" not in text for text in messages)
    assert not fragment or any(fragment in text for text in messages), messages
    return messages


def assert_one_line_error(reply, status: int, fragment: str = ""):
    assert reply.status_code == status, reply.get_data(as_text=True)
    body = reply.get_json()
    assert set(body) == {"error"} and "\n" not in body["error"] and "Traceback" not in body["error"]
    assert fragment in body["error"]


# ----------------------------------------------------------------------------- row 1: body size
def test_body_over_the_cap_is_413():
    client = make_app(max_request_bytes=10_000).test_client()
    body = json.dumps(predict_body([ls_task(1, "x" * 20_000)], BOXES))
    assert_one_line_error(client.post("/predict", data=body, content_type="application/json"), 413, "MAX_REQUEST")
    assert_alive(client)


def streamed_post(client, body: bytes):
    """POST with no Content-Length, the stream delimited by the server (as for a chunked body)."""
    import io

    from werkzeug.test import EnvironBuilder

    environ = EnvironBuilder(path="/predict", method="POST", content_type="application/json").get_environ()
    environ.pop("CONTENT_LENGTH", None)
    environ.update({"wsgi.input": io.BytesIO(body), "wsgi.input_terminated": True})
    return client.open(environ)


def test_chunked_body_over_the_cap_is_413_without_content_length():
    client = make_app(max_request_bytes=10_000).test_client()
    assert_one_line_error(streamed_post(client, b"{" + b" " * 50_000 + b"}"), 413, "MAX_REQUEST_BYTES")
    small = json.dumps(predict_body([ls_task(1, GOOD)], BOXES)).encode()
    assert streamed_post(make_app(max_request_bytes=100_000).test_client(), small).status_code == 200
    assert_alive(client)


# ----------------------------------------------------------------------------- row 2: malformed input
MALFORMED = [
    ("{not json", "malformed JSON"),
    ("[1, 2]", "JSON object"),
    ("", "empty request body"),
    ("[" * 100_000 + "]" * 100_000, "malformed JSON"),
    (json.dumps({"label_config": BOXES}), "'tasks' must be a list"),
    (json.dumps({"tasks": "nope", "label_config": BOXES}), "'tasks' must be a list"),
    (json.dumps({"tasks": [], "label_config": BOXES}), "'tasks' is empty"),
    (json.dumps({"tasks": [5], "label_config": BOXES}), "tasks[0] must be an object"),
    (json.dumps({"tasks": [{"id": 1}], "label_config": BOXES}), "tasks[0] has no 'data'"),
    (json.dumps({"tasks": [{"id": 1, "data": "x"}], "label_config": BOXES}), "tasks[0] has no 'data'"),
    (json.dumps({"tasks": [ls_task(1, GOOD)]}), "'label_config' must be"),
    (json.dumps(predict_body([ls_task(1, GOOD)], "<View><Image name='i' value='$i'>")), "not valid XML"),
    (json.dumps({**predict_body([ls_task(1, GOOD)], BOXES), "params": []}), "'params' must be an object"),
    (json.dumps(predict_body([ls_task(1, GOOD)], BOXES, context="x")), "'params.context' must be an object"),
    (json.dumps(predict_body([ls_task(1, GOOD)], BOXES, context={"result": {}})), "must be a list"),
]


@pytest.mark.parametrize(("body", "reason"), MALFORMED, ids=[reason for _, reason in MALFORMED])
def test_malformed_predict_is_400_with_one_line(body, reason):
    client = make_app().test_client()
    assert_one_line_error(client.post("/predict", data=body, content_type="application/json"), 400, reason)
    assert_alive(client)


def test_wrong_image_type_and_unknown_tags_do_not_fail_the_request():
    client = make_app().test_client()
    config = BOXES.replace("</View>", '<Frobnicate name="x" toName="image"/></View>')
    body = predict_body([ls_task(1, 123), ls_task(2, {"url": GOOD}), ls_task(3, GOOD)], config)
    results = client.post("/predict", json=body).get_json()["results"]
    assert [bool(entry["result"]) for entry in results] == [False, False, True]
    assert_alive(client)


# ----------------------------------------------------------------------------- row 3: sizes
def test_too_many_tasks_labels_or_characters():
    client = make_app(max_tasks_per_request=3, max_labels=12, max_prompt_chars=50).test_client()
    reply = client.post("/predict", json=predict_body([ls_task(i, GOOD) for i in range(4)], BOXES))
    assert reply.status_code == 200  # never 413 a batch: the first 3 answered, the 4th left without a result
    entries = reply.get_json()["results"]
    assert len(entries) == 4 and all(entry["result"] for entry in entries[:3])
    assert "result" not in entries[3] and "MAX_TASKS_PER_REQUEST=3" in entries[3]["error"]
    extra = "".join(f'<Label value="l{i}"/>' for i in range(10))
    many = BOXES.replace('<Label value="car"', extra + '<Label value="car"')
    assert_one_line_error(client.post("/predict", json=predict_body([ls_task(1, GOOD)], many)), 400, "MAX_LABELS=12")
    long_label = BOXES.replace('prompt="a dog"', f'prompt="{"d" * 100_000}"')
    assert_one_line_error(client.post("/setup", json=setup_body(long_label)), 400, "MAX_PROMPT_CHARS=50")
    context = textarea_context("x" * 51)
    body = predict_body([ls_task(1, GOOD)], label_config("referring_prompt.xml"), context)
    reply = client.post("/predict", json=body)  # interactive: the annotator sees why, in the prompt TextArea
    assert_visible_refusal(reply, "MAX_PROMPT_CHARS=50")
    assert_alive(client)


# ----------------------------------------------------------------------------- row 5: drawn boxes
@pytest.mark.parametrize(
    "value",
    [{"x": "NaN"}, {"x": "Infinity"}, {"width": -5}, {"width": 0}, {"x": 150}, {"x": "10"}, {"rotation": "NaN"}],
    ids=["nan", "inf", "negative", "zero-width", "outside", "string", "nan-rotation"],
)
def test_bad_drawn_boxes_are_refused(value, caplog):
    client = make_app().test_client()
    context = drawn_box_context()
    context["result"][0]["value"].update(value)
    text = json.dumps(predict_body([ls_task(1, GOOD)], DESCRIBE, context))
    text = text.replace('"NaN"', "NaN").replace('"Infinity"', "Infinity")
    with caplog.at_level("WARNING", logger="backend.http"):
        reply = client.post("/predict", data=text, content_type="application/json")
    # a box that cannot be drawn again carries no message; a finite one comes back with the reason as its text
    assert_visible_refusal(reply, "", shapes_allowed=1)
    assert any("drawn box" in record.getMessage() for record in caplog.records)
    assert_alive(client)


def test_odd_but_usable_drawn_boxes_are_clamped():
    client = make_app().test_client()
    for change in ({"x": 90, "width": 30}, {"rotation": 30}):
        context = drawn_box_context(**change)
        del context["result"][0]["original_width"]
        result = client.post("/predict", json=predict_body([ls_task(1, GOOD)], DESCRIBE, context)).get_json()
        rect = next(r for r in result["results"][0]["result"] if r["type"] == "rectanglelabels")
        assert rect["value"]["x"] + rect["value"]["width"] <= 100.0
    assert_alive(client)


# ----------------------------------------------------------------------------- rows 6-9 through /predict
def test_ssrf_and_bad_sources_give_empty_entries_and_no_connection(tmp_path):
    (tmp_path / "ok.png").write_bytes(png_bytes(20, 20))
    html = b"<html>hello</html>"
    with ImageServer({"/img.png": send_bytes(png_bytes(20, 20)), "/page": send_bytes(html, content_type="text/html"),
                      "/hang": send_nothing_for(2)}) as server:
        sources = [
            "http://169.254.169.254/latest/meta-data/", f"{server.base}/img.png", f"http://[::1]:{server.port}/img.png",
            f"http://0x7f000001:{server.port}/img.png", "file:///etc/passwd", "gopher://127.0.0.1/", "ftp://x/y.png",
            "/data/local-files/?d=../../etc/passwd", "/data/local-files/?d=/etc/passwd",
        ]
        client = make_app(local_files_document_root=str(tmp_path)).test_client()
        tasks = [ls_task(i, source) for i, source in enumerate(sources)] + [ls_task(99, "/data/local-files/?d=ok.png")]
        results = client.post("/predict", json=predict_body(tasks, BOXES)).get_json()["results"]
        assert [bool(entry["result"]) for entry in results] == [False] * len(sources) + [True]
        assert server.hits == []
        allowed = make_app(allowed_image_hosts=server.host_port, image_read_timeout_s=0.3).test_client()
        started = time.monotonic()
        tasks = [ls_task(i, f"{server.base}/{path}") for i, path in enumerate(["page", "hang", "img.png"])]
        results = allowed.post("/predict", json=predict_body(tasks, BOXES)).get_json()["results"]
        assert time.monotonic() - started < 1.5
        assert [bool(entry["result"]) for entry in results] == [False, False, True]
    assert_alive(client)


# ----------------------------------------------------------------------------- row 10: weights
def test_requests_cannot_choose_weights():
    model = FakeNextChat()
    client = make_app(model).test_client()
    config = BOXES.replace("<RectangleLabels ", '<RectangleLabels model_path="/tmp/evil.pt" checkpoint="x" ')
    body = {**setup_body(config), "extra_params": {"checkpoint": "/tmp/evil", "model_path": "/tmp/evil.pt"}}
    assert_one_line_error(client.post("/setup", json=body), 400, "unknown key 'checkpoint'")
    reply = client.post("/predict", json=predict_body([ls_task(1, GOOD)], config))
    assert reply.get_json()["results"][0]["model_version"].startswith("fake-nextchat-1+cfg.")
    assert_alive(client)


# ----------------------------------------------------------------------------- row 11: auth
def basic(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_basic_auth_and_bearer_token():
    client = make_app(basic_auth_user="ls", basic_auth_pass="s3cret", auth_token="tok-123").test_client()
    body = predict_body([ls_task(1, GOOD)], BOXES)
    for headers in ({}, basic("ls", "wrong"), basic("other", "s3cret"), {"Authorization": "Bearer nope"},
                    {"Authorization": "Basic !!!"}, {"Authorization": "Token tok-123"}):
        reply = client.post("/predict", json=body, headers=headers)
        assert_one_line_error(reply, 401, "authentication required")
        assert reply.headers["WWW-Authenticate"].startswith("Basic")
    assert client.post("/predict?token=tok-123", json=body).status_code == 401
    assert client.post("/predict", json=body, headers=basic("ls", "s3cret")).status_code == 200
    assert client.post("/predict", json=body, headers={"Authorization": "Bearer tok-123"}).status_code == 200
    assert client.post("/setup", json=setup_body(BOXES)).status_code == 401
    assert client.get("/versions").status_code == 401 and client.get("/metrics").status_code == 401
    assert client.post("/webhook", json={"action": "PROJECT_UPDATED"}).status_code == 200  # LS sends no auth
    assert_alive(client)


# ----------------------------------------------------------------------------- row 12: overload
def test_overload_is_refused_fast_with_retry_after():
    client = make_app(FakeNextChat(delay_s=0.6), max_concurrency=1, max_queue=1, retry_after_s=7).test_client()
    body = predict_body([ls_task(1, GOOD)], BOXES)

    def call():
        started = time.monotonic()
        reply = client.post("/predict", json=body)
        return reply.status_code, reply.headers.get("Retry-After"), time.monotonic() - started

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(call) for _ in range(6)]
        time.sleep(0.2)
        assert_alive(client)
        outcomes = [future.result() for future in futures]
    accepted = [o for o in outcomes if o[0] == 200]
    refused = [o for o in outcomes if o[0] == 429]
    assert len(accepted) == 2 and len(refused) == 4
    assert all(retry == "7" and seconds < 0.3 for _, retry, seconds in refused)
    assert_alive(client)


def test_waiting_too_long_in_the_queue_is_503():
    client = make_app(FakeNextChat(delay_s=0.8), max_concurrency=1, max_queue=4, queue_timeout_s=0.2).test_client()
    body = predict_body([ls_task(1, GOOD)], BOXES)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        first = pool.submit(client.post, "/predict", json=body)
        time.sleep(0.1)
        second = pool.submit(client.post, "/predict", json=body)
        assert second.result().status_code == 503 and second.result().headers["Retry-After"]
        assert first.result().status_code == 200
    assert_alive(client)


# ----------------------------------------------------------------------------- row 13: deadline
def test_request_deadline_returns_partial_results():
    client = make_app(FakeNextChat(delay_s=0.4), request_deadline_s=0.6).test_client()
    tasks = [ls_task(i, data_uri(png_bytes(30 + i, 30))) for i in range(5)]
    started = time.monotonic()
    results = client.post("/predict", json=predict_body(tasks, BOXES)).get_json()["results"]
    assert time.monotonic() - started < 1.5
    assert len(results) == 5 and "result" in results[0] and "result" not in results[-1]
    assert_alive(client)


# ----------------------------------------------------------------------------- row 14: CUDA OOM
class OutOfMemoryOnce(FakeNextChat):
    def __init__(self):
        super().__init__()
        self.failed = False

    def ground_many(self, image, expressions):
        if not self.failed:
            self.failed = True
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return super().ground_many(image, expressions)


def test_cuda_oom_is_503_and_the_next_request_succeeds():
    client = make_app(OutOfMemoryOnce()).test_client()
    body = predict_body([ls_task(1, GOOD)], BOXES)
    reply = client.post("/predict", json=body)
    assert_one_line_error(reply, 503, "out of memory")
    assert reply.headers["Retry-After"]
    assert client.post("/predict", json=body).get_json()["results"][0]["result"]
    assert_alive(client)


# ----------------------------------------------------------------------------- row 18: secrets
def test_secrets_never_reach_logs_or_replies(caplog):
    secrets = ["SECRET-LS-KEY-0123", "SECRET-ACCESS-TOKEN-4567", "SECRET-PASSWORD-89", "SECRET-BASIC-PASS"]
    with ImageServer({"/data/upload/1/a.png": send_bytes(png_bytes(20, 20))}) as ls:
        client = make_app(label_studio_url=ls.base, label_studio_api_key=secrets[0], basic_auth_user="u",
                          basic_auth_pass=secrets[3], log_level="DEBUG").test_client()
        headers = basic("u", secrets[3])
        with caplog.at_level(logging.DEBUG):
            replies = [
                client.post("/setup", json=setup_body(BOXES, access_token=secrets[1]), headers=headers),
                client.post("/predict", json=predict_body([ls_task(1, "/data/upload/1/a.png"), ls_task(2, "/nope")],
                                                          BOXES, password=secrets[2]), headers=headers),
                client.post("/predict", json={"tasks": 1, "password": secrets[2]}, headers=headers),
                client.post("/predict", json={"tasks": 1}, headers=basic("u", secrets[0])),
            ]
            from backend.settings import load_settings

            settings = load_settings({"LABEL_STUDIO_API_KEY": secrets[0]})
            logging.getLogger("backend").info("settings %s", settings.redacted())
        assert ls.hits[0][1]["Authorization"] == f"Token {secrets[0]}"  # it was used, just never shown
    shown = caplog.text + "".join(reply.get_data(as_text=True) for reply in replies)
    assert "task 2: no prediction" in caplog.text
    assert not [secret for secret in secrets if secret in shown]
    assert_alive(client)


# ----------------------------------------------------------------------------- row 19: webhook
def test_webhook_bad_bodies():
    client = make_app(max_request_bytes=1000).test_client()
    assert client.post("/webhook", data="[1]", content_type="application/json").status_code == 400
    assert client.post("/webhook", data="{", content_type="application/json").status_code == 400
    assert client.post("/webhook", data="{" + " " * 2000 + "}", content_type="application/json").status_code == 413
    assert client.post("/webhook", json={"action": 5}).get_json() == {"status": "Unknown event"}
    assert_alive(client)


# ----------------------------------------------------------------------------- load test
BAD_SOURCES = ["data:image/png;base64,AAAA", "http://169.254.169.254/x", "data:text/html,<html>", "/nope", 7]


def test_load_mixed_good_and_bad_tasks_memory_flat(monkeypatch):
    # pytest keeps every captured log record; take the backend's warnings out of that store here
    monkeypatch.setattr(logging.getLogger("backend"), "propagate", False)
    client = make_app(max_concurrency=4).test_client()

    def call(index: int):
        width = 40 + index % 7
        tasks = [ls_task(index, data_uri(png_bytes(width, 30))), ls_task(-index, BAD_SOURCES[index % 5])]
        reply = client.post("/predict", json=predict_body(tasks, BOXES))
        good, bad = reply.get_json()["results"]
        return reply.status_code, bool(good["result"]) and good["result"][0]["original_width"] == width, bad["result"]

    def run(count: int, start: int):
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            return list(pool.map(call, range(start, start + count)))

    tracemalloc.start()
    try:
        run(40, 0)
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        outcomes = run(260, 40)
        gc.collect()
        growth = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert all(status == 200 and good_ok and bad == [] for status, good_ok, bad in outcomes)
    assert growth < 2_000_000, f"memory grew by {growth} bytes over 260 requests"
    assert_alive(client)


# ----------------------------------------------------------------------------- production server
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def raw_chunked_post(port: int, path: str, size: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n".encode())
        chunk = b"{" + b" " * 8190 + b"}"
        try:
            for _ in range(size // len(chunk) + 1):
                conn.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
            conn.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer 413 and close before the whole body is sent
        return conn.recv(4096)


def test_gunicorn_serve_loads_once_and_caps_chunked_bodies(tiny_checkpoint, tiny_vision_tower):
    import requests

    from backend.settings import ENV_NAMES

    port = free_port()
    ours = {name for names in ENV_NAMES.values() for name in names}
    env = {key: value for key, value in os.environ.items() if key not in ours}
    env.update({"MAX_REQUEST_BYTES": "100000", "LABEL_STUDIO_API_KEY": "SECRET-KEY-IN-ENV", "THREADS": "4"})
    command = [sys.executable, "-m", "backend", "serve", "--checkpoint", str(tiny_checkpoint), "--vision-tower",
               str(tiny_vision_tower), "--host", "127.0.0.1", "--port", str(port), "--log-level", "DEBUG"]
    server = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None and time.monotonic() < deadline, "server did not become ready"
            try:
                if requests.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        assert b" 413 " in raw_chunked_post(port, "/predict", 300_000)
        reply = requests.post(f"http://127.0.0.1:{port}/predict", timeout=30,
                              json=predict_body([ls_task(1, GOOD)], BOXES))
        assert reply.status_code == 200 and len(reply.json()["results"]) == 1
        started = time.monotonic()
        assert requests.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
        assert time.monotonic() - started < 1.0
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0]
    assert "SECRET-KEY-IN-ENV" not in output
    assert output.count("model ready") == 1 and "gunicorn" in output.lower()


def test_serve_without_checkpoint_and_unknown_commands_fail_in_one_line(monkeypatch, capsys):
    from backend.__main__ import main

    monkeypatch.delenv("NEXTCHAT_CHECKPOINT", raising=False)

    assert main(["serve", "--port", "9"]) == 2
    assert main(["frobnicate"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert errors == ["error: no checkpoint: pass --checkpoint or set NEXTCHAT_CHECKPOINT",
                      "error: unknown command 'frobnicate'; choose one of serve, demo, export, check-stage3, batch, "
                      "finetune"]


def test_threads_cover_running_and_queued_requests():
    from backend.http.gunicorn_conf import gunicorn_options
    from backend.settings import load_settings

    options = gunicorn_options(load_settings({"MAX_CONCURRENCY": "2", "MAX_QUEUE": "16"}))
    assert options["workers"] == 1 and options["threads"] >= 18 and options["worker_class"] == "gthread"


_ = threading  # threads are used through concurrent.futures above


def test_deadline_stops_real_decoding_and_the_task_is_left_for_later(random_tiny_checkpoint):
    """Row 13 with the real model: the deadline passes mid-decoding; the model stops at its next step
    and the task comes back without a result (Label Studio asks again later)."""
    from model import NextChat

    nc = NextChat.from_pretrained(random_tiny_checkpoint)
    expired = {"now": False}
    original = nc.run_batch

    def run_batch_then_expire(*args, **kwargs):
        expired["now"] = True  # the deadline passes as decoding starts
        return original(*args, **kwargs)

    nc.run_batch = run_batch_then_expire
    client = make_app(nc).test_client()
    from backend import deadline as limits
    real_expired = limits.Deadline.expired
    limits.Deadline.expired = lambda self: expired["now"] or real_expired(self)
    try:
        reply = client.post("/predict", json=predict_body([ls_task(1, data_uri(png_bytes(40, 30)))], BOXES))
    finally:
        limits.Deadline.expired = real_expired
    assert reply.status_code == 200
    assert "result" not in reply.get_json()["results"][0]
    assert_alive(client)


def test_gpu_lock_serves_an_urgent_waiter_first():
    """An annotator's interactive call waiting on the GPU goes before the next call of a running batch."""
    import threading

    from backend.predict.gpu_lock import PriorityLock

    lock = PriorityLock()
    order: list[str] = []
    assert lock.acquire(1.0)  # a batch's model call is running
    ordinary = threading.Thread(target=lambda: lock.acquire(5.0) and (order.append("batch"), lock.release()))
    ordinary.start()
    time.sleep(0.1)
    urgent = threading.Thread(target=lambda: lock.acquire(5.0, urgent=True) and (order.append("interactive"),
                                                                                   lock.release()))
    urgent.start()
    give_up = time.monotonic() + 10
    while lock._urgent_waiting != 1 and time.monotonic() < give_up:  # the interactive call is waiting
        time.sleep(0.01)
    lock.release()
    ordinary.join(5)
    urgent.join(5)
    assert order == ["interactive", "batch"]
    assert lock.acquire(0.1) and not lock.acquire(0.05)  # one holder at a time; a timeout says no
    lock.release()
