"""Reference client for fal.ai (issue 23): the official `fal-client` (requirements.txt pins
1.0.x) sends the calls `tests/reference_fal.rs` describes, to a capture server.

Run by `tests/reference_fal.rs` with:
  FAL_KEY      the key to send (`Authorization: Key <FAL_KEY>`);
  FAL_ROOT     the capture server, http://127.0.0.1:PORT;
  REF_CALLS    a JSON list of {"endpoint", "arguments", "upload": null | {...}, "webhook_url"}:
               each is, when `upload` is set, one `SyncClient.upload(bytes, content_type,
               file_name, repository="fal")` whose URL goes into `arguments[upload.field]`
               (the storage path: initiate, then PUT to the signed URL), then one
               `SyncClient.submit(endpoint, arguments, webhook_url=...)` and one
               `handle.status()`.
The argument the test runner appends (the i2v-mcp binary) is not used. Prints one line per call
and exits 1 on any error.

Pointing fal-client at plain http on 127.0.0.1: its hosts are module constants built at import
(`fal_client.client.QUEUE_URL_FORMAT = f"https://{FAL_QUEUE_RUN_HOST}/"`, `REST_URL =
"https://rest.fal.ai"`); `FAL_QUEUE_RUN_HOST` can change the host but not the https scheme, so the
two constants are replaced below. Both are read at call time (`submit`, `_upload_via_storage`).
"""

import base64
import json
import os
import sys

import fal_client
import fal_client.client as fc
from fal_client._fal_client_version import version as fal_version


def main() -> int:
    root = os.environ["FAL_ROOT"].rstrip("/")
    # The monkeypatch described in the module docstring.
    fc.QUEUE_URL_FORMAT = root + "/"
    fc.REST_URL = root
    client = fal_client.SyncClient(key=os.environ["FAL_KEY"])
    calls = json.loads(os.environ["REF_CALLS"])
    failed = 0
    for c in calls:
        args = dict(c["arguments"])
        try:
            up = c.get("upload")
            if up:
                data = base64.b64decode(up["base64"])
                url = client.upload(
                    data, up["content_type"], up["file_name"], repository="fal"
                )
                args[up["field"]] = url
            handle = client.submit(
                c["endpoint"], arguments=args, webhook_url=c.get("webhook_url")
            )
            status = handle.status(with_logs=False)
            print(f"ok {c['endpoint']}: {handle.request_id} {type(status).__name__}")
        except Exception as e:  # noqa: BLE001 - report every failure, go on
            print(f"FAIL {c['endpoint']}: {type(e).__name__}: {e}")
            failed += 1
    print(f"fal-client {fal_version}: {len(calls) - failed}/{len(calls)} ok")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
