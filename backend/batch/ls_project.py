"""`batch --from-project`: what the job needs from a Label Studio project, through label-studio-sdk.

* the task ids to predict: every task of the project, of a Data Manager view (``--view``) or matching a
  filter (``--filter``, Data Manager JSON), listed page by page (ids only are kept: 50k ints);
* the tasks themselves, fetched by id in pages as the job goes (so predictions written meanwhile
  cannot shift the pages of a filter that depends on them);
* the project's labeling config and the extra params of its connected ML backend (so the job predicts
  with the very settings, and so the very version, the server would use);
* bulk prediction import, and setting the project's model version (``--select-version``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from backend.studio.credentials import SdkCredentials, sdk_client
from model.reasons import one_line


class ProjectError(RuntimeError):
    """Label Studio refused or could not be reached; a one-line reason (never the key)."""


def parse_filter(text: str | None) -> dict | None:
    """--filter: Data Manager filters, either {"conjunction": ..., "items": [...]} or {"filters": {...}}."""
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"--filter is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError("--filter must be a JSON object (Data Manager filters)")
    filters = value.get("filters", value)
    if not isinstance(filters, dict) or not isinstance(filters.get("items"), list):
        raise ValueError('--filter needs {"conjunction": "and", "items": [{"filter": "filter:tasks:...", ...}]}')
    return {"conjunction": filters.get("conjunction", "and"), "items": filters["items"]}


class LabelStudioProject:
    """One project of one Label Studio, through the SDK (which exchanges a personal access token)."""

    def __init__(self, url: str, api_key: str, project_id: int, page_size: int = 100, client=None):
        if client is None and (not url or not api_key):
            raise ProjectError("--from-project needs LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY in the environment")
        self.url, self.api_key, self.project_id, self.page_size = url, api_key, project_id, page_size
        self.client = client if client is not None else self._call("connect", sdk_client, url, api_key)

    def _call(self, what: str, function, *args, **kwargs):
        try:
            return function(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - SDK/HTTP errors of every kind become one line
            raise ProjectError(f"Label Studio project {self.project_id}: {what}: {type(exc).__name__}: "
                               f"{one_line(exc)}") from None

    @property
    def credentials(self) -> SdkCredentials:
        """The SDK client's header for the image downloads of this job (one token exchange)."""
        return SdkCredentials(self.client, self.api_key)

    def label_config(self) -> str:
        project = self._call("read the project", self.client.projects.get, id=self.project_id)
        return project.label_config or ""

    def backend_extra_params(self):
        """The extra params of the project's (first) ML backend, as Label Studio keeps them; None if none."""
        backends = self._call("list ML backends", self.client.ml.list, project=self.project_id)
        for backend in backends or []:
            if getattr(backend, "extra_params", None):
                return backend.extra_params
        return None

    def task_ids(self, view: int | None = None, filters: dict | None = None) -> list[int]:
        """Ids of the tasks to predict, in Label Studio's order (pages of ids; data is not kept)."""
        query = json.dumps({"filters": filters}) if filters else None
        pages = self._call("list tasks", self.client.tasks.list, project=self.project_id, view=view, query=query,
                           fields="task_only", resolve_uri=False, page_size=self.page_size)
        return self._call("list tasks", lambda: [task.id for task in pages])

    def tasks(self, ids: list[int]) -> Iterator[dict]:
        """{"id", "data"} of the tasks `ids`, fetched a page at a time."""
        for start in range(0, len(ids), self.page_size):
            chunk = ids[start:start + self.page_size]
            query = json.dumps({"selectedItems": {"all": False, "included": chunk}})
            pages = self._call("read tasks", self.client.tasks.list, project=self.project_id, query=query,
                               fields="task_only", resolve_uri=False, page_size=self.page_size)
            found = self._call("read tasks", lambda pages=pages: [{"id": t.id, "data": t.data or {}} for t in pages])
            by_id = {task["id"]: task for task in found}
            for task_id in chunk:
                yield by_id.get(task_id, {"id": task_id, "data": None})

    def import_predictions(self, predictions: list[dict]) -> None:
        if predictions:
            self._call("import predictions", self.client.projects.import_predictions, id=self.project_id,
                       request=predictions)

    def select_version(self, model_version: str) -> None:
        """Make `model_version` the project's prelabeling version (Settings -> Annotation -> Prelabeling)."""
        self._call("set the model version", self.client.projects.update, id=self.project_id,
                   model_version=model_version, show_collab_predictions=True)
