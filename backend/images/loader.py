"""Load a task's image safely: Label Studio files, http(s) URLs, data: URIs, presigned cloud URIs.

Every failure is an `ImageError` with a one-line reason (never the URL's query, never a key).
Network policy (SSRF): only http and https; every hop (redirects are followed by hand) resolves the
host, refuses it if ANY address is not public (private, loopback, link-local/metadata, reserved,
multicast, ...) unless the host is Label Studio's or listed in ALLOWED_IMAGE_HOSTS, and then connects
to the very address it checked (no second DNS lookup to rebind). The Label Studio key is sent to
Label Studio's origin only. Downloads have connect/read/total timeouts and a byte cap; decoding has a
format allowlist and a pixel cap checked from the header before any pixel is decoded.
"""

from __future__ import annotations

import base64
import ipaddress
import socket
from pathlib import Path
from urllib.parse import parse_qs, unquote, urljoin, urlsplit

import urllib3
from PIL import Image

from backend.deadline import Deadline
from backend.images.decode import ImageError, decode_data_uri, decode_image
from backend.settings import Settings
from backend.studio.credentials import LabelStudioCredentials, TokenExchangeError

LS_PATH_PREFIXES = ("/data/", "/storage-data/", "/tasks/", "upload/")
CLOUD_SCHEMES = ("s3", "gs", "gcs", "azure-blob")
REDIRECT_CODES = (301, 302, 303, 307, 308)
CHUNK_BYTES = 64 * 1024


