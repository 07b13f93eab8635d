"""Upload -> poll -> download against a running Easel server, with nothing but
the third-party `requests` library, to show the API needs no Easel client.

Run by host/tests/api_python.rs (which starts the server), or by hand:
    EASEL_URL=http://127.0.0.1:8080 EASEL_KEY=esk_... python3 test_upload_poll_download.py
"""

import io
import os
import struct
import sys
import time
import zlib

import requests


def png(width, height):
    """A small RGB PNG written by hand (no imaging library needed)."""
    raw = bytearray()
    for y in range(height):
        raw += b"\x00"  # filter type: none
        for x in range(width):
            raw += bytes((x * 255 // width, y * 255 // height, 99))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(raw))) + chunk(b"IEND", b"")


def png_size(data):
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


def main():
    base = os.environ["EASEL_URL"].rstrip("/")
    auth = {"Authorization": "Bearer " + os.environ["EASEL_KEY"]}
    session = requests.Session()

    # 1. Upload an input file.
    r = session.post(base + "/v1/files", headers=auth, files={"file": ("in.png", io.BytesIO(png(120, 60)), "image/png")}, timeout=30)
    assert r.status_code == 201, (r.status_code, r.text)
    file_id = r.json()["id"]

    # 2. Submit a convert job on it (multipart form fields, no waiting).
    r = session.post(
        base + "/v1/image/convert",
        headers=auth,
        files={"image_file_id": (None, file_id), "width": (None, "30"), "format": (None, "png")},
        timeout=30,
    )
    assert r.status_code == 201, (r.status_code, r.text)
    job = r.json()
    assert job["status"] in ("queued", "running", "succeeded"), job

    # 3. Poll until it ends.
    deadline = time.time() + 30
    while job["status"] in ("queued", "running"):
        assert time.time() < deadline, "job did not finish in 30 s"
        time.sleep(0.05)
        r = session.get(base + "/v1/jobs/" + job["id"], headers=auth, timeout=30)
        assert r.status_code == 200, r.text
        job = r.json()
    assert job["status"] == "succeeded", job

    # 4. Download the output through its signed URL (no key needed).
    out = job["outputs"][0]
    url = out["url"] if out["url"].startswith("http") else base + out["url"]
    r = requests.get(url, timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "image/png"
    assert png_size(r.content) == (30, 15), png_size(r.content)

    # 5. And a wrong key is refused.
    r = session.get(base + "/v1/jobs/" + job["id"], headers={"Authorization": "Bearer esk_nope"}, timeout=30)
    assert r.status_code == 401, r.status_code
    print("python requests: upload -> poll -> download OK")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print("FAILED:", e, file=sys.stderr)
        raise
