"""Payments benchmark: the `2 缴费` dialogue (order, Native order at the emulator over HTTP,
QR image) and the WeChat Pay callback (/pay/notify: signature check, decryption, activation,
ledger entry, confirmation in the outbox), through `huzhu serve`'s real path.

    python bench/payments.py [--households 300] [--threads 8] [--pg-url URL]

N households of 3 members each ask to pay (one message each, `threads` at a time); the
emulator then builds each order's signed, encrypted callback, and all callbacks are posted at
once from `threads` threads, each twice (the second must change nothing). Reported: requests/s
and p50/p99 latency of both; checked: one payment and one balanced ledger entry per order.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select  # noqa: E402

from bot.web.app import AppContext  # noqa: E402
from bot.devtools.chat import Villager  # noqa: E402
from bot.devtools.demo import demo_config, start_emulator  # noqa: E402
from bot.server import Running, bootstrap  # noqa: E402
from core import ledger  # noqa: E402
from core.crypto import mask_id  # noqa: E402
from core.db import Database  # noqa: E402
from core.models import (Enrolment, Household, HouseholdLink, InsuranceType, LinkRole, Member,  # noqa: E402
                         Payment, PaymentOrder, Relation, Village)
from core.scheme import enrolment_scheme_year  # noqa: E402


def _households(x, n: int) -> list[str]:
    from datetime import date

    openids = []
    with x.db.session() as s:
        village = s.scalars(select(Village).order_by(Village.id)).first()
        year = enrolment_scheme_year(s, village.pool_id, date.today())
        for i in range(n):
            hh = Household(number=f"HB{i:06d}", pool_id=village.pool_id, village_id=village.id)
            s.add(hh)
            s.flush()
            for j, rel in enumerate(("head", "spouse", "child")):
                idn = f"1101011960{i:06d}{j}"[:17] + "X"
                m = Member(household_id=hh.id, name=f"王{i}{j}", id_number_enc=x.vault.encrypt(idn),
                           id_number_hash=x.vault.lookup_hash(idn), id_number_masked=mask_id(idn),
                           birth_date=date(1960, 1, 1), relation=Relation(rel),
                           insurance=InsuranceType.resident)
                s.add(m)
                s.flush()
                s.add(Enrolment(member_id=m.id, scheme_year_id=year.id,
                                id_number_hash=m.id_number_hash))
            openid = f"o_bench_pay_{i:05d}"
            s.add(HouseholdLink(household_id=hh.id, openid=openid, role=LinkRole.head))
            openids.append(openid)
    return openids


def _pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def _run(label: str, db_url: str | None, n: int, threads: int) -> None:
    data = Path(tempfile.mkdtemp(prefix="huzhu-bench-pay-"))
    emu_server, emu_url = start_emulator(data / "emulator")
    overrides = {"DATABASE_URL": db_url} if db_url else {}
    cfg = demo_config(data, emu_url, LOG_LEVEL="WARNING", **overrides)
    db = Database(cfg.DATABASE_URL)
    if db.is_postgres:
        from sqlalchemy import text
        with db.engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    x = AppContext(cfg=cfg, db=db)
    bootstrap(x)
    running = Running(x, scheduler=False).start()
    cfg.values["PAY_NOTIFY_URL"] = f"{running.url}/pay/notify"
    cfg.values["PUBLIC_URL"] = running.url
    try:
        openids = _households(x, n)
        v = Villager(running.url, cfg.WECHAT_TOKEN, cfg.WECHAT_APP_ID)
        v.text("o_warmup", "2")  # first use: merchant key, emulator configuration

        def ask(openid):
            t0 = time.perf_counter()
            r = v.text(openid, "2")
            assert r.status == 200 and "您家需付 150.00 元" in r.reply, r.reply
            return time.perf_counter() - t0

        t0 = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            asks = list(pool.map(ask, openids))
        ask_wall = time.perf_counter() - t0

        with db.session() as s:
            numbers = list(s.scalars(select(PaymentOrder.out_trade_no)))
        http = requests.Session()
        callbacks = [http.post(f"{emu_url}/_emulator/pay/{no}", json={"deliver": False},
                               timeout=10).json()["callback"] for no in numbers]

        def notify(cb):
            t = time.perf_counter()
            r = requests.post(f"{running.url}/pay/notify", data=cb["body"].encode(),
                              headers=cb["headers"], timeout=30)
            assert r.status_code in (200, 204), r.text
            return time.perf_counter() - t

        t0 = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            notes = list(pool.map(notify, callbacks + callbacks))
        notify_wall = time.perf_counter() - t0
        with db.session() as s:
            paid = s.scalar(select(func.count(Payment.id)))
            bad = ledger.check(s)
        assert paid == len(numbers) and not bad, (paid, bad)
        print(f"{label}: {n} households, {threads} threads")
        print(f"  缴费 dialogue: {n / ask_wall:7.1f} req/s  p50 {statistics.median(asks) * 1000:6.1f} ms"
              f"  p99 {_pct(asks, 99) * 1000:6.1f} ms")
        print(f"  /pay/notify:   {len(notes) / notify_wall:7.1f} req/s  p50 "
              f"{statistics.median(notes) * 1000:6.1f} ms  p99 {_pct(notes, 99) * 1000:6.1f} ms"
              f"  ({paid} payments from {len(notes)} callbacks)")
    finally:
        running.stop()
        time.sleep(1)  # let the outbox worker finish its round before the files go
        emu_server.close()
        db.dispose()
        shutil.rmtree(data, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--households", type=int, default=300)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--pg-url", default="")
    args = ap.parse_args()
    _run("sqlite", None, args.households, args.threads)
    if args.pg_url:
        _run("postgresql", args.pg_url, args.households, args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
