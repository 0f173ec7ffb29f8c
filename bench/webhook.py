"""Webhook benchmark: messages/s and p50/p99 latency of the full webhook path (`huzhu serve`:
signature, decryption, dedupe row, user row, dialogue router, cached reply, commit) against a
bare Flask + wechatpy echo app (bench/echo_app.py) started in the same run, at 32 connections.

    python bench/webhook.py [--seconds 10] [--rounds 3] [--connections 32] [--modes plain,safe]
                            [--databases sqlite,postgresql] [--pg-url URL]
                            [--server serve|gunicorn] [--workers 2] [--worker-class CLASS]
                            [--client wrk|python]

`--server serve` (the default) runs `huzhu serve`: one process, waitress, 32 threads, as the
embedded default ships. `--server gunicorn` runs the deployment at scale of DESIGN.md: the web app
under gunicorn (`--workers` processes of 16 threads each, worker class
`bot.web.balanced_worker.BalancedWorker` as the README deploys it; `--worker-class gthread` for
gunicorn's own) plus one `huzhu worker` process; the echo app then runs under the same gunicorn
settings, worker class included, so the ratio still compares like with like.

Each request is a distinct text message (its own MsgId) from one of 500 users, signed (and in
safe mode encrypted) as WeChat does, sent once. The load comes from wrk (`apt-get install wrk`;
2 threads, keep-alive connections, bench/webhook_wrk.lua) or, without it or with
`--client python`, from 2 Python processes of 16 threads each (measured against the echo app at
2,000 msg/s: wrk takes 9% of one core, the Python client 34%, of this 2-core machine that the
servers measured share with it). Both apps run side by side and are
loaded in turn, `--rounds` times, the order alternating; every figure printed is the median of
its rounds (this machine's speed drifts by ±20% within minutes). Targets (issue 21, under
`--server gunicorn --workers 2`): ≥ 0.6 × the echo app's throughput, p99 < 30 ms, 0 errors.
"""
from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import multiprocessing as mp
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.devtools.chat import Villager  # noqa: E402

