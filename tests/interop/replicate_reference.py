"""Reference client for Replicate (issue 23): the official `replicate` Python client
(requirements.txt pins 1.0.7) sends the calls `tests/reference_replicate.rs` describes, to a
capture server (the project's strict Replicate fake).

Run by `tests/reference_replicate.rs` with:
  REPLICATE_API_TOKEN  the token to send;
  REF_BASE_URL         the capture server's root (`replicate.Client(base_url=...)`);
  REF_CALLS            a JSON list of {"model": "wan-video/<name>", "input": {...},
                       "file": {"field": ..., "path": ...}?, "cancel": bool?}: each is one
                       `client.models.predictions.create(model=..., input=...)` (a `file` is
                       passed as an open file, which the client uploads through the Files API),
                       then one `client.predictions.get(id)` (the poll), or, with "cancel",
                       one `client.predictions.cancel(id)` instead.
The argument the test runner appends (the i2v-mcp binary) is not used. Prints one line per call
and exits 1 if the client raises.
"""

import json
import os
import sys

import replicate
from replicate.__about__ import __version__


def main() -> int:
    client = replicate.Client(
        api_token=os.environ["REPLICATE_API_TOKEN"], base_url=os.environ["REF_BASE_URL"]
    )
    calls = json.loads(os.environ["REF_CALLS"])
    failed = 0
    for c in calls:
        inp = dict(c["input"])
        handle = None
        if c.get("file"):
            handle = open(c["file"]["path"], "rb")
            inp[c["file"]["field"]] = handle
        try:
            created = client.models.predictions.create(model=c["model"], input=inp)
            if c.get("cancel"):
                after = client.predictions.cancel(created.id)
            else:
                after = client.predictions.get(created.id)
            print(f"ok {c['model']}: prediction {created.id}, {after.status}")
        except Exception as e:  # noqa: BLE001 - any failure of the client is a failed call
            print(f"FAIL {c['model']}: {type(e).__name__}: {e}")
            failed += 1
        finally:
            if handle:
                handle.close()
    print(f"replicate {__version__}: {len(calls) - failed}/{len(calls)} ok")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
