"""A small Label Studio API client for the demo, the end-to-end tests and `export --from-project`.

Built on label-studio-sdk 2.1.2 where its typed calls work with Label Studio 1.23 (projects, task
import and listing, bulk prediction import, export snapshots), and on plain `requests` where the SDK
has no call (file upload, Data Manager actions, interactive annotating) or would hide the status code
we want to check.

Auth: `api_key` follows backend.studio.credentials (legacy token or personal access token, one token
policy for the whole backend): the SDK client exchanges a personal access token, and the plain
`requests` calls send that client's header, so the key is exchanged once. It only ever goes to `url`.

Usage::

    ls = LabelStudioClient("http://127.0.0.1:8080", api_key)
    project = ls.create_project("boxes", open("label_config/boxes_polygons.xml").read())
    task_ids = ls.import_tasks(project["id"], [{"image": "http://127.0.0.1:8765/a.png"}])
    task_ids += ls.upload_files(project["id"], [Path("b.png")])
    backend = ls.connect_ml_backend(project["id"], "http://127.0.0.1:9090")
    ls.retrieve_predictions(project["id"])
    predictions = ls.list_predictions(project_id=project["id"])
    tasks = ls.export_annotations(project["id"])   # an export snapshot, as a list of tasks
    ls.export_snapshot(project["id"], Path("export.json"))   # the same, streamed to a file

Every failure is a `LabelStudioError` whose message has the method, path, status and LS's reply.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import requests

from backend.studio.credentials import SdkCredentials, TokenExchangeError, sdk_client


class LabelStudioError(RuntimeError):
    """A Label Studio call failed; `status` is the HTTP status (0 when LS could not be reached)."""

    def __init__(self, message: str, status: int = 0, body: Any = None):
        super().__init__(message)
        self.status = status
        self.body = body


def as_plain_dict(value: Any) -> Any:
    """SDK pydantic models (and lists of them) as plain JSON-ready dicts."""
    if isinstance(value, list):
        return [as_plain_dict(item) for item in value]
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json", by_alias=True, exclude_none=False)
    return value


class LabelStudioClient:
    """Label Studio at `url` (scheme://host:port, no trailing slash needed) with `api_key`."""

    def __init__(self, url: str, api_key: str, timeout: float = 60.0):
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.session = requests.Session()
        self._sdk = None

    # ---- auth -------------------------------------------------------------------------------------
    @property
    def credentials(self) -> SdkCredentials:
        return SdkCredentials(self.sdk, self.api_key)

    def auth_headers(self) -> dict[str, str]:
        """The Authorization header for this key (PATs are swapped for a fresh access JWT by the SDK)."""
        try:
            return self.credentials.headers()
        except TokenExchangeError as exc:
            raise LabelStudioError(f"POST /api/token/refresh: {exc}") from None

    @property
    def sdk(self):
        """A label_studio_sdk.LabelStudio client for the same server and key (created on first use)."""
        if self._sdk is None:
            try:
                self._sdk = sdk_client(self.url, self.api_key, self.timeout)
            except TokenExchangeError as exc:
                raise LabelStudioError(str(exc), 401) from None
        return self._sdk

    # ---- plain HTTP -------------------------------------------------------------------------------
    def _send(self, method: str, path: str, auth: bool = True, **kwargs) -> requests.Response:
        headers = dict(kwargs.pop("headers", None) or {})
        if auth:
            headers.update(self.auth_headers())
        kwargs.setdefault("timeout", self.timeout)
        try:
            response = self.session.request(method, self.url + path, headers=headers, **kwargs)
        except requests.RequestException as error:
            raise LabelStudioError(f"{method} {path}: Label Studio unreachable at {self.url}: {error}") from error
        if response.status_code >= 400:
            body = response.text[:2000]
            raise LabelStudioError(f"{method} {path}: HTTP {response.status_code}: {body}", response.status_code, body)
        return response

    def request_json(self, method: str, path: str, **kwargs) -> Any:
        """Send an authenticated request; the reply's JSON (None for an empty body)."""
        response = self._send(method, path, **kwargs)
        return response.json() if response.content else None

    def _sdk_call(self, what: str, call, *args, **kwargs) -> Any:
        from label_studio_sdk.core.api_error import ApiError

        try:
            return as_plain_dict(call(*args, **kwargs))
        except ApiError as error:
            message = f"{what}: HTTP {error.status_code}: {error.body}"
            raise LabelStudioError(message, error.status_code, error.body) from error

    def health(self, path: str = "/health") -> bool:
        """True when GET `path` (/health; a backend's /ready) answers 200 (no auth needed)."""
        try:
            return self.session.get(self.url + path, timeout=5).status_code == 200
        except requests.RequestException:
            return False

    # ---- projects and tasks ----------------------------------------------------------------------
    def create_project(self, title: str, label_config: str, **settings) -> dict:
        """Create a project; LS validates `label_config` and a bad one raises LabelStudioError (HTTP 400)."""
        return self._sdk_call(
            "create project", self.sdk.projects.create, title=title, label_config=label_config, **settings
        )

    def get_project(self, project_id: int) -> dict:
        return self.request_json("GET", f"/api/projects/{project_id}")

    def import_tasks(self, project_id: int, task_data: Iterable[dict]) -> list[int]:
        """Import tasks given as their `data` dicts; returns the new task ids in order."""
        request = [{"data": data} for data in task_data]
        reply = self._sdk_call(
            "import tasks", self.sdk.projects.import_tasks, id=project_id, request=request, return_task_ids=True
        )
        return list(reply["task_ids"])

    def upload_files(self, project_id: int, paths: Iterable[Path]) -> list[int]:
        """Upload image files (one task each, data.<first $var> = /data/upload/...); returns the task ids."""
        task_ids = []
        for path in paths:
            with open(path, "rb") as handle:
                reply = self.request_json(
                    "POST", f"/api/projects/{project_id}/import", params={"return_task_ids": "true"},
                    files={"file": (Path(path).name, handle)},
                )
            task_ids += reply["task_ids"]
        return task_ids

    def add_local_files_storage(self, project_id: int, folder: Path, title: str = "local files") -> dict:
        """Attach a Local Files storage (needed before /data/local-files/?d=... URLs under it serve, else 404).

        `folder` must lie under LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT of the LS process. Not synced:
        tasks pointing into it are imported separately.
        """
        return self._sdk_call(
            "add local files storage", self.sdk.import_storage.local.create,
            project=project_id, path=str(folder), title=title, use_blob_urls=True,
        )

    def update_task_data(self, task_id: int, data: dict) -> dict:
        """Replace a task's `data` (e.g. add a prompt to an uploaded image's task)."""
        return self.request_json("PATCH", f"/api/tasks/{task_id}", json={"data": data})

    def list_tasks(self, project_id: int) -> list[dict]:
        return [as_plain_dict(task) for task in self.sdk.tasks.list(project=project_id, fields="all")]

    # ---- ML backend -------------------------------------------------------------------------------
    def connect_ml_backend(self, project_id: int, backend_url: str, title: str = "NExT-Chat",
                           is_interactive: bool = True, extra_params=None) -> dict:
        """Add an ML backend to a project (LS calls its /health and /setup now); returns the record.
        `extra_params`: what Connect model's "Any extra params" box holds (the UI sends its text).

        LS 1.23 answers 403 for a loopback/private backend unless it runs with ML_BLOCK_LOCAL_IP=false
        and SSRF_PROTECTION_ENABLED=false (see docs/deploy.md).
        """
        body = {"project": project_id, "url": backend_url, "title": title, "is_interactive": is_interactive}
        if extra_params is not None:
            body["extra_params"] = extra_params
        return self.request_json("POST", "/api/ml/", json=body)

    def list_webhooks(self, project_id: int) -> list[dict]:
        return self.request_json("GET", "/api/webhooks/", params={"project": project_id})

    def set_webhook_headers(self, webhook_id: int, headers: dict) -> dict:
        """The headers Label Studio sends with a webhook (Settings -> Webhooks -> Headers)."""
        return self.request_json("PATCH", f"/api/webhooks/{webhook_id}/", json={"headers": headers})

    def list_ml_backends(self, project_id: int) -> list[dict]:
        return self.request_json("GET", "/api/ml/", params={"project": project_id})

    def update_ml_backend(self, ml_backend: dict, **changes) -> dict:
        """PATCH an ML backend record; LS 1.23 needs project, url and title in every PATCH (else HTTP 500)."""
        body = {key: ml_backend[key] for key in ("project", "url", "title")}
        body.update(changes)
        return self.request_json("PATCH", f"/api/ml/{ml_backend['id']}", json=body)

    def list_projects(self) -> list[dict]:
        return self.request_json("GET", "/api/projects/", params={"page_size": 1000})["results"]

    def retrieve_predictions(self, project_id: int, task_ids: list[int] | None = None,
                             timeout: float = 600.0) -> dict:
        """The Data Manager action "Retrieve predictions" (synchronous: returns after the backend answered,
        so `timeout` should exceed LS's ML_TIMEOUT_PREDICT). All selected tasks go to /predict in one call.

        LS says "Retrieved N predictions" even when nothing was stored: check list_predictions().
        """
        selected = {"all": False, "included": task_ids} if task_ids else {"all": True, "excluded": []}
        return self.request_json(
            "POST", "/api/dm/actions", params={"id": "retrieve_tasks_predictions", "project": project_id},
            json={"selectedItems": selected}, timeout=timeout,
        )

    def interactive_annotating(self, ml_backend_id: int, task_id: int, context: dict,
                               timeout: float = 600.0) -> dict:
        """What the labeling UI posts when a smart region is drawn or a prompt is added; LS forwards it
        to the backend's /predict (one task, params.context = context) and answers {"data": results[0]},
        or HTTP 200 with {"errors": [...]} when the backend failed."""
        return self.request_json(
            "POST", f"/api/ml/{ml_backend_id}/interactive-annotating", json={"task": task_id, "context": context},
            timeout=timeout,
        )

    def list_predictions(self, task_id: int | None = None, project_id: int | None = None) -> list[dict]:
        """Stored predictions of one task or of a whole project."""
        params = {"task": task_id} if task_id is not None else {"project": project_id}
        return self.request_json("GET", "/api/predictions/", params=params)

    def import_predictions(self, project_id: int, predictions: list[dict]) -> int:
        """Store predictions in bulk (one request): each {"task": id, "result": [...], "score": f,
        "model_version": s}; returns how many Label Studio created."""
        reply = self._sdk_call("import predictions", self.sdk.projects.import_predictions, id=project_id,
                               request=predictions)
        return int((reply or {}).get("created", len(predictions))) if isinstance(reply, dict) else len(predictions)

    # ---- annotations and export ------------------------------------------------------------------
    def create_annotation(self, task_id: int, result: list[dict]) -> dict:
        return self.request_json("POST", f"/api/tasks/{task_id}/annotations/", json={"result": result})

    def export_snapshot(self, project_id: int, destination: Path, timeout_s: float = 1800.0,
                        poll_s: float = 1.0) -> Path:
        """Every task of the project with its annotations (skipped and ground-truth ones too) in Label
        Studio's JSON export format, written to `destination`: an export snapshot is created, polled until
        it is completed (no request has to outlive the export, however big), downloaded in chunks, then
        deleted from Label Studio."""
        snapshot = self._sdk_call(
            "create export", self.sdk.projects.exports.create, id=project_id, title="nextchat-ls stage-3 export",
            annotation_filter_options={"usual": True, "ground_truth": True, "skipped": True})
        give_up_at = time.monotonic() + timeout_s
        while snapshot.get("status") != "completed":
            if snapshot.get("status") == "failed":
                raise LabelStudioError(f"export of project {project_id} failed in Label Studio")
            if time.monotonic() > give_up_at:
                raise LabelStudioError(f"export of project {project_id} not done after {timeout_s:.0f} s")
            time.sleep(poll_s)
            snapshot = self._sdk_call("poll export", self.sdk.projects.exports.get, id=project_id,
                                      export_pk=snapshot["id"])
        destination = Path(destination)
        with destination.open("wb") as handle:
            chunks = self.sdk.projects.exports.download(id=project_id, export_pk=snapshot["id"], export_type="JSON",
                                                        request_options={"chunk_size": 1024 * 1024})

            def write_all() -> None:
                for chunk in chunks:
                    handle.write(chunk)

            self._sdk_call("download export", write_all)
        self._sdk_call("delete export", self.sdk.projects.exports.delete, id=project_id, export_pk=snapshot["id"])
        return destination

    def export_annotations(self, project_id: int) -> list[dict]:
        """The project's JSON export as a list of task dicts (through :meth:`export_snapshot`)."""
        import json
        import tempfile

        with tempfile.TemporaryDirectory(prefix="nextchat-export-") as folder:
            path = self.export_snapshot(project_id, Path(folder) / "export.json")
            return json.loads(path.read_text("utf-8"))

    def create_personal_access_token(self) -> str:
        """A new PAT (JWT refresh token) for the user of this key."""
        return self.request_json("POST", "/api/token/")["token"]


def wait_for_health(url: str, timeout_s: float, process=None, path: str = "/health") -> None:
    """Poll GET url + path until 200; raise early if `process` (a Popen) exited, or after `timeout_s`."""
    client = LabelStudioClient(url, "")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise LabelStudioError(f"process for {url} exited with code {process.returncode} before it answered")
        if client.health(path):
            return
        time.sleep(0.5)
    raise LabelStudioError(f"{url}{path} did not answer 200 within {timeout_s:.0f} s")
