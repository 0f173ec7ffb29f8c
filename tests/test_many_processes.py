"""The production form on one database: two web processes (gunicorn, one process each, on two
ports) and two `huzhu worker` processes at once. Villagers write through both web processes;
every outbox message is delivered exactly once; the scheduler runs in one worker only and each
job runs once for each time it is due. On PostgreSQL (the deployment's database) and on SQLite
(one host: the workers share DATA_DIR's scheduler lock file and SQLite's one write lock)."""
from __future__ import annotations

import os
import pickle
import re
import socket
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from sqlalchemy import select, text

from bot.devtools.chat import Villager
from core import outbox
from core.models import OutboxMessage, OutboxStatus
from tests.factories import M, make_household

ROOT = Path(__file__).resolve().parents[1]
BALANCED = "bot.web.balanced_worker.BalancedWorker"  # the worker class the README deploys


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _up(url: str, seconds: float = 60) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/healthz", timeout=2).status_code in (200, 503):
                return True
        except requests.RequestException:
            pass
        time.sleep(0.3)
    return False


SCHED_BATCH = 3  # Linux's number for the policy, as /proc shows it


def _policies(parent: int) -> list[int]:
    """The scheduling policy of every thread of the processes `parent` started (gunicorn's
    workers), as /proc/PID/task/TID/stat gives it (its 41st field)."""
    out = []
    for pid in os.listdir("/proc"):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except (OSError, ValueError):
            continue
        if not pid.isdigit() or int(stat[stat.rindex(")") + 2:].split()[1]) != parent:
            continue
        for tid in os.listdir(f"/proc/{pid}/task"):
            task = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
            out.append(int(task[task.rindex(")") + 2:].split()[38]))
    return out


def test_two_web_processes_and_two_workers_share_one_database(app_ctx, cfg, db, db_url,
                                                              emulator, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUZHU_")}
    env.update(HUZHU_DATABASE_URL=db_url, HUZHU_DATA_DIR=str(cfg.data_dir),
               HUZHU_WECHAT_TOKEN=cfg.WECHAT_TOKEN, HUZHU_WECHAT_APP_ID=cfg.WECHAT_APP_ID,
               HUZHU_WECHAT_API_BASE=emulator, HUZHU_WECHAT_OPEN_BASE=emulator,
               HUZHU_PAY_API_BASE=emulator, HUZHU_WECOM_WEBHOOK_BASE=emulator,
               HUZHU_PAY_PROVIDER="emulator", HUZHU_OUTBOX_BACKOFF_SECONDS="1",
               HUZHU_LOG_LEVEL="INFO")
    ports = [_port(), _port()]
    logs = [tmp_path / f"worker{i}.log" for i in range(2)]
    procs = []
    try:
        for port in ports:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-w", "1", "-k", BALANCED, "--threads", "8",
                 "-b", f"127.0.0.1:{port}", "--log-level", "warning",
                 "bot.web.app:create_app()"], cwd=ROOT, env=env,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for log in logs:
            procs.append(subprocess.Popen([sys.executable, "-m", "bot.cli", "worker"], cwd=ROOT,
                                          env=env, stdout=subprocess.DEVNULL,
                                          stderr=log.open("w")))
        webs = [Villager(f"http://127.0.0.1:{p}", cfg.WECHAT_TOKEN, cfg.WECHAT_APP_ID, "",
                         emulator) for p in ports]
        assert all(_up(v.server) for v in webs)

        openids = [f"o_many_{i:03d}" for i in range(60)]
        with db.session() as s:
            for openid in openids[:30]:
                make_household(s, app_ctx.vault, [M("王大山")], openid=openid)

        def write(i: int) -> str:  # 5 查询余额 (or the menu): each answered by either process
            return webs[i % 2].text(openids[i], "5").reply

        with ThreadPoolExecutor(8) as pool:
            replies = list(pool.map(write, range(len(openids))))
        assert all("还可补助" in r for r in replies[:30])
        assert all(r for r in replies[30:])
        # every thread of each web process (request threads, the line) is scheduled so that a
        # thread woken does not take the processor from the one that woke it
        for web in procs[:2]:
            threads = _policies(web.pid)
            assert len(threads) > 3 and set(threads) == {SCHED_BATCH}, threads

        # a retry of one message reaching the other process is not handled twice
        xml = webs[0]._xml(openids[0], "text", {"Content": "5"}, msg_id=991000001)
        first = webs[0].post(openids[0], xml)
        again = webs[1].post(openids[0], xml)
        assert first.status == 200 and again.status == 200
        assert again.reply in ("", first.reply)

        # 180 messages for the workers (60 users, three each, all inside the 48-hour window)
        with db.session() as s:
            for openid in openids:
                for n in range(3):
                    outbox.send_text(s, openid, f"第{n + 1}条通知")
        # the morning review reminder is due now: it must run once, in the active scheduler
        with db.session() as s:  # (the store keeps the time in the column and the state)
            state = pickle.loads(s.scalar(text(
                "SELECT job_state FROM scheduler_job WHERE id = 'review.overdue'")))
            due = datetime.now(timezone.utc) - timedelta(seconds=1)
            state["next_run_time"] = due.astimezone(state["next_run_time"].tzinfo)
            s.execute(text("UPDATE scheduler_job SET next_run_time = :t, job_state = :state "
                           "WHERE id = 'review.overdue'"),
                      {"t": due.timestamp(), "state": pickle.dumps(state)})

        def delivered() -> bool:
            with db.session() as s:
                left = s.scalar(select(OutboxMessage.id).where(
                    OutboxMessage.status != OutboxStatus.sent).limit(1))
            return left is None

        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not delivered():
            time.sleep(0.5)
        assert delivered()
        time.sleep(12)  # the scheduler looks at its store at least every 10 s (outbox.drain)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()

    sent = Counter()
    for call in webs[0].calls():
        body = call.get("json") or {}
        if body.get("msgtype") == "text" and body["text"]["content"].startswith("第"):
            sent[(body.get("touser"), body["text"]["content"])] += 1
    assert len(sent) == 180 and set(sent.values()) == {1}

    runs = []
    for i, log in enumerate(logs):
        runs += [(i, m.group(1), m.group(2)) for m in
                 re.finditer(r"job (\S+) ran for (\S+) in process", log.read_text())]
    assert {job for _, job, _ in runs} >= {"outbox.drain", "review.overdue"}
    assert len({worker for worker, _, _ in runs}) == 1  # one active scheduler
    per_time = Counter((job, at) for _, job, at in runs)
    assert set(per_time.values()) == {1}
    assert sum(1 for _, job, _ in runs if job == "review.overdue") == 1
