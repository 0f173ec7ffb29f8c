"""What a dialogue sees and says, free of any platform."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from core.config import Config
    from core.crypto import PersonalDataVault
    from core.models import DialogueState, WechatUser
    from core.payments import Gateway
    from handlers.router import Route


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


class Ctx:
    """Everything a handler may use. `session` is the ORM session of this message's one
    transaction and `user` the sender's WechatUser in it; both are opened on first use, so a
    message whose handler needs neither (the menu, help) costs no ORM work.

    `route` is the message's route (handlers/router.py), decided once; `in_dialogue` says
    whether the sender had a dialogue state when it is known already (the webhook reads it with
    the user), None when handlers/dialogue.py has to look; `has_household` and `may_appeal`
    likewise (None: look); `gateway` builds the payment gateway
    the app was given (GatewayError if there is none)."""

    def __init__(self, cfg: "Config", vault: "PersonalDataVault", openid: str, now: datetime,
                 session: "Callable[[], Session]", user: "Callable[[], WechatUser]",
                 route: "Route | None" = None, in_dialogue: bool | None = None,
                 gateway: "Callable[[], Gateway] | None" = None,
                 has_household: bool | None = None, may_appeal: bool | None = None):
        self.cfg = cfg
        self.vault = vault
        self.openid = openid
        self.now = now  # local time (cfg.tz)
        self.route = route
        self.in_dialogue = in_dialogue
        # read by the webhook with the sender (None: not known, look): whether the sender acts
        # for a household, and whether a household of theirs has a rejected claim not yet
        # appealed — False spares the look-up of a message that cannot need it
        self.has_household = has_household
        self.may_appeal = may_appeal
        # the sender's DialogueState row once read, kept up to date by handlers/dialogue.py
        self.dialogue_row: "DialogueState | None" = None
        self._open_session = session
        self._load_user = user
        self._gateway = gateway
        self._session: "Session | None" = None
        self._user: "WechatUser | None" = None

    @property
    def gateway(self) -> "Gateway":
        """The payment gateway; core.payments.GatewayError when the app has none."""
        if self._gateway is None:
            from core.payments import GatewayError

            raise GatewayError("no payment gateway given")
        return self._gateway()

    @property
    def session(self) -> "Session":
        if self._session is None:
            self._session = self._open_session()
        return self._session

    @property
    def user(self) -> "WechatUser":
        if self._user is None:
            self._user = self._load_user()
        return self._user

    @property
    def today(self):
        return self.now.date()