def is_public_address(text: str) -> bool:
    """True for a globally routable unicast address (IPv4-mapped/6to4/Teredo v6 judged by the v4)."""
    ip = ipaddress.ip_address(text.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None:
            ip = embedded
    return ip.is_global and not ip.is_multicast


def _split_host_port(entry: str) -> tuple[str, int | None]:
    entry = entry.strip().lower()
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else None
    if entry.count(":") == 1:
        host, port = entry.split(":")
        return host, int(port)
    return entry, None


class ImageLoader:
    """Turns a task's image value into an RGB PIL image, or raises ImageError."""

    def __init__(self, settings: Settings, resolve=socket.getaddrinfo, credentials=None):
        self.settings = settings
        self._resolve = resolve
        self._ls = urlsplit(settings.label_studio_url) if settings.label_studio_url else None
        self._credentials = credentials or LabelStudioCredentials(
            settings.label_studio_url, settings.label_studio_api_key
        )
        self._allowed = {_split_host_port(entry) for entry in settings.allowed_image_hosts}

    # ----------------------------------------------------------------------------- entry points
    def load(self, value, task_id=None, deadline: Deadline | None = None) -> Image.Image:
        data = self.load_bytes(value, task_id, deadline)
        return decode_image(data, self.settings)

    def load_bytes(self, value, task_id=None, deadline: Deadline | None = None) -> bytes:
        if not isinstance(value, str) or not value.strip():
            raise ImageError("image value must be a non-empty string")
        value = value.strip()
        total = self.settings.image_total_timeout_s
        if deadline is None or deadline.remaining() > total:
            deadline = Deadline.after(total)
        if value.startswith("data:"):
            return decode_data_uri(value, self.settings.max_image_bytes)
        if value.startswith("/data/local-files/") and self.settings.local_files_document_root:
            return self._read_local_file(value)
        scheme = urlsplit(value).scheme.lower()
        if scheme in ("http", "https"):
            return self._fetch(value, deadline)
        if value.startswith(LS_PATH_PREFIXES):
            return self._fetch(self._label_studio_url(value), deadline)
        if scheme in CLOUD_SCHEMES:
            return self._fetch(self._presign_url(value, task_id), deadline)
        raise ImageError(f"unsupported image reference (scheme {scheme or 'none'!r})")

    # ----------------------------------------------------------------------------- sources
    def _label_studio_url(self, path: str) -> str:
        if self._ls is None:
            raise ImageError("image is a Label Studio path but LABEL_STUDIO_URL is not set")
        plain_path = unquote(urlsplit(path).path)
        if ".." in plain_path.split("/"):
            raise ImageError("refused: '..' in a Label Studio path")
        return f"{self.settings.label_studio_url}/{path.lstrip('/')}"

    def _presign_url(self, uri: str, task_id) -> str:
        if not isinstance(task_id, int) or isinstance(task_id, bool):
            raise ImageError("cloud storage URI needs the task id to be presigned")
        encoded = base64.urlsafe_b64encode(uri.encode("utf-8")).decode("ascii")
        return self._label_studio_url(f"/tasks/{task_id}/presign/?fileuri={encoded}")

    def _read_local_file(self, value: str) -> bytes:
        relative = parse_qs(urlsplit(value).query).get("d", [""])[0]
        if not relative:
            raise ImageError("local-files URL without ?d=")
        root = Path(self.settings.local_files_document_root).resolve()
        target = (root / relative).resolve()  # resolves symlinks: a link out of root is caught below
        if not target.is_relative_to(root):
            raise ImageError("refused: local file outside LOCAL_FILES_DOCUMENT_ROOT")
        if not target.is_file():
            raise ImageError("local file not found")
        if target.stat().st_size > self.settings.max_image_bytes:
            raise ImageError(f"local file larger than MAX_IMAGE_BYTES={self.settings.max_image_bytes}")
        return target.read_bytes()

    # ----------------------------------------------------------------------------- network
    def _host_exempt(self, host: str, port: int) -> bool:
        if self._ls is not None and host == (self._ls.hostname or "") and port == self._port(self._ls):
            return True
        return (host, None) in self._allowed or (host, port) in self._allowed

    def _is_label_studio(self, parts) -> bool:
        ls = self._ls
        return (
            ls is not None
            and parts.scheme.lower() == ls.scheme.lower()
            and (parts.hostname or "") == (ls.hostname or "")
            and self._port(parts) == self._port(ls)
        )

    @staticmethod
    def _port(parts) -> int:
        try:
            port = parts.port
        except ValueError:
            raise ImageError("invalid port in URL") from None
        return port or (443 if parts.scheme.lower() == "https" else 80)

    def _checked_addresses(self, host: str, port: int) -> list[str]:
        try:
            infos = self._resolve(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError, OSError):
            raise ImageError(f"cannot resolve host {host!r}") from None
        addresses = list(dict.fromkeys(info[4][0] for info in infos))
        if not addresses:
            raise ImageError(f"cannot resolve host {host!r}")
        if not self._host_exempt(host, port):
            for address in addresses:
                if not is_public_address(address):
                    raise ImageError(
                        f"refused: host {host!r} resolves to non-public address {address}"
                        " (add it to ALLOWED_IMAGE_HOSTS to allow)"
                    )
        return addresses

    def _fetch(self, url: str, deadline: Deadline) -> bytes:
        retried_auth = False
        for _hop in range(self.settings.max_redirects + 1):
            parts = urlsplit(url)
            if parts.scheme.lower() not in ("http", "https"):
                raise ImageError(f"refused: scheme {parts.scheme!r} (only http, https, data)")
            if not parts.hostname:
                raise ImageError("URL without a host")
            port = self._port(parts)
            addresses = self._checked_addresses(parts.hostname.lower(), port)
            headers = {"User-Agent": "nextchat-ls", "Accept": "image/*,*/*;q=0.8"}
            if self._is_label_studio(parts):
                try:
                    headers.update(self._credentials.headers())
                except TokenExchangeError as exc:
                    raise ImageError(f"Label Studio {exc}") from None
            pool, response = self._open(parts, port, addresses, headers, deadline)
            try:
                if response.status in REDIRECT_CODES and response.headers.get("Location"):
                    url = urljoin(url, response.headers["Location"])
                    continue
                if response.status == 401 and self._retry_with_new_token(parts, retried_auth):
                    retried_auth = True
                    continue
                if response.status != 200:
                    raise ImageError(f"HTTP {response.status} from {parts.hostname}")
                return self._read_capped(response, deadline)
            finally:
                response.close()
                pool.close()
        raise ImageError(f"more than MAX_REDIRECTS={self.settings.max_redirects} redirects")

    def _retry_with_new_token(self, parts, already_retried: bool) -> bool:
        """After a 401 from Label Studio: drop the cached access token and try once more."""
        if already_retried or self._credentials.kind != "refresh" or not self._is_label_studio(parts):
            return False
        self._credentials.invalidate()
        return True

    def _open(self, parts, port, addresses, headers, deadline):
        """Connect to one of the checked addresses and send the GET; returns (pool, open response)."""
        host_header = parts.netloc.rsplit("@", 1)[-1]
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        last_error = "no address"
        for address in addresses:
            if deadline.expired():
                break
            timeout = urllib3.Timeout(
                connect=min(self.settings.image_connect_timeout_s, deadline.remaining()),
                read=min(self.settings.image_read_timeout_s, deadline.remaining()),
            )
            pool = self._pool(parts, address, port, timeout)
            try:
                return pool, pool.urlopen(
                    "GET", target, headers={**headers, "Host": host_header}, redirect=False,
                    retries=False, preload_content=False, timeout=timeout, release_conn=False,
                )
            except urllib3.exceptions.HTTPError as exc:
                last_error = type(exc).__name__
                pool.close()
        raise ImageError(f"cannot download from {parts.hostname}: {last_error}")

    def _pool(self, parts, address: str, port: int, timeout):
        if parts.scheme.lower() == "https":
            verify = self.settings.verify_tls
            return urllib3.HTTPSConnectionPool(
                address, port, timeout=timeout, retries=False, maxsize=1,
                cert_reqs="CERT_REQUIRED" if verify else "CERT_NONE",
                ca_certs=_ca_bundle() if verify else None,
                server_hostname=parts.hostname, assert_hostname=parts.hostname if verify else False,
            )
        return urllib3.HTTPConnectionPool(address, port, timeout=timeout, retries=False, maxsize=1)

    def _read_capped(self, response, deadline: Deadline) -> bytes:
        cap = self.settings.max_image_bytes
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > cap:
            raise ImageError(f"image larger than MAX_IMAGE_BYTES={cap} ({declared} bytes declared)")
        chunks, size = [], 0
        try:
            while True:
                if deadline.expired():
                    raise ImageError("download took longer than the total timeout")
                _limit_socket_wait(response, min(self.settings.image_read_timeout_s, deadline.remaining()))
                chunk = response.read1(CHUNK_BYTES)
                if not chunk:
                    break
                size += len(chunk)
                if size > cap:
                    raise ImageError(f"image larger than MAX_IMAGE_BYTES={cap}")
                chunks.append(chunk)
        except urllib3.exceptions.HTTPError as exc:
            raise ImageError(f"download failed: {type(exc).__name__}") from None
        except OSError as exc:
            raise ImageError(f"download failed: {type(exc).__name__}") from None
        return b"".join(chunks)


def _limit_socket_wait(response, seconds: float) -> None:
    """Make the next socket read give up after `seconds` (so the total deadline holds)."""
    sock = getattr(getattr(response, "connection", None), "sock", None)
    if sock is not None:
        sock.settimeout(max(seconds, 0.001))


def _ca_bundle() -> str | None:
    try:
        import certifi
    except ImportError:
        return None
    return certifi.where()
