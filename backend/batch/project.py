"""`--project ID`: write the job's predictions into a Label Studio project through its API.

An image that already has a task in the project (same ``data.<image key>`` value, e.g. synced from a
Local Files storage) gets the prediction on that task (bulk ``import_predictions``); any other image is
imported as a new task with its prediction. Uploads go in chunks; the number of state records already
sent is kept in ``<state>.uploaded.json``, so an interrupted upload resumes where it stopped.
Tasks reference images as local-files URLs (the CLI refuses --project without --document-root), which
Label Studio serves only under a Local Files storage of the project: one is added for the images
folder when none covers it. Credentials: LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY (legacy token or
personal access token, exchanged by the SDK).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from backend.batch.state import StateFile
from model.reasons import one_line


class UploadError(RuntimeError):
    """Label Studio refused or could not be reached; a one-line reason (never the key)."""


class SdkProjectApi:
    """The calls the upload needs, over label-studio-sdk."""

    def __init__(self, url: str, api_key: str):
        from backend.studio.credentials import sdk_client

        self.client = sdk_client(url, api_key)

    def ensure_local_files_storage(self, project: int, folder: str) -> str:
        """"existing" when a Local Files storage of the project covers `folder`, else adds one: "added"."""
        target = Path(folder).resolve()
        for storage in self.client.import_storage.local.list(project=project):
            path = getattr(storage, "path", None)
            if path and target.is_relative_to(Path(path).resolve()):
                return "existing"
        self.client.import_storage.local.create(project=project, path=str(target), use_blob_urls=True,
                                                title="nextchat batch images")
        return "added"

    def task_ids_by_image(self, project: int, image_key: str) -> dict[str, int]:
        found = {}
        for task in self.client.tasks.list(project=project, fields="task_only", resolve_uri=False):
            value = (task.data or {}).get(image_key)
            if isinstance(value, str):
                found.setdefault(value, task.id)
        return found

    def import_tasks(self, project: int, tasks: list[dict]) -> None:
        self.client.projects.import_tasks(id=project, request=tasks)

    def import_predictions(self, project: int, predictions: list[dict]) -> None:
        self.client.projects.import_predictions(id=project, request=predictions)


class ProjectUpload:
    def __init__(self, api, project: int, image_key: str, state: StateFile, chunk: int = 200):
        self.api, self.project, self.image_key, self.state, self.chunk = api, project, image_key, state, chunk
        self.marker = state.path.with_name(state.path.name + f".uploaded-{project}.json")

    def _sent(self) -> int:
        try:
            return int(json.loads(self.marker.read_text())["records"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0

    def _mark(self, records: int) -> None:
        self.marker.write_text(json.dumps({"project": self.project, "records": records}))

    def _pending(self, start: int) -> Iterator[tuple[int, dict]]:
        for index, (_, task) in enumerate(self.state.iter_tasks(), start=1):
            if index > start:
                yield index, task

    def run(self) -> dict:
        """Send every task recorded after the marker; returns counts."""
        start = self._sent()
        existing = self.api.task_ids_by_image(self.project, self.image_key)
        counts = {"predictions_on_existing_tasks": 0, "new_tasks": 0, "already_uploaded": start}
        new_tasks, predictions, last = [], [], start
        for index, task in self._pending(start):
            task_id = existing.get(task["data"].get(self.image_key))
            if task_id is None:
                new_tasks.append(task)
            else:
                predictions += [dict(entry, task=task_id) for entry in task.get("predictions", [])]
            last = index
            if len(new_tasks) + len(predictions) >= self.chunk:
                self._flush(new_tasks, predictions, counts, last)
                new_tasks, predictions = [], []
        self._flush(new_tasks, predictions, counts, last)
        return counts

    def _flush(self, new_tasks: list[dict], predictions: list[dict], counts: dict, last: int) -> None:
        try:
            if new_tasks:
                self.api.import_tasks(self.project, new_tasks)
            if predictions:
                self.api.import_predictions(self.project, predictions)
        except Exception as exc:  # noqa: BLE001 - SDK/HTTP errors of every kind become one line
            raise UploadError(f"Label Studio upload to project {self.project} failed: "
                              f"{type(exc).__name__}: {one_line(exc)}") from None
        counts["new_tasks"] += len(new_tasks)
        counts["predictions_on_existing_tasks"] += len(predictions)
        self._mark(last)


def upload_to_project(project: int, image_key: str, state_path: Path, fingerprint: str, url: str, api_key: str,
                      api=None, images_root: str | None = None) -> dict:
    if api is None:
        if not url or not api_key:
            raise UploadError("--project needs LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY in the environment")
        api = SdkProjectApi(url, api_key)
    state = StateFile(state_path, fingerprint)
    try:
        storage = api.ensure_local_files_storage(project, images_root) if images_root else None
        counts = ProjectUpload(api, project, image_key, state).run()
        if storage is not None:
            counts["local_files_storage"] = storage
        return counts
    except UploadError:
        raise
    except Exception as exc:  # noqa: BLE001 - listing tasks failed (auth, network, no such project)
        raise UploadError(f"Label Studio project {project}: {type(exc).__name__}: {one_line(exc)}") from None
