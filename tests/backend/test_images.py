"""backend.images: sources, SSRF policy, Label Studio auth, limits and decoding (loopback servers only)."""

from __future__ import annotations

import base64
import io
import json
import socket
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from backend.images import ImageError, ImageLoader, decode_image, is_public_address
from backend.settings import load_settings
from tests.backend.fakes import (
    ImageServer,
    data_uri,
    png_bytes,
    send_bytes,
    send_chunked,
    send_nothing_for,
    send_redirect,
)

PNG = png_bytes(30, 20)


def settings_for(*allowed: str, **overrides):
    return load_settings({}, allowed_image_hosts=",".join(allowed), **overrides)


def resolver_to(address: str):
    """A getaddrinfo stand-in that resolves every name to `address` (records the names asked)."""
    asked = []

    def resolve(host, port, type=0):
        asked.append(host)
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (address, port))]

    resolve.asked = asked
    return resolve


# ----------------------------------------------------------------------------- sources
def test_allowed_loopback_host_is_fetched():
    with ImageServer({"/img.png": send_bytes(PNG)}) as server:
        image = ImageLoader(settings_for(server.host_port)).load(f"{server.base}/img.png")
    assert image.size == (30, 20) and image.mode == "RGB"


def test_chunked_response_is_read():
    with ImageServer({"/img.png": send_chunked(PNG, chunk=100)}) as server:
        assert ImageLoader(settings_for(server.host_port)).load(f"{server.base}/img.png").size == (30, 20)


def test_data_uri_is_decoded():
    assert ImageLoader(settings_for()).load(data_uri(PNG)).size == (30, 20)


@pytest.mark.parametrize("value", ["data:image/png;base64,@@@", "data:image/png;base64", "", "   ", 42, None])
def test_bad_data_uri_or_value_is_an_image_error(value):
    with pytest.raises(ImageError):
        ImageLoader(settings_for()).load(value)


# ----------------------------------------------------------------------------- SSRF
@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/img.png",
        "http://localhost:{port}/img.png",
        "http://0x7f000001:{port}/img.png",
        "http://2130706433:{port}/img.png",
        "http://[::1]:{port}/img.png",
        "http://[::ffff:127.0.0.1]:{port}/img.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/x.png",
        "http://192.168.1.1/x.png",
        "http://100.64.0.1/x.png",
        "http://0.0.0.0:{port}/img.png",
    ],
)
def test_private_addresses_are_refused_before_connecting(url):
    with ImageServer({"/img.png": send_bytes(PNG)}) as server:
        started = time.monotonic()
        with pytest.raises(ImageError, match="refused|cannot resolve"):
            ImageLoader(settings_for()).load(url.format(port=server.port))
        assert server.hits == []
        assert time.monotonic() - started < 2


@pytest.mark.parametrize("url", ["file:///etc/passwd", "gopher://127.0.0.1:70/", "ftp://example.com/x.png",
                                 "/etc/passwd", "C:/Windows/win.ini", "javascript:alert(1)"])
def test_other_schemes_are_refused(url):
    with pytest.raises(ImageError, match="unsupported image reference"):
        ImageLoader(settings_for()).load(url)


def test_name_resolving_to_private_address_is_refused():
    resolve = resolver_to("10.1.2.3")
    with pytest.raises(ImageError, match="non-public address 10.1.2.3"):
        ImageLoader(settings_for(), resolve=resolve).load("http://images.example.com/x.png")
    assert resolve.asked == ["images.example.com"]


def test_any_private_address_among_several_is_refused():
    def resolve(host, port, type=0):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    with pytest.raises(ImageError, match="non-public address 127.0.0.1"):
        ImageLoader(settings_for(), resolve=resolve).load("http://mixed.example.com/x.png")


