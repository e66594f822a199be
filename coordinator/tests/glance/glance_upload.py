"""Creates an image in Glance, uploads a file into it and waits until it is
active. Run by glance-lab.sh upload; prints only the image id.

Usage: glance_upload.py GLANCE_URL FILE DISK_FORMAT NAME TIMEOUT_SECONDS

The plain v2 upload: POST /v2/images (container_format bare), then
PUT /v2/images/{id}/file with the bytes (Glance answers 204 once they are
stored and the image is active), then GET /v2/images/{id} until active.
When the upload or the wait fails, the image is deleted (best effort) so
that no queued image is left behind, and the error goes to stderr.
"""

import sys
import time

import requests


def fail(msg, resp=None, cleanup=None):
    if resp is not None:
        msg += f": HTTP {resp.status_code} {resp.text.strip()[:500]}"
    if cleanup is not None:
        session, url = cleanup
        try:
            session.delete(url, timeout=10)
        except requests.RequestException:
            pass
    sys.exit(f"glance-lab: {msg}")


def main():
    if len(sys.argv) != 6:
        sys.exit(__doc__)
    url, path, disk_format, name, timeout = sys.argv[1:]
    url = url.rstrip("/")
    deadline = time.monotonic() + float(timeout)
    s = requests.Session()
    # Glance's errors are HTML unless JSON is asked for.
    s.headers["Accept"] = "application/json"

    r = s.post(
        f"{url}/v2/images",
        json={"name": name, "disk_format": disk_format, "container_format": "bare"},
        timeout=30,
    )
    if r.status_code != 201:
        fail("creating the image failed", r)
    image_id = r.json()["id"]
    image_url = f"{url}/v2/images/{image_id}"
    cleanup = (s, image_url)

    with open(path, "rb") as f:
        r = s.put(
            f"{image_url}/file",
            data=f,
            headers={"Content-Type": "application/octet-stream"},
            timeout=max(30.0, float(timeout)),
        )
    if r.status_code != 204:
        fail(f"uploading {path} into image {image_id} failed", r, cleanup)

    while True:
        r = s.get(image_url, timeout=30)
        if r.status_code != 200:
            fail(f"reading image {image_id} failed", r, cleanup)
        status = r.json()["status"]
        if status == "active":
            break
        if status in ("killed", "deleted", "pending_delete"):
            fail(f"image {image_id} is {status} after the upload", None, cleanup)
        if time.monotonic() > deadline:
            fail(f"image {image_id} still {status} after {timeout} s", None, cleanup)
        time.sleep(0.2)
    print(image_id)


if __name__ == "__main__":
    try:
        main()
    except requests.RequestException as e:
        sys.exit(f"glance-lab: request to Glance failed: {e}")