TOKEN, APP_ID = "bench-token", "wxbench000000000"
AES = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
TEXTS = ["帮助", "0", "你好", "5", "取消"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(port: int, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing listens on {port}")


def build_requests(n: int, aes: str, seed: int) -> list[tuple[str, bytes]]:
    """n signed (and encrypted) requests: (path with query, body)."""
    v = Villager("http://x", TOKEN, APP_ID, aes)
    out = []
    for i in range(n):
        openid = f"o_bench_{(seed * 7919 + i) % 500:03d}"
        xml = v.text_xml(openid, TEXTS[i % len(TEXTS)], msg_id=seed * 10_000_000 + i)
        ts, nonce = str(int(time.time())), f"n{seed}x{i}"
        from bot.devtools.chat import sign
        params = {"timestamp": ts, "nonce": nonce, "openid": openid,
                  "signature": sign(TOKEN, ts, nonce)}
        body = xml
        if v.crypto is not None:
            from bot.web.wxml import parse_flat
            enc = parse_flat(v.crypto.encrypt_message(xml, nonce, ts).encode())
            params.update(encrypt_type="aes", msg_signature=enc["MsgSignature"])
            body = f"<xml><ToUserName><![CDATA[gh]]></ToUserName><Encrypt><![CDATA[{enc['Encrypt']}]]></Encrypt></xml>"
        out.append(("/wechat?" + urlencode(params), body.encode()))
    return out


def client_proc(port: int, threads: int, seconds: float, reqs, q) -> None:
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds
    counter = iter(range(len(reqs)))

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine = []
        while time.monotonic() < stop_at:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            path, body = reqs[i]
            t0 = time.perf_counter()
            try:
                conn.request("POST", path, body, {"Content-Type": "text/xml"})
                r = conn.getresponse()
                r.read()
                ok = r.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            if ok:
                mine.append(time.perf_counter() - t0)
            else:
                errors[0] += 1
        with lock:
            latencies.extend(mine)

    ts = [threading.Thread(target=worker) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    q.put((latencies, errors[0]))


def load(port: int, connections: int, seconds: float, aes: str, tag: int,
         started: Callable[[], None] | None = None) -> dict:
    procs, q = [], mp.Queue()
    per = connections // 2
    for p in range(2):
        reqs = build_requests(int(4000 * seconds), aes, seed=tag * 10 + p)
        procs.append(mp.Process(target=client_proc, args=(port, per, seconds, reqs, q)))
    if started is not None:
        started()
    for p in procs:
        p.start()
    lat, errs = [], 0
    for _ in procs:
        l, e = q.get()
        lat.extend(l)
        errs += e
    for p in procs:
        p.join()
    lat.sort()
    return {"rps": len(lat) / seconds, "p50_ms": 1000 * lat[len(lat) // 2] if lat else None,
            "p99_ms": 1000 * lat[int(len(lat) * 0.99)] if lat else None, "ok": len(lat),
            "errors": errs}


def lua_string(b: bytes) -> str:
    """A Lua long-bracket literal holding these bytes as they are."""
    text = b.decode()
    level = 0
    while f"]{'=' * level}]" in text:
        level += 1
    eq = "=" * level
    return f"[{eq}[{text}]{eq}]"


LUA_CHUNK = 10_000  # rows per function: Lua allows 65,536 constants in one, each row holds 2


def lua_list(reqs: list[tuple[str, bytes]]) -> str:
    """A Lua file returning the requests as a list of {path, body}, built by one function per
    LUA_CHUNK rows."""
    out = ["local t = {}"]
    for start in range(0, len(reqs), LUA_CHUNK):
        rows = ",\n".join("{" + lua_string(path.encode()) + "," + lua_string(body) + "}"
                           for path, body in reqs[start:start + LUA_CHUNK])
        out.append("for _, r in ipairs((function() return {\n" + rows
                   + "\n} end)()) do t[#t + 1] = r end")
    out.append("return t\n")
    return "\n".join(out)


def load_wrk(port: int, connections: int, seconds: float, aes: str, tag: int,
             started: Callable[[], None] | None = None) -> dict:
    """The same load from wrk (2 threads in C, one event loop each): the load generator takes
    about a quarter of the processor time the Python client does, leaving it to the servers."""
    tmp = Path(tempfile.mkdtemp(prefix="huzhu-wrk-"))
    try:
        for t in range(2):  # each of wrk's threads sends up to 8,000 messages a second here
            reqs = build_requests(int(8000 * seconds), aes, seed=tag * 10 + t)
            (tmp / f"reqs_{t}.lua").write_text(lua_list(reqs))
        if started is not None:  # the requests are ready: the load starts now
            started()
        out = subprocess.run(["wrk", "-t", "2", "-c", str(connections), "-d", f"{max(1, round(seconds))}s",
                              "--timeout", "30s", "-s", str(ROOT / "bench" / "webhook_wrk.lua"),
                              f"http://127.0.0.1:{port}/wechat", "--", str(tmp)],
                             capture_output=True, text=True)
        if out.returncode:
            raise RuntimeError(f"wrk failed: {out.stderr.strip() or out.stdout.strip()}")
        r = json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if r["reused"]:
        raise RuntimeError(f"wrk sent {r['reused']} messages twice: build more requests")
    ok = r["requests"] - r["non200"]
    return {"rps": ok / (r["duration_us"] / 1e6), "p50_ms": r["p50_us"] / 1000,
            "p99_ms": r["p99_us"] / 1000, "ok": ok, "errors": r["non200"] + r["socket_errors"]}


class Procs:
    """The processes of one app under test, stopped together."""

    def __init__(self, *procs: subprocess.Popen):
        self.procs = procs

    def stop(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            p.wait(10)


def huzhu_env(aes: str, db_url: str, data: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUZHU_")}
    env.update(HUZHU_DATABASE_URL=db_url, HUZHU_DATA_DIR=str(data), HUZHU_WECHAT_TOKEN=TOKEN,
               HUZHU_WECHAT_APP_ID=APP_ID, HUZHU_WECHAT_AES_KEY=aes,
               HUZHU_WECHAT_API_BASE="http://127.0.0.1:9", HUZHU_LOG_LEVEL="WARNING")
    return env


def gunicorn(port: int, app: str, workers: int, env: dict, threads: int = 16,
             worker_class: str = "gthread") -> subprocess.Popen:
    ready = Path(tempfile.mkdtemp(prefix="huzhu-ready-"))
    p = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c",
                          str(ROOT / "bench" / "gunicorn_ready.py"), "-w", str(workers),
                          "-k", worker_class, "--threads", str(threads), "-b", f"127.0.0.1:{port}",
                          "--log-level", "warning", app], cwd=ROOT,
                         env={**env, "HUZHU_BENCH_READY": str(ready)}, stdout=subprocess.DEVNULL)
    p.ready = (ready, workers)  # type: ignore[attr-defined]
    return p


def wait_ready(procs: "Procs", seconds: float = 120) -> None:
    """Under gunicorn: until every worker has loaded the app (bench/gunicorn_ready.py)."""
    web = procs.procs[0]
    ready = getattr(web, "ready", None)
    if ready is None:
        return
    folder, workers = ready
    deadline = time.monotonic() + seconds
    while sum(1 for _ in folder.iterdir()) < workers:
        if time.monotonic() > deadline or web.poll() is not None:
            raise RuntimeError("gunicorn's workers did not start")
        time.sleep(0.2)
    shutil.rmtree(folder, ignore_errors=True)


def start_huzhu(port: int, aes: str, db_url: str, data: Path, args) -> Procs:
    env = huzhu_env(aes, db_url, data)
    if args.server == "gunicorn":
        subprocess.run([sys.executable, "-m", "bot.cli", "db", "upgrade"], cwd=ROOT, env=env,
                       stdout=subprocess.DEVNULL, check=True)
        worker = subprocess.Popen([sys.executable, "-m", "bot.cli", "worker"], cwd=ROOT, env=env,
                                  stdout=subprocess.DEVNULL)
        return Procs(gunicorn(port, "bot.web.app:create_app()", args.workers, env, args.threads,
                             args.worker_class), worker)
    return Procs(subprocess.Popen([sys.executable, "-m", "bot.cli", "serve", "--port", str(port)],
                                  cwd=ROOT, env=env, stdout=subprocess.DEVNULL))


def start_echo(port: int, aes: str, args) -> Procs:
    if args.server == "gunicorn":
        env = {**os.environ, "PYTHONPATH": str(ROOT / "bench")}
        return Procs(gunicorn(port, f"echo_app:create({TOKEN!r}, {APP_ID!r}, {aes!r})",
                              args.workers, env, args.threads, args.worker_class))
    cmd = [sys.executable, str(ROOT / "bench" / "echo_app.py"), str(port), TOKEN, APP_ID]
    if aes:
        cmd.append(aes)
    return Procs(subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL))


def reset_pg(url: str) -> None:
    """The database named emptied, or made if there is none yet (as bench/scale.py's)."""
    from scale import wipe

    wipe(url)


def run_one(mode: str, database: str, args, tag: int) -> dict:
    """Both apps up side by side; then `--rounds` pairs of runs, the order alternating (echo
    first, then huzhu first, …) so that a machine getting faster or slower during the run does
    not favour either; each figure is the median of its rounds."""
    aes = AES if mode == "safe" else ""
    tmp = Path(tempfile.mkdtemp(prefix="huzhu-bench-"))
    apps: dict[str, Procs] = {}
    try:
        db_url = f"sqlite:///{tmp}/huzhu.db" if database == "sqlite" else args.pg_url
        if database == "postgresql":
            reset_pg(args.pg_url)
        ports = {"echo": free_port(), "huzhu": free_port()}
        apps["echo"] = start_echo(ports["echo"], aes, args)
        apps["huzhu"] = start_huzhu(ports["huzhu"], aes, db_url, tmp, args)
        for name, port in ports.items():
            wait_up(port)
            wait_ready(apps[name])
            args.load(port, args.connections, 2, aes, tag * 100 + 1)  # warm-up
        rounds: dict[str, list[dict]] = {"echo": [], "huzhu": []}
        for r in range(args.rounds):
            order = ("echo", "huzhu") if r % 2 == 0 else ("huzhu", "echo")
            for name in order:
                spies: list[subprocess.Popen] = []
                seen: list[list[int]] = []

                def start(a=apps[name], name=name, r=r, seen=seen, spies=spies):
                    if name == "huzhu" and r == 0 and args.profile:
                        spies.append(profile(a, args, f"{database}-{mode}"))
                    threading.Timer(min(2.0, args.seconds / 2),
                                    lambda: seen.append(spread(a, ports[name]))).start()
                backends = pg_backends(db_url) if name == "huzhu" else []
                before = cpu_seconds(apps[name], backends)
                switched = switches(apps[name], backends)
                result = args.load(ports[name], args.connections, args.seconds, aes,
                                   tag * 100 + 2 + r, start)
                after = cpu_seconds(apps[name], backends)
                result["switches"] = ((switches(apps[name], backends) - switched)
                                      / max(result["ok"], 1))
                result["cpu_us"] = 1e6 * (sum(after) - sum(before)) / max(result["ok"], 1)
                result["sys_us"] = 1e6 * (after[1] - before[1]) / max(result["ok"], 1)
                result["spread"] = seen[0] if seen else []
                rounds[name].append(result)
                for spy in spies:
                    spy.wait(args.seconds + 30)
        pairs = list(zip(rounds["echo"], rounds["huzhu"]))
        ratios = sorted(h["rps"] / e["rps"] for e, h in pairs if e["rps"])
        even = sorted(h["rps"] / e["rps"] for e, h in pairs
                      if e["rps"] and spread_even(e["spread"], args) and spread_even(h["spread"], args))
        e, h = median_of(rounds["echo"]), median_of(rounds["huzhu"])
        return {"mode": mode, "database": database, "echo": e, "huzhu": h,
                "ratio": ratios[len(ratios) // 2] if ratios else None,
                "ratio_even": even[len(even) // 2] if even else None, "even_rounds": len(even),
                "rounds": rounds}
    finally:
        for procs in apps.values():
            procs.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def profile(procs: Procs, args, name: str) -> subprocess.Popen:
    """py-spy on the web processes (gunicorn's workers too) for the round: a flat text profile
    in --profile DIR (`pip install py-spy`) of the thread holding the interpreter (`--gil`),
    sampled 250 times a second: where the processor time goes, not the waits."""
    out = Path(args.profile) / f"{name}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    web = procs.procs[0]  # gunicorn (or huzhu serve); its workers by --subprocesses
    return subprocess.Popen(["py-spy", "record", "--subprocesses", "--nonblocking", "--gil",
                             "-r", "250", "-d", str(int(args.seconds)), "-f", "raw", "-o",
                             str(out), "-p", str(web.pid)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def _stats() -> dict[int, tuple[int, float, float]]:
    """Every process: pid → (parent pid, processor seconds used so far: user, system)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path("/proc", entry, "stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2:].split()  # after the command's name
        out[int(entry)] = (int(fields[1]), int(fields[11]) / tick, int(fields[12]) / tick)
    return out


def pg_backends(url: str | None) -> list[int]:
    """The server processes of the bench database's connections (PostgreSQL only)."""
    if not url or not url.startswith("postgresql"):
        return []
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    eng = create_engine(url)
    with eng.connect() as c:
        pids = list(c.scalars(text("SELECT pid FROM pg_stat_activity WHERE datname = :d "
                                   "AND pid <> pg_backend_pid()"),
                              {"d": make_url(url).database}))
    eng.dispose()
    return pids


def _tree(procs: "Procs", extra: list[int], stats: dict) -> set[int]:
    """An app's processes, their children (gunicorn's workers) and `extra` processes (the
    database server's backends for them)."""
    tree, grew = {p.pid for p in procs.procs} | set(extra), True
    while grew:
        grew = False
        for pid, (ppid, _u, _s) in stats.items():
            if ppid in tree and pid not in tree:
                tree.add(pid)
                grew = True
    return tree


def spread_even(counts: list[int], args) -> bool:
    """Every web process holds at least half its share of the connections (with --workers 2
    and 32 connections: 8 or more each)."""
    workers = args.workers if args.server == "gunicorn" else 1
    return (len(counts) == workers
            and min(counts) >= args.connections / workers / 2)


def spread(procs: "Procs", port: int) -> list[int]:
    """How the load's connections are spread over the web processes (gunicorn's workers), as
    they stand: each worker accepts what it can when wrk connects, and a worker that got few
    connections can be left waiting for them while the other is busy (this decides much of a
    round's figure, for both apps)."""
    sockets: dict[str, int] = {}
    for pid in _tree(procs, [], _stats()):
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if target.startswith("socket:["):
                        sockets[target[8:-1]] = pid
    counts: dict[int, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                f = line.split()
                if (f[3] == "01" and f[9] in sockets  # established, on the app's port
                        and int(f[1].rsplit(":", 1)[1], 16) == port):
                    counts[sockets[f[9]]] = counts.get(sockets[f[9]], 0) + 1
    return sorted(counts.values())


def switches(procs: "Procs", extra: list[int]) -> int:
    """Context switches so far of every thread of an app's processes (as `_tree`), voluntary
    (a thread waiting: for a lock, a socket, another thread) and not (taken off the
    processor)."""
    n = 0
    for pid in _tree(procs, extra, _stats()):
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{pid}/task"):
                with contextlib.suppress(OSError):
                    for line in Path(f"/proc/{pid}/task/{task}/status").read_text().splitlines():
                        if "ctxt_switches:" in line:
                            n += int(line.split()[1])
    return n


def cpu_seconds(procs: "Procs", extra: list[int]) -> tuple[float, float]:
    """Processor seconds used so far by an app's processes (as `_tree`)."""
    stats = _stats()
    tree = _tree(procs, extra, stats)
    return (sum(stats[pid][1] for pid in tree if pid in stats),
            sum(stats[pid][2] for pid in tree if pid in stats))


def median_of(runs: list[dict]) -> dict:
    """Each figure's median over the rounds (and the errors added up)."""
    out = {}
    for key in ("rps", "p50_ms", "p99_ms", "ok", "cpu_us", "sys_us", "switches"):
        values = sorted(r[key] for r in runs if r[key] is not None)
        out[key] = values[len(values) // 2] if values else None
    out["errors"] = sum(r["errors"] for r in runs)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--rounds", type=int, default=3, help="paired runs per setting (medians)")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--modes", default="plain,safe")
    ap.add_argument("--databases", default="sqlite,postgresql")
    ap.add_argument("--pg-url", default="postgresql+psycopg://postgres@127.0.0.1/huzhu_bench")
    ap.add_argument("--server", choices=("serve", "gunicorn"), default="serve")
    ap.add_argument("--profile", metavar="DIR", help="py-spy the first huzhu round into DIR")
    ap.add_argument("--workers", type=int, default=2, help="gunicorn processes (--server gunicorn)")
    ap.add_argument("--threads", type=int, default=16,
                    help="threads of each gunicorn process (--server gunicorn), both apps")
    ap.add_argument("--worker-class", default="bot.web.balanced_worker.BalancedWorker",
                    help="gunicorn's worker class (--server gunicorn), both apps; "
                         "`gthread` for gunicorn's own")
    ap.add_argument("--client", choices=("wrk", "python"),
                    default="wrk" if shutil.which("wrk") else "python",
                    help="load generator: wrk (default when installed) or Python threads")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    args.load = load_wrk if args.client == "wrk" else load
    print(f"load from {args.client}, {args.connections} connections, {args.seconds:g} s × "
          f"{args.rounds} rounds per app", flush=True)
    rows = []
    tag = 1
    server = args.server if args.server == "serve" else f"gunicorn×{args.workers}"
    for database in args.databases.split(","):
        for mode in args.modes.split(","):
            rows.append(run_one(mode, database, args, tag))
            tag += 1
            r = rows[-1]
            print(f"{r['database']:<10} {r['mode']:<5} {server:<10} echo {r['echo']['rps']:7.0f} msg/s "
                  f"p50 {r['echo']['p50_ms']:6.1f} ms p99 {r['echo']['p99_ms']:6.1f} ms | "
                  f"huzhu {r['huzhu']['rps']:7.0f} msg/s p50 {r['huzhu']['p50_ms']:6.1f} ms "
                  f"p99 {r['huzhu']['p99_ms']:6.1f} ms (errors {r['huzhu']['errors']}) | "
                  f"ratio {r['ratio']:.2f}", flush=True)
            per = zip(r["rounds"]["echo"], r["rounds"]["huzhu"])
            if args.server == "gunicorn":
                print("    ratio of the rounds in which every web process of both apps had at least "
                      "half its share of the connections: "
                      + (f"{r['ratio_even']:.2f} ({r['even_rounds']} of {args.rounds} rounds)"
                         if r["ratio_even"] is not None else f"none of {args.rounds} rounds"),
                      flush=True)
            print("    rounds (echo/huzhu msg/s, huzhu p99, connections per web process echo/huzhu): "
                  + ", ".join(f"{e['rps']:.0f}/{h['rps']:.0f} {h['p99_ms']:.0f} ms "
                              f"[{'+'.join(map(str, e['spread']))} / "
                              f"{'+'.join(map(str, h['spread']))}]" for e, h in per), flush=True)
            print(f"    processor time a message: echo {r['echo']['cpu_us']:.0f} µs "
                  f"({r['echo']['sys_us']:.0f} in the kernel), huzhu "
                  f"{r['huzhu']['cpu_us']:.0f} µs ({r['huzhu']['sys_us']:.0f} in the kernel; "
                  f"its web and worker processes"
                  f"{' and its database backends' if database == 'postgresql' else ''}): "
                  f"ratio {r['echo']['cpu_us'] / r['huzhu']['cpu_us']:.2f}; context switches a "
                  f"message: echo {r['echo']['switches']:.1f}, huzhu {r['huzhu']['switches']:.1f}",
                  flush=True)
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
