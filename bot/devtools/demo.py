"""`huzhu demo`: the emulator and the server on a fresh temporary SQLite database, then a
scripted conversation through the real webhook, printed as a transcript.

Scenes plug in by file name: each `bot/devtools/scenes/s<NN>_<area>.py` defines
`scene(t: Transcript, x: AppContext, state: dict) -> None`, run in file-name order; `state` carries
what one scene leaves for the next (openids, household and claim numbers, …).
"""
from __future__ import annotations

import os
import shutil
import tempfile
import threading
from pathlib import Path

from waitress.server import create_server

from bot import logs
from bot.devtools.chat import Villager
from core.config import load_config


def start_emulator(state_dir: Path):
    from bot.devtools.emulator import create_emulator_app

    server = create_server(create_emulator_app(state_dir), host="127.0.0.1", port=0, threads=8)
    threading.Thread(target=server.run, name="huzhu-emulator", daemon=True).start()
    return server, f"http://127.0.0.1:{server.effective_port}"


def demo_config(data_dir: Path, emulator_url: str, **overrides):
    env = {k: v for k, v in os.environ.items() if k.startswith("HUZHU_")}
    env.update({
        "HUZHU_DATABASE_URL": f"sqlite:///{data_dir}/huzhu.db",
        "HUZHU_DATA_DIR": str(data_dir),
        "HUZHU_WECHAT_API_BASE": emulator_url,
        "HUZHU_PAY_API_BASE": emulator_url,
        "HUZHU_WECOM_WEBHOOK_BASE": emulator_url,
        "HUZHU_PAY_PROVIDER": "emulator",
    })
    env.update({f"HUZHU_{k}": str(v) for k, v in overrides.items()})
    return load_config(env)


class Transcript:
    def __init__(self, villager: Villager):
        self.v = villager

    def say(self, who: str, openid: str, text: str, wait: float = 1.5):
        print(f"\n【{who}】 {text}")
        r = self.v.text(openid, text, wait=wait)
        self.show(r)
        return r

    def show(self, r) -> None:
        if r.reply:
            print("  ↳ " + r.reply.replace("\n", "\n    "))
        for t in r.pushed_texts:
            print("  ⇢ " + t.replace("\n", "\n    "))


def run_demo(keep: bool = False) -> int:
    from bot.web.app import AppContext
    from bot.server import Running, bootstrap
    from core.db import Database

    logs.setup("WARNING")
    data_dir = Path(tempfile.mkdtemp(prefix="huzhu-demo-"))
    emu_server, emu_url = start_emulator(data_dir / "emulator")
    cfg = demo_config(data_dir, emu_url)
    x = AppContext(cfg=cfg, db=Database(cfg.DATABASE_URL))
    bootstrap(x)
    running = Running(x).start()
    v = Villager(running.url, cfg.WECHAT_TOKEN, cfg.WECHAT_APP_ID, cfg.WECHAT_AES_KEY, emu_url)
    t = Transcript(v)
    print(f"huzhu demo — server {running.url}, emulator {emu_url}, data {data_dir}")
    try:
        from bot.discover import demo_scenes

        state: dict = {"villager": "o_demo_villager", "admin": "o_demo_admin"}
        for module in demo_scenes():
            module.scene(t, x, state)
        print("\n演示结束 (demo finished).")
        return 0
    finally:
        running.stop()
        emu_server.close()
        x.db.dispose()
        if not keep:
            shutil.rmtree(data_dir, ignore_errors=True)
