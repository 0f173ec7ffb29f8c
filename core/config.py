"""Configuration: defaults from config/huzhu.toml, each key overridable by HUZHU_<KEY>.

Validated at start; a wrong value raises ConfigError with one line naming the key.
"""
from __future__ import annotations

import os
import secrets
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

ROOT = Path(__file__).resolve().parents[1]
DEFAULTS_FILE = ROOT / "config" / "huzhu.toml"
TEMPLATES_DIR = ROOT / "templates"
SCHEMES_DIR = ROOT / "config" / "schemes"

REAL_WECHAT_API = "https://api.weixin.qq.com"
# the demo token of config/huzhu.toml: public, so a server still using it serves no real account
DEMO_TOKEN = "huzhu-demo-token"


class ConfigError(Exception):
    """A configuration value is wrong; the message names the key."""


INT_KEYS = {"MAX_BODY_BYTES", "OUTBOX_MAX_ATTEMPTS", "OUTBOX_BACKOFF_SECONDS", "BACKUP_KEEP"}
FLOAT_KEYS = {"REPLY_BUDGET_SECONDS", "OUTBOX_IDLE_SECONDS"}
BOOL_KEYS = {"WECHAT_ALLOW_PLAIN"}
_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off", ""}


@dataclass
class Config:
    values: dict = field(default_factory=dict)

    def __getattr__(self, name: str):
        try:
            return self.__dict__["values"][name]
        except KeyError as exc:
            raise AttributeError(name) from exc

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.values["TIMEZONE"])

    @property
    def data_dir(self) -> Path:
        return Path(self.values["DATA_DIR"])

    @property
    def safe_mode(self) -> bool:
        return bool(self.values["WECHAT_AES_KEY"])

    @property
    def production(self) -> bool:
        """Serving a real official account: the real WeChat API with a token of its own. Against
        the emulator (the demo, the tests, the benchmarks), or with the public demo token, it
        is not."""
        return (self.values["WECHAT_API_BASE"].rstrip("/") == REAL_WECHAT_API
                and self.values["WECHAT_TOKEN"] != DEMO_TOKEN)

    @property
    def is_sqlite(self) -> bool:
        return self.values["DATABASE_URL"].startswith("sqlite")


def load_config(env: dict | None = None, validate: bool = True) -> Config:
    env = os.environ if env is None else env
    with open(DEFAULTS_FILE, "rb") as fh:
        values = tomllib.load(fh)
    for key in list(values):
        override = env.get(f"HUZHU_{key}")
        if override is not None:
            values[key] = override
    for key in INT_KEYS:
        try:
            values[key] = int(values[key])
        except (TypeError, ValueError):
            raise ConfigError(f"HUZHU_{key}: expected a whole number, got {values[key]!r}")
    for key in FLOAT_KEYS:
        try:
            values[key] = float(values[key])
        except (TypeError, ValueError):
            raise ConfigError(f"HUZHU_{key}: expected a number of seconds, got {values[key]!r}")
    for key in BOOL_KEYS:
        value = values[key]
        if not isinstance(value, bool):
            text = str(value).strip().lower()
            if text not in _TRUE | _FALSE:
                raise ConfigError(f"HUZHU_{key}: expected true or false, got {value!r}")
            values[key] = text in _TRUE
    cfg = Config(values)
    if validate:
        _validate(cfg)
    return cfg


def _validate(cfg: Config) -> None:
    v = cfg.values
    url = v["DATABASE_URL"]
    if not (url.startswith("sqlite:///") or url.startswith("postgresql+psycopg://")
            or url.startswith("postgresql://")):
        raise ConfigError(
            "HUZHU_DATABASE_URL: unknown database URL scheme; use sqlite:///PATH or "
            "postgresql+psycopg://USER@HOST/DB")
    aes = v["WECHAT_AES_KEY"]
    if aes and len(aes) != 43:
        raise ConfigError(
            f"HUZHU_WECHAT_AES_KEY: the EncodingAESKey must be 43 characters, got {len(aes)}")
    if not v["WECHAT_TOKEN"]:
        raise ConfigError("HUZHU_WECHAT_TOKEN: the token for message signatures is empty")
    if v["PAY_PROVIDER"] not in ("emulator", "wechatpay"):
        raise ConfigError("HUZHU_PAY_PROVIDER: must be 'wechatpay' or 'emulator'")
    talks_to_real_wechat = v["WECHAT_API_BASE"].rstrip("/") == REAL_WECHAT_API
    if talks_to_real_wechat and not v["WECHAT_APP_SECRET"]:
        raise ConfigError(
            "HUZHU_WECHAT_APP_SECRET: missing; the real WeChat API needs the official account's "
            "app secret (or point HUZHU_WECHAT_API_BASE at the emulator)")
    if v["PAY_PROVIDER"] == "wechatpay":
        for key in ("PAY_MCH_ID", "PAY_APIV3_KEY", "PAY_PRIVATE_KEY_FILE", "PAY_CERT_SERIAL",
                    "PAY_PUBLIC_KEY_FILE", "PAY_PUBLIC_KEY_ID"):
            if not v[key]:
                raise ConfigError(f"HUZHU_{key}: required when HUZHU_PAY_PROVIDER=wechatpay")
    try:
        ZoneInfo(v["TIMEZONE"])
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"HUZHU_TIMEZONE: unknown time zone {v['TIMEZONE']!r}")
    if v["MAX_BODY_BYTES"] < 1024:
        raise ConfigError("HUZHU_MAX_BODY_BYTES: must be at least 1024")
    if not 0.05 <= v["OUTBOX_IDLE_SECONDS"] <= 3600:
        raise ConfigError("HUZHU_OUTBOX_IDLE_SECONDS: seconds between the idle worker's looks, "
                          "0.05 to 3600")
    if v["OUTBOX_BELL"] not in ("host", "postgres"):
        raise ConfigError("HUZHU_OUTBOX_BELL: must be 'host' or 'postgres'")
    if v["OUTBOX_BELL"] == "postgres" and not url.startswith("postgresql"):
        raise ConfigError("HUZHU_OUTBOX_BELL: 'postgres' needs a PostgreSQL DATABASE_URL")
    if v["BACKUP_KEEP"] < 1:
        raise ConfigError("HUZHU_BACKUP_KEEP: days to keep backups, at least 1")
    _validate_notices(cfg)
    if backup_time(v["BACKUP_AT"]) is None:
        raise ConfigError(f"HUZHU_BACKUP_AT: expected a time of day HH:MM, got {v['BACKUP_AT']!r}")


