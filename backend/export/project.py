"""`export --from-project ID`: the project's JSON export, its labeling config and its images, through
the Label Studio API (LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY: a legacy token or a personal access
token). Images go through backend.images.ImageLoader, which sends the key to Label Studio only."""

from __future__ import annotations

from backend.export.errors import InputError
from backend.export.sources import LoaderFetcher
from model.reasons import one_line


def fetch_project(project_id: int, env=None):
    """(tasks, image fetcher, labeling config XML) of a project; InputError with a one-line reason."""
    from backend.images import ImageLoader
    from backend.settings import SettingsError, load_settings
    from backend.studio.client import LabelStudioClient, LabelStudioError

    try:
        settings = load_settings(env)
    except SettingsError as exc:
        raise InputError(str(exc)) from None
    if not settings.label_studio_url or not settings.label_studio_api_key:
        raise InputError("--from-project needs LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY in the environment")
    client = LabelStudioClient(settings.label_studio_url, settings.label_studio_api_key)
    try:
        project = client.get_project(project_id)
        tasks = client.export_annotations(project_id)
    except LabelStudioError as exc:
        raise InputError(f"Label Studio: {one_line(exc)}") from None
    if not isinstance(tasks, list):
        raise InputError(f"Label Studio: the export of project {project_id} is not a list of tasks")
    return tasks, LoaderFetcher(ImageLoader(settings)), project.get("label_config")
