"""`export --from-project ID`: the project's tasks, its labeling config and its images, through the
Label Studio API (LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY: a legacy token or a personal access
token, exchanged by the SDK). The tasks come from an export snapshot (created, polled, downloaded to
a temporary file: Label Studio 1.23 marks the one-request export deprecated, and it times out on big
projects) and are read back one at a time. Images go through backend.images.ImageLoader, with the
SDK client's token, which is sent to Label Studio only."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

from backend.export.errors import InputError
from backend.export.sources import LoaderFetcher
from model.reasons import one_line


def iter_export(path: Path) -> Iterator[dict]:
    """The tasks of a JSON export file, one at a time (ijson: the file is never loaded whole)."""
    import ijson

    with path.open("rb") as handle:
        try:
            for task in ijson.items(handle, "item", use_float=True):
                if isinstance(task, dict):
                    yield task
        except ijson.JSONError as exc:
            raise InputError(f"Label Studio: the export is not a JSON list of tasks ({one_line(exc)})") from None


class ProjectExport:
    """(tasks, image fetcher, labeling config XML) of a project; a context manager that removes the
    downloaded export afterwards."""

    def __init__(self, project_id: int, env=None):
        self.project_id, self.env = project_id, env
        self._folder = None

    def __enter__(self):
        from backend.images import ImageLoader
        from backend.settings import SettingsError, load_settings
        from backend.studio.client import LabelStudioClient, LabelStudioError

        try:
            settings = load_settings(self.env)
        except SettingsError as exc:
            raise InputError(str(exc)) from None
        if not settings.label_studio_url or not settings.label_studio_api_key:
            raise InputError("--from-project needs LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY in the environment")
        client = LabelStudioClient(settings.label_studio_url, settings.label_studio_api_key)
        self._folder = tempfile.TemporaryDirectory(prefix="nextchat-export-")
        try:
            project = client.get_project(self.project_id)
            path = client.export_snapshot(self.project_id, Path(self._folder.name) / "export.json")
            loader = ImageLoader(settings, credentials=client.credentials)
        except LabelStudioError as exc:
            self._folder.cleanup()
            raise InputError(f"Label Studio: {one_line(exc)}") from None
        return iter_export(path), LoaderFetcher(loader), project.get("label_config")

    def __exit__(self, *exc_info) -> None:
        if self._folder is not None:
            self._folder.cleanup()