SMS_PROVIDERS = ("tencentcloud", "emulator")


def config_path(value: str) -> Path:
    """A file named in the configuration: as given, else relative to the project's root."""
    p = Path(value)
    return p if p.is_absolute() or p.exists() else ROOT / p


def _validate_notices(cfg: Config) -> None:
    """NOTIFY_TEMPLATES and SMS_* at start: one line naming what is wrong."""
    from core.notices import NoticeFileError, load_sms_templates, load_templates

    v = cfg.values
    try:
        if v.get("NOTIFY_TEMPLATES"):
            load_templates(config_path(v["NOTIFY_TEMPLATES"]))
        provider = v.get("SMS_PROVIDER") or ""
        if provider:
            if provider not in SMS_PROVIDERS:
                raise ConfigError("HUZHU_SMS_PROVIDER: must be 'tencentcloud' or 'emulator' "
                                  "(or empty: no SMS)")
            for key in ("SMS_APP_ID", "SMS_SIGN", "SMS_TEMPLATES") + (
                    ("SMS_SECRET_ID", "SMS_SECRET_KEY") if provider == "tencentcloud" else ()):
                if not v.get(key):
                    raise ConfigError(f"HUZHU_{key}: required when HUZHU_SMS_PROVIDER={provider}")
            load_sms_templates(config_path(v["SMS_TEMPLATES"]))
    except NoticeFileError as exc:
        raise ConfigError(f"HUZHU_{exc}") from None


def plain_mode_refused(cfg: Config) -> bool:
    """Plain mode (no EncodingAESKey) on a production server, not allowed explicitly."""
    return not cfg.safe_mode and cfg.production and not cfg.WECHAT_ALLOW_PLAIN


def backup_time(value: str) -> tuple[int, int] | None:
    """(hour, minute) of a BACKUP_AT value such as "03:30", or None if it is not one."""
    try:
        hour, minute = (int(x) for x in str(value).strip().split(":"))
    except ValueError:
        return None
    return (hour, minute) if 0 <= hour < 24 and 0 <= minute < 60 else None


def secret_key(cfg: Config) -> bytes:
    """The key for personal data at rest: configured, or generated once into DATA_DIR.

    Several processes may start at once on a new data folder (gunicorn's workers, a worker
    beside them): each writes its candidate to a file of its own and links it under the one
    name, which succeeds for exactly one of them; the others read the winner's. No process ever
    sees the file half written."""
    if cfg.SECRET_KEY:
        return cfg.SECRET_KEY.encode()
    path = cfg.data_dir / "secret.key"
    try:
        return _read_secret_key(path)
    except FileNotFoundError:
        pass
    from core.files import private_dir

    private_dir(cfg.data_dir)
    key = secrets.token_urlsafe(32).encode()
    candidate = path.with_name(f".secret.key.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(key)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(candidate, path)  # atomic, and fails if another process got there first
        except FileExistsError:
            return _read_secret_key(path)
        except OSError:  # a file system without hard links (FAT, some network shares)
            return _create_secret_key(path, key)
    finally:
        candidate.unlink(missing_ok=True)
    _sync_folder(path.parent)  # the name itself survives a power cut
    return key


def _create_secret_key(path: Path, key: bytes) -> bytes:
    """Without hard links: create the file under its name, exclusively; a process that loses
    the race waits for the winner's key to be written."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):
            try:
                return _read_secret_key(path)
            except ConfigError:  # still being written
                time.sleep(0.1)
        return _read_secret_key(path)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
        fh.flush()
        os.fsync(fh.fileno())
    _sync_folder(path.parent)
    return key


def _sync_folder(folder: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_secret_key(path: Path) -> bytes:
    key = path.read_bytes().strip()
    if not key:
        raise ConfigError(f"{path}: empty; restore it from the backup (without it the ID and "
                          "bank-card numbers stored cannot be read)")
    return key
