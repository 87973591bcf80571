"""Where task images come from: a local folder (for a JSON export) or the backend's image loader.

Both are callables `fetch(value, task_id) -> bytes` that raise ImageUnavailable with a one-line
reason. `LocalImageRoot` maps a Label Studio image reference to files under ROOT:

  /data/local-files/?d=images/a.png          -> ROOT/images/a.png, ROOT/a.png
  /data/upload/3/1a2b-a.png                  -> ROOT/upload/3/1a2b-a.png, ROOT/3/1a2b-a.png, ROOT/1a2b-a.png
  /storage-data/uploaded/?filepath=upload/.. -> ROOT/upload/..., ...
  http(s)://host/some/a.png                  -> ROOT/some/a.png, ROOT/a.png
  data:image/png;base64,...                  -> decoded directly
  images/a.png (a plain path)                -> ROOT/images/a.png, ROOT/a.png

So ROOT may be Label Studio's media folder (which holds upload/), the local-files document root, or a
flat folder of the image files. Paths never leave ROOT.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from urllib.parse import parse_qs, unquote, urlsplit

from backend.export.build import ImageUnavailable
from backend.images.decode import ImageError, decode_data_uri


def data_uri_bytes(value: str) -> bytes:
    try:
        return decode_data_uri(value)
    except ImageError as exc:
        raise ImageUnavailable(str(exc)) from None


def relative_path(value: str) -> str:
    """The path part of an image reference, without Label Studio's URL prefixes."""
    parts = urlsplit(value)
    query = parse_qs(parts.query)
    if parts.path.rstrip("/").endswith("/data/local-files") and query.get("d"):
        return query["d"][0]
    if query.get("filepath"):
        return query["filepath"][0]
    path = unquote(parts.path)
    if path.startswith("/data/upload/"):
        return path[len("/data/"):]
    return path.lstrip("/")


def candidate_paths(value: str) -> list[PurePosixPath]:
    """Relative paths to try under ROOT, most specific first."""
    relative = PurePosixPath(relative_path(value))
    parts = [part for part in relative.parts if part not in ("", ".", "/")]
    if not parts or ".." in parts:
        return []
    return [PurePosixPath(*parts[start:]) for start in range(len(parts))]


class LocalImageRoot:
    """Finds a task's image in a local folder (the --images ROOT of a JSON export)."""

    def __init__(self, root):
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise ValueError(f"--images {root}: not a folder")

    def __call__(self, value: str, task_id=None) -> bytes:
        if not isinstance(value, str) or not value:
            raise ImageUnavailable("task has no image value")
        if value.startswith("data:"):
            return data_uri_bytes(value)
        for candidate in candidate_paths(value):
            path = (self.root / candidate).resolve()
            if path.is_relative_to(self.root) and path.is_file():
                return path.read_bytes()
        name = PurePosixPath(relative_path(value)).name or value[:60]
        raise ImageUnavailable(f"{name} not found under the images folder")


class LoaderFetcher:
    """Adapts backend.images.ImageLoader (Label Studio URL + key, http(s), data:, cloud presign)."""

    def __init__(self, loader=None):
        self._loader = loader

    def _get_loader(self):
        if self._loader is None:
            from backend.images import ImageLoader
            from backend.settings import load_settings

            self._loader = ImageLoader(load_settings())
        return self._loader

    def __call__(self, value: str, task_id=None) -> bytes:
        from backend.images import ImageError

        loader = self._get_loader()
        try:
            if hasattr(loader, "load_bytes"):
                return loader.load_bytes(value, task_id)
            return loader(value, task_id)
        except ImageError as exc:
            raise ImageUnavailable(str(exc)) from None