def test_connects_to_the_checked_address_and_keeps_the_host_header():
    with ImageServer({"/img.png": send_bytes(PNG)}) as server:
        resolve = resolver_to("127.0.0.1")
        loader = ImageLoader(settings_for(f"images.example:{server.port}"), resolve=resolve)
        assert loader.load(f"http://images.example:{server.port}/img.png").size == (30, 20)
    assert resolve.asked == ["images.example"]  # one lookup, then a connection to that address
    assert server.hits[0][1]["Host"] == f"images.example:{server.port}"


def test_redirect_to_a_private_address_is_refused():
    with ImageServer({"/img.png": send_bytes(PNG)}) as target:
        with ImageServer({"/start": send_redirect(f"{target.base}/img.png")}) as allowed:
            with pytest.raises(ImageError, match="refused"):
                ImageLoader(settings_for(allowed.host_port)).load(f"{allowed.base}/start")
            assert allowed.paths_hit() == ["/start"]
        assert target.hits == []


def test_redirect_to_metadata_address_is_refused():
    with ImageServer({"/start": send_redirect("http://169.254.169.254/latest/meta-data/")}) as allowed:
        with pytest.raises(ImageError, match="169.254.169.254"):
            ImageLoader(settings_for(allowed.host_port)).load(f"{allowed.base}/start")


def test_redirect_to_another_scheme_is_refused():
    with ImageServer({"/start": send_redirect("file:///etc/passwd")}) as allowed:
        with pytest.raises(ImageError, match="scheme"):
            ImageLoader(settings_for(allowed.host_port)).load(f"{allowed.base}/start")


def test_redirect_within_allowed_host_is_followed_and_loops_end():
    routes = {"/a": send_redirect("/b", 301), "/b": send_redirect("/img.png", 307), "/img.png": send_bytes(PNG),
              "/loop": send_redirect("/loop")}
    with ImageServer(routes) as server:
        loader = ImageLoader(settings_for(server.host_port, max_redirects=3))
        assert loader.load(f"{server.base}/a").size == (30, 20)
        with pytest.raises(ImageError, match="MAX_REDIRECTS=3"):
            loader.load(f"{server.base}/loop")
        assert server.paths_hit().count("/loop") == 4


def test_public_address_classification():
    assert is_public_address("93.184.216.34") and is_public_address("2606:2800:220:1::1")
    for address in ("127.0.0.1", "10.0.0.1", "172.16.0.1", "192.168.0.1", "169.254.169.254", "::1", "fe80::1",
                    "fd00:ec2::254", "::ffff:10.0.0.1", "2002:7f00:1::", "224.0.0.1", "0.0.0.0", "100.64.0.1"):
        assert not is_public_address(address), address


# ----------------------------------------------------------------------------- limits
def test_declared_size_over_the_cap_is_refused():
    with ImageServer({"/big.png": send_bytes(b"\0" * 5000)}) as server:
        with pytest.raises(ImageError, match="MAX_IMAGE_BYTES=1000"):
            ImageLoader(settings_for(server.host_port, max_image_bytes=1000)).load(f"{server.base}/big.png")


def test_chunked_body_over_the_cap_is_refused():
    with ImageServer({"/big": send_chunked(b"\0" * 50_000, chunk=1000)}) as server:
        with pytest.raises(ImageError, match="MAX_IMAGE_BYTES=10000"):
            ImageLoader(settings_for(server.host_port, max_image_bytes=10_000)).load(f"{server.base}/big")


def test_data_uri_over_the_cap_is_refused():
    with pytest.raises(ImageError, match="MAX_IMAGE_BYTES"):
        ImageLoader(settings_for(max_image_bytes=1000)).load(data_uri(b"\0" * 5000))


def test_hanging_server_hits_the_read_timeout():
    with ImageServer({"/hang": send_nothing_for(3)}) as server:
        loader = ImageLoader(settings_for(server.host_port, image_read_timeout_s=0.3))
        started = time.monotonic()
        with pytest.raises(ImageError, match="cannot download|download failed"):
            loader.load(f"{server.base}/hang")
        assert time.monotonic() - started < 1.5


