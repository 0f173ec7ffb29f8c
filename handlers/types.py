"""What a dialogue sees and says, free of any platform."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from core.config import Config
    from core.crypto import PersonalDataVault
    from core.models import WechatUser


@dataclass(frozen=True)
class Incoming:
    openid: str
    kind: str  # text | image | voice | event | other
    text: str = ""  # the text, a voice message's Recognition, or a CLICK event's key
    event: str | None = None  # subscribe | unsubscribe | click | scan
    media_id: str | None = None
    pic_url: str | None = None
    scene: str | None = None  # a QR scene, without the qrscene_ prefix
    key: str = ""  # the dedupe key of the message
    received_at: datetime | None = None


@dataclass(frozen=True)
class Reply:
    """A text answered passively, or an image pushed through the outbox."""
    text: str | None = None
    image_path: str | None = None


@dataclass
class Ctx:
    """Everything a handler may use; the session is the one transaction of this message."""
    session: "Session"
    cfg: "Config"
    vault: "PersonalDataVault"
    user: "WechatUser"
    now: datetime  # local time (cfg.tz)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def openid(self) -> str:
        return self.user.openid

    @property
    def today(self):
        return self.now.date()
