"""Per-call server cost (issue 26): what a framework that starts `i2v-mcp serve` for every tool
call (LangChain's default) pays each time. For each binary given, N rounds on one warm data dir:
spawn -> `initialize` answered, -> a `tools/call` (list_tasks) answered, and stdin closed -> the
process gone. With `--beside`, a long-running server holds the data dir meanwhile (the case the
coordination exists for; a binary that refuses it shows as refused).

Usage: python3 bench/spawn.py [--rounds N] [--beside] BINARY [BINARY ...]
Prints one line per binary: median and p90 of each phase in ms.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path


def env_for(root: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not (k.endswith("_API_KEY") or k.startswith("I2V_MCP_"))}
    (root / "config.toml").write_text("")
    env.update(
        HOME=str(root),
        I2V_MCP_CONFIG=str(root / "config.toml"),
        I2V_MCP_DATA_DIR=str(root / "data"),
        I2V_MCP_OUTPUT_DIR=str(root / "videos"),
        RUST_LOG="error",
    )
    return env


def line(obj: dict) -> bytes:
    return (json.dumps(obj) + "\n").encode()


INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}},
}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}
CALL = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "list_tasks", "arguments": {}}}


def one_round(binary: str, env: dict) -> tuple[float, float, float] | None:
    t0 = time.monotonic()
    p = subprocess.Popen([binary, "serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    assert p.stdin and p.stdout
    p.stdin.write(line(INIT))
    p.stdin.flush()
    first = p.stdout.readline()
    t_init = time.monotonic() - t0
    if not first:
        p.wait(10)
        return None  # refused (exited without answering)
    p.stdin.write(line(INITIALIZED) + line(CALL))
    p.stdin.flush()
    answer = p.stdout.readline()
    t_call = time.monotonic() - t0
    assert b'"id":2' in answer, answer[:300]
    t1 = time.monotonic()
    p.stdin.close()
    p.wait(30)
    t_exit = time.monotonic() - t1
    return t_init * 1000, t_call * 1000, t_exit * 1000


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--beside", action="store_true")
    ap.add_argument("binaries", nargs="+")
    a = ap.parse_args()
    for binary in a.binaries:
        root = Path(tempfile.mkdtemp(prefix="i2v-bench-spawn-"))
        env = env_for(root)
        holder = None
        if a.beside:
            holder = subprocess.Popen([binary, "serve"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
            time.sleep(0.5)
        one_round(binary, env)  # warm: the journal exists, the binary is in the page cache
        rounds = [one_round(binary, env) for _ in range(a.rounds)]
        ok = [r for r in rounds if r]
        label = f"{binary}{' (beside a running server)' if a.beside else ''}"
        if not ok:
            print(f"{label}: refused in all {a.rounds} rounds")
        else:
            cols = []
            for i, name in enumerate(["initialize", "tools/call", "exit after stdin closes"]):
                xs = [r[i] for r in ok]
                cols.append(f"{name} median {statistics.median(xs):.0f} ms, p90 {pct(xs, 0.9):.0f} ms")
            refused = len(rounds) - len(ok)
            print(f"{label}: {len(ok)} rounds" + (f" ({refused} refused)" if refused else "") + ": " + "; ".join(cols))
        if holder:
            holder.stdin.close()
            holder.wait(30)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