def test_slow_drip_hits_the_total_timeout():
    drip = send_chunked(PNG * 20, chunk=1, pause_s=0.02)
    with ImageServer({"/drip": drip}) as server:
        loader = ImageLoader(settings_for(server.host_port, image_total_timeout_s=0.6, image_read_timeout_s=0.5))
        started = time.monotonic()
        with pytest.raises(ImageError, match="total timeout|download failed"):
            loader.load(f"{server.base}/drip")
        assert time.monotonic() - started < 1.5


def test_http_error_status_is_an_image_error():
    with ImageServer({}) as server:
        with pytest.raises(ImageError, match="HTTP 404"):
            ImageLoader(settings_for(server.host_port)).load(f"{server.base}/missing.png")


# ----------------------------------------------------------------------------- Label Studio
def jwt(claims: dict) -> str:
    def part(obj):
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


def upload_route(valid_header: dict):
    """Serves the PNG only with the right Authorization header (401 otherwise), like LS."""

    def route(handler):
        ok = handler.headers.get("Authorization") == valid_header["value"]
        send_bytes(PNG if ok else b"{}", 200 if ok else 401)(handler)

    return route


def test_legacy_token_goes_to_label_studio_only():
    valid = {"value": "Token legacy-key-123"}
    with ImageServer({"/img.png": send_bytes(PNG)}) as other:
        with ImageServer({"/data/upload/1/img.png": upload_route(valid)}) as ls:
            settings = load_settings({"LABEL_STUDIO_URL": ls.base, "LABEL_STUDIO_API_KEY": "legacy-key-123",
                                      "ALLOWED_IMAGE_HOSTS": other.host_port})
            loader = ImageLoader(settings)
            assert loader.load("/data/upload/1/img.png").size == (30, 20)
            assert loader.load(f"{other.base}/img.png").size == (30, 20)
        assert "Authorization" not in other.hits[0][1]


def test_label_studio_paths_with_dot_dot_are_refused_and_need_the_url():
    with pytest.raises(ImageError, match="LABEL_STUDIO_URL is not set"):
        ImageLoader(settings_for()).load("/data/upload/1/img.png")
    settings = load_settings({"LABEL_STUDIO_URL": "http://127.0.0.1:9"})
    for value in ("/data/upload/../../etc/passwd", "/data/upload/%2e%2e/%2e%2e/x.png"):
        with pytest.raises(ImageError, match=r"'\.\.'"):
            ImageLoader(settings).load(value)


def test_personal_access_token_is_exchanged_and_reused_then_retried_after_401():
    refresh = jwt({"token_type": "refresh", "exp": time.time() + 10**9})
    access_tokens = [jwt({"token_type": "access", "exp": time.time() + 300, "n": n}) for n in range(3)]
    exchanges = []
    valid = {"value": f"Bearer {access_tokens[0]}"}

    def refresh_route(handler):
        body = json.loads(handler.rfile.read(int(handler.headers["Content-Length"])))
        exchanges.append(body["refresh"])
        send_bytes(json.dumps({"access": access_tokens[len(exchanges) - 1]}).encode(), 200, "application/json")(
            handler
        )

    routes = {"/api/token/refresh": refresh_route, "/data/upload/1/img.png": upload_route(valid)}
    with ImageServer(routes) as ls:
        loader = ImageLoader(load_settings({"LABEL_STUDIO_URL": ls.base, "LABEL_STUDIO_API_KEY": refresh}))
        loader.load("/data/upload/1/img.png")
        loader.load("/data/upload/1/img.png")
        assert exchanges == [refresh]  # swapped once, the access token reused
        valid["value"] = f"Bearer {access_tokens[1]}"  # Label Studio revoked the first access token
        loader.load("/data/upload/1/img.png")
        assert len(exchanges) == 2
        auth_sent = [headers.get("Authorization") for path, headers in ls.hits if path.startswith("/data/")]
    assert all(header.startswith("Bearer ") and refresh not in header for header in auth_sent)


