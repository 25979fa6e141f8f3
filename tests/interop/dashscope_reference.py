"""Reference client for DashScope (issue 21): Alibaba's official `dashscope` SDK
(requirements.txt pins it) sends the calls `tests/reference.rs` describes, to a capture server.

Run by `tests/reference.rs` with:
  DASHSCOPE_HTTP_BASE_URL  the capture server's `<root>/api/v1` (read by the SDK at import);
  DASHSCOPE_API_KEY        the key to send;
  REF_CALLS                a JSON list of {"model": ..., "kwargs": {...}}: each is one
                           `VideoSynthesis.async_call(model=..., **kwargs)`, then one
                           `VideoSynthesis.fetch(task)` (the poll, `GET /tasks/{id}`).
The argument the test runner appends (the i2v-mcp binary) is not used. Prints one line per call
and exits 1 if the SDK reports anything but HTTP 200.
"""

import json
import os
import sys

from dashscope import VideoSynthesis
from dashscope.version import __version__


def main() -> int:
    key = os.environ["DASHSCOPE_API_KEY"]
    calls = json.loads(os.environ["REF_CALLS"])
    failed = 0
    for c in calls:
        created = VideoSynthesis.async_call(model=c["model"], api_key=key, **c["kwargs"])
        if created.status_code != 200:
            print(f"FAIL {c['model']}: create HTTP {created.status_code} {created.code} {created.message}")
            failed += 1
            continue
        polled = VideoSynthesis.fetch(created, api_key=key)
        if polled.status_code != 200:
            print(f"FAIL {c['model']}: fetch HTTP {polled.status_code} {polled.code} {polled.message}")
            failed += 1
            continue
        print(f"ok {c['model']}: task {created.output.task_id}, {polled.output.task_status}")
    print(f"dashscope {__version__}: {len(calls) - failed}/{len(calls)} ok")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