def test_expiring_access_token_is_refreshed_before_use():
    refresh = jwt({"token_type": "refresh", "exp": time.time() + 10**9})
    exchanges = []

    def refresh_route(handler):
        exchanges.append(1)
        token = jwt({"token_type": "access", "exp": time.time() + 5})  # inside the 30 s margin
        send_bytes(json.dumps({"access": token}).encode(), 200, "application/json")(handler)

    with ImageServer({"/api/token/refresh": refresh_route, "/data/upload/1/img.png": send_bytes(PNG)}) as ls:
        loader = ImageLoader(load_settings({"LABEL_STUDIO_URL": ls.base, "LABEL_STUDIO_API_KEY": refresh}))
        loader.load("/data/upload/1/img.png")
        loader.load("/data/upload/1/img.png")
    assert len(exchanges) == 2


def test_cloud_uri_is_presigned_by_label_studio_and_the_key_stays_there():
    bucket_image = "/signed.png"
    with ImageServer({bucket_image: send_bytes(PNG)}) as bucket:
        def presign_route(handler):
            query = handler.path.split("fileuri=", 1)[1]
            assert base64.urlsafe_b64decode(query).decode() == "s3://bucket/dir/img.png"
            assert handler.headers.get("Authorization") == "Token key-1"
            send_redirect(f"{bucket.base}{bucket_image}?X-Amz-Signature=abc", 303)(handler)

        with ImageServer({"/tasks/7/presign/": presign_route}) as ls:
            settings = load_settings({"LABEL_STUDIO_URL": ls.base, "LABEL_STUDIO_API_KEY": "key-1",
                                      "ALLOWED_IMAGE_HOSTS": bucket.host_port})
            loader = ImageLoader(settings)
            assert loader.load("s3://bucket/dir/img.png", task_id=7).size == (30, 20)
            with pytest.raises(ImageError, match="task id"):
                loader.load("gs://bucket/img.png", task_id=None)
        assert "Authorization" not in bucket.hits[0][1]


# ----------------------------------------------------------------------------- local files
def test_local_files_are_confined_to_the_root(tmp_path):
    root = tmp_path / "root"
    (root / "images").mkdir(parents=True)
    (root / "images" / "ok.png").write_bytes(PNG)
    (tmp_path / "secret.png").write_bytes(PNG)
    (root / "images" / "link.png").symlink_to(tmp_path / "secret.png")
    loader = ImageLoader(load_settings({"LOCAL_FILES_DOCUMENT_ROOT": str(root)}))
    assert loader.load("/data/local-files/?d=images/ok.png").size == (30, 20)
    for relative in ("../secret.png", "images/../../secret.png", str(tmp_path / "secret.png"), "/etc/passwd",
                     "images/link.png"):
        with pytest.raises(ImageError, match="outside LOCAL_FILES_DOCUMENT_ROOT"):
            loader.load(f"/data/local-files/?d={relative}")
    with pytest.raises(ImageError, match="not found"):
        loader.load("/data/local-files/?d=images/nope.png")


# ----------------------------------------------------------------------------- decoding
def png_claiming(width: int, height: int) -> bytes:
    """A 1x1 PNG whose header says width x height (CRC fixed up): a decompression bomb's header."""
    data = bytearray(png_bytes(1, 1))
    struct.pack_into(">II", data, 16, width, height)
    struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def noise(width=64, height=64) -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8))


SETTINGS = load_settings({})


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"<html><body>not an image</body></html>", "allowed format"),
        (png_claiming(8000, 8000), "MAX_IMAGE_PIXELS"),
        (png_claiming(20000, 20000), "pixels"),
        (encoded(noise(), "PNG")[:3000], "truncated"),
        (encoded(noise(), "JPEG")[:1500], "truncated"),
        (encoded(Image.new("RGB", (8, 8)), "PPM"), "allowed format"),
        (encoded(Image.new("RGB", (16, 16)), "ICO"), "allowed format"),
    ],
)
def test_bad_image_bytes_are_refused(data, reason):
    with pytest.raises(ImageError, match=reason):
        decode_image(data, SETTINGS)


def test_exif_orientation_is_applied():
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    image = decode_image(encoded(Image.new("RGB", (40, 20), (255, 0, 0)), "JPEG", exif=exif.tobytes()), SETTINGS)
    assert image.size == (20, 40)


@pytest.mark.parametrize(
    "image",
    [
        Image.new("RGBA", (5, 4), (10, 20, 30, 0)),
        Image.new("LA", (5, 4), (10, 128)),
        Image.new("L", (5, 4), 7),
        Image.new("1", (5, 4), 1),
        Image.new("CMYK", (5, 4), (0, 255, 255, 0)),
        Image.fromarray(np.full((4, 5), 60000, dtype=np.uint16)),
        Image.fromarray(np.linspace(-1, 1, 20, dtype=np.float32).reshape(4, 5)),
    ],
    ids=lambda image: image.mode,
)
def test_any_mode_becomes_rgb(image):
    fmt = "TIFF" if image.mode in ("F", "CMYK") else "PNG"
    decoded = decode_image(encoded(image, fmt), SETTINGS)
    assert decoded.mode == "RGB" and decoded.size == (5, 4)


def test_transparent_palette_and_animated_gif_become_rgb():
    palette = Image.new("P", (6, 6), 0)
    decoded = decode_image(encoded(palette, "PNG", transparency=0), SETTINGS)
    assert decoded.mode == "RGB" and decoded.getpixel((0, 0)) == (255, 255, 255)
    frames = [Image.new("RGB", (6, 6), color) for color in ((255, 0, 0), (0, 255, 0))]
    gif = encoded(frames[0], "GIF", save_all=True, append_images=frames[1:])
    first = decode_image(gif, SETTINGS)
    assert first.mode == "RGB" and first.getpixel((0, 0))[0] > 200


def test_extreme_aspect_ratios_decode():
    assert decode_image(encoded(Image.new("RGB", (1, 1)), "PNG"), SETTINGS).size == (1, 1)
    assert decode_image(encoded(Image.new("RGB", (20000, 10)), "PNG"), SETTINGS).size == (20000, 10)


# ----------------------------------------------------------------------------- TLS
def self_signed(directory, name: str) -> tuple[str, str]:
    import subprocess

    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", f"/CN={name}",
                    "-addext", f"subjectAltName=DNS:{name}"], check=True, capture_output=True)
    return str(cert), str(key)


def test_https_verifies_the_name_while_connecting_to_the_checked_address(tmp_path, monkeypatch):
    cert, key = self_signed(tmp_path, "images.test")
    with ImageServer({"/img.png": send_bytes(PNG)}, tls=(cert, key)) as server:
        url = f"https://images.test:{server.port}/img.png"
        settings = settings_for(f"images.test:{server.port}")
        with pytest.raises(ImageError, match="cannot download from images.test: SSLError"):
            ImageLoader(settings, resolve=resolver_to("127.0.0.1")).load(url)  # not signed by a known CA
        monkeypatch.setattr("backend.images.loader._ca_bundle", lambda: cert)
        assert ImageLoader(settings, resolve=resolver_to("127.0.0.1")).load(url).size == (30, 20)
        wrong_name = f"https://other.test:{server.port}/img.png"
        with pytest.raises(ImageError, match="SSLError"):
            ImageLoader(settings_for(f"other.test:{server.port}"), resolve=resolver_to("127.0.0.1")).load(wrong_name)
        insecure = settings_for(f"other.test:{server.port}", verify_tls=False)
        monkeypatch.setattr("backend.images.loader._ca_bundle", lambda: None)
        assert ImageLoader(insecure, resolve=resolver_to("127.0.0.1")).load(wrong_name).size == (30, 20)
