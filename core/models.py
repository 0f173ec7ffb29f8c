"""The database: SQLAlchemy 2 typed models. Schema changes go through Alembic (core/migrations).

Money columns end in `_fen` and hold integer fen. Timestamps are UTC; scheme dates are plain dates.
Personal numbers are stored encrypted (`*_enc`) beside a keyed hash (`*_hash`) for look-up.
"""
from __future__ import annotations

import enum
from datetime import date, datetime, timezone

from sqlalchemy import (JSON, BigInteger, Boolean, Date, DateTime, Enum, ForeignKey, Index, Integer,
                        SmallInteger, String, Text, UniqueConstraint, text)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy import false as sa_false


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: DateTime(timezone=True), dict: JSON, list: JSON}


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    return Enum(cls, name=name, native_enum=False, length=24,
                values_callable=lambda e: [m.value for m in e], validate_strings=True)


# ---------------------------------------------------------------------------------------------
# Enumerations: named values, stable strings in the database.

class AdminRole(str, enum.Enum):
    reviewer = "reviewer"
    village_admin = "village_admin"
    pool_admin = "pool_admin"
    super = "super"
    auditor = "auditor"  # read-only: the console's pages and reports, a pool or all


class PoolLevel(str, enum.Enum):
    village = "village"
    town = "town"
    county = "county"


class InsuranceType(str, enum.Enum):
    resident = "resident"
    employee = "employee"
    uninsured = "uninsured"


class Relation(str, enum.Enum):
    head = "head"
    spouse = "spouse"
    child = "child"
    parent = "parent"
    other = "other"


class EnrolmentStatus(str, enum.Enum):
    pending = "pending"
    paid = "paid"
    lapsed = "lapsed"


class LinkRole(str, enum.Enum):
    head = "head"
    proxy = "proxy"


class OrderStatus(str, enum.Enum):
    open = "open"
    paid = "paid"
    expired = "expired"


class ClaimStatus(str, enum.Enum):
    collecting = "collecting"
    submitted = "submitted"
    in_review = "in_review"
    need_documents = "need_documents"
    approved = "approved"
    rejected = "rejected"
    in_payout = "in_payout"
    paid = "paid"
    payout_failed = "payout_failed"
    recovered = "recovered"
    appealed = "appealed"  # the household asked for a second look (复核) at a rejection


class DocumentKind(str, enum.Enum):
    discharge_record = "discharge_record"
    itemized_bill = "itemized_bill"
    settlement_sheet = "settlement_sheet"
    invoice = "invoice"  # 发票: the uninsured's proof of payment (claims.documents)
    other = "other"


class BatchStatus(str, enum.Enum):
    draft = "draft"
    exported = "exported"
    confirmed = "confirmed"


class PayoutLineStatus(str, enum.Enum):
    pending = "pending"
    paid = "paid"
    failed = "failed"


class OutboxStatus(str, enum.Enum):
    pending = "pending"
    sent = "sent"
    dead = "dead"


# ---------------------------------------------------------------------------------------------
# WeChat side: users, administrators, dialogue state, inbound dedupe, outbox, audit.

class WechatUser(Base):
    __tablename__ = "wechat_user"
    id: Mapped[int] = mapped_column(primary_key=True)
    openid: Mapped[str] = mapped_column(String(64), unique=True)
    subscribed: Mapped[bool] = mapped_column(Boolean, default=True)
    last_inbound_at: Mapped[datetime | None]
    # pushes sent since the last inbound message (at most 5 customer-service messages per inbound)
    pushes_since_inbound: Mapped[int] = mapped_column(Integer, default=0)
    village_id: Mapped[int | None] = mapped_column(ForeignKey("village.id"))  # the village tag
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    village: Mapped["Village | None"] = relationship()
    grants: Mapped[list["AdminGrant"]] = relationship(
        primaryjoin="WechatUser.openid == foreign(AdminGrant.openid)", viewonly=True)


class AdminGrant(Base):
    """An administrator's role and scope: a village_admin its village, a pool_admin (and
    optionally a reviewer) its pool, super everything. One user may hold several grants."""
    __tablename__ = "admin_grant"
    id: Mapped[int] = mapped_column(primary_key=True)
    openid: Mapped[str] = mapped_column(String(64), index=True)
    role: Mapped[AdminRole] = mapped_column(_enum(AdminRole, "admin_role"))
    pool_id: Mapped[int | None] = mapped_column(ForeignKey("pool.id"))
    village_id: Mapped[int | None] = mapped_column(ForeignKey("village.id"))
    granted_at: Mapped[datetime] = mapped_column(default=utcnow)
    __table_args__ = (UniqueConstraint("openid", "role", "pool_id", "village_id"),)


class AdminInvite(Base):
    __tablename__ = "admin_invite"
    id: Mapped[int] = mapped_column(primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[AdminRole] = mapped_column(_enum(AdminRole, "admin_role"))
    pool_id: Mapped[int | None] = mapped_column(ForeignKey("pool.id"))
    village_id: Mapped[int | None] = mapped_column(ForeignKey("village.id"))
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    used_by: Mapped[str | None] = mapped_column(String(64))


class ConsoleLink(Base):
    """A one-time sign-in link to the web console (`/后台`): its token's hash, valid minutes."""
    __tablename__ = "console_link"
    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    openid: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class ConsoleSession(Base):
    """A signed-in browser of the web console: its cookie's hash, its CSRF token, 8 hours;
    ended by `/后台 退出`, the page's 退出 or a revoked grant."""
    __tablename__ = "console_session"
    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    openid: Mapped[str] = mapped_column(String(64), index=True)
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]


class GuessAttempt(Base):
    """A wrong code sent by a user (an administrator invite code, a family binding code): the
    guessing limits of core/attempts.py count these rows over the last hour."""
    __tablename__ = "guess_attempt"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))  # admin_code | proxy_code
    openid: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    __table_args__ = (Index("ix_guess_attempt_kind_at", "kind", "at"),
                      Index("ix_guess_attempt_kind_openid_at", "kind", "openid", "at"))


class DialogueState(Base):
    __tablename__ = "dialogue_state"
    openid: Mapped[str] = mapped_column(String(64), primary_key=True)
    dialogue: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(32))
    data: Mapped[dict] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class InboundMessage(Base):
    """One accepted WeChat message; the unique dedupe key drops WeChat's retries."""
    __tablename__ = "inbound_message"
    id: Mapped[int] = mapped_column(primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(String(128), unique=True)
    openid: Mapped[str] = mapped_column(String(64))  # no index: nothing looks rows up by it
    msg_type: Mapped[str] = mapped_column(String(32))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    done: Mapped[bool] = mapped_column(Boolean, default=False)
    # the passive reply as plain texts/images (JSON list), replayed to retries
    reply: Mapped[list | None] = mapped_column(JSON)


class WebhookNonce(Base):
    """A signed query string the webhook accepted (`<timestamp>:<nonce>`) and the message it
    came with: the same query with another message is refused until it expires, when its
    timestamp leaves the webhook's window (bot/web/nonces.py)."""
    __tablename__ = "webhook_nonce"
    nonce: Mapped[str] = mapped_column(String(96), primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(String(128))
    # no index: the table holds the last few minutes' messages only, and one index fewer to
    # write per message
    expires_at: Mapped[datetime]


class OutboxMessage(Base):
    __tablename__ = "outbox"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))  # e.g. wechat.send, media.download, wecom.post
    payload: Mapped[dict] = mapped_column(JSON)
    # the openid a message is for, if any: held messages wake up when that user writes again
    recipient: Mapped[str | None] = mapped_column(String(64), index=True)
    status: Mapped[OutboxStatus] = mapped_column(_enum(OutboxStatus, "outbox_status"),
                                                 default=OutboxStatus.pending)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
    # a notice to a household (kind `notice`): its event, the household, and the channel that
    # delivered it (custom, template, subscribe, sms; None until delivered)
    event: Mapped[str | None] = mapped_column(String(32))
    household_id: Mapped[int | None] = mapped_column(Integer)
    channel: Mapped[str | None] = mapped_column(String(16))

    __table_args__ = (Index("ix_outbox_due", "status", "next_attempt_at"),
                      Index("ix_outbox_notice", "household_id", "event"))


class AuditLog(Base):
    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(64))  # openid or cli:<user>
    action: Mapped[str] = mapped_column(String(64))
    entity: Mapped[str | None] = mapped_column(String(32))
    entity_id: Mapped[str | None] = mapped_column(String(64))
    before: Mapped[dict | None] = mapped_column(JSON)
    after: Mapped[dict | None] = mapped_column(JSON)


class WorkerHeartbeat(Base):
    """Each worker process (outbox loop, scheduler) says it is alive; /healthz reads it."""
    __tablename__ = "worker_heartbeat"
    name: Mapped[str] = mapped_column(String(128), primary_key=True)  # host:pid
    scheduler_active: Mapped[bool] = mapped_column(Boolean, default=False)
    seen_at: Mapped[datetime] = mapped_column(default=utcnow)


class AccessToken(Base):
    __tablename__ = "access_token"
    app_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    token: Mapped[str] = mapped_column(String(512))
    expires_at: Mapped[datetime]


# ---------------------------------------------------------------------------------------------
# Pools, villages, scheme years, the DRG catalogue.

class Pool(Base):
    __tablename__ = "pool"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(64))
    level: Mapped[PoolLevel] = mapped_column(_enum(PoolLevel, "pool_level"))

    villages: Mapped[list["Village"]] = relationship(back_populates="pool", order_by="Village.id")


class Village(Base):
    __tablename__ = "village"
    id: Mapped[int] = mapped_column(primary_key=True)
    pool_id: Mapped[int] = mapped_column(ForeignKey("pool.id"))
    town: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(64))
    full_name: Mapped[str] = mapped_column(String(130), unique=True)  # 镇/村

    pool: Mapped[Pool] = relationship(back_populates="villages")


class GroupChat(Base):
    """A village's WeCom group-bot (a village may have several)."""
    __tablename__ = "group_chat"
    id: Mapped[int] = mapped_column(primary_key=True)
    village_id: Mapped[int] = mapped_column(ForeignKey("village.id"))
    key: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    __table_args__ = (UniqueConstraint("village_id", "key"),)


class SchemeYear(Base):
    __tablename__ = "scheme_year"
    id: Mapped[int] = mapped_column(primary_key=True)
    pool_id: Mapped[int] = mapped_column(ForeignKey("pool.id"))
    start: Mapped[date] = mapped_column(Date)
    end: Mapped[date] = mapped_column(Date)
    enrolment_opens: Mapped[date] = mapped_column(Date)
    enrolment_closes: Mapped[date] = mapped_column(Date)
    # the whole validated scheme file (amounts as fen), rules for adjudication, payout, fees
    rules: Mapped[dict] = mapped_column(JSON)
    source_file: Mapped[str | None] = mapped_column(String(255))
    loaded_at: Mapped[datetime] = mapped_column(default=utcnow)

    pool: Mapped[Pool] = relationship()
    __table_args__ = (UniqueConstraint("pool_id", "start"),)

    @property
    def scheme(self):
        """The typed scheme of the stored rules (core.scheme.Scheme, with its quota table),
        built once and kept while the rules are the same object: new rules assigned (a scheme
        file loaded again) or read again from the database build it anew."""
        rules = self.rules
        cached = self.__dict__.get("_scheme")
        if cached is None or cached[0] is not rules:
            from core.scheme import scheme_from_rules

            cached = self.__dict__["_scheme"] = (rules, scheme_from_rules(rules))
        return cached[1]


class DrgGroup(Base):
    __tablename__ = "drg_group"
    code: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))


class Quota(Base):
    __tablename__ = "quota"
    id: Mapped[int] = mapped_column(primary_key=True)
    scheme_year_id: Mapped[int] = mapped_column(ForeignKey("scheme_year.id"))
    drg_code: Mapped[str] = mapped_column(ForeignKey("drg_group.code"))
    quota_fen: Mapped[int] = mapped_column(BigInteger)
    __table_args__ = (UniqueConstraint("scheme_year_id", "drg_code"),)


# ---------------------------------------------------------------------------------------------
# Households, members, enrolments, links from WeChat users.

class Household(Base):
    __tablename__ = "household"
    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(16), unique=True)  # H + digits
    pool_id: Mapped[int] = mapped_column(ForeignKey("pool.id"))
    village_id: Mapped[int] = mapped_column(ForeignKey("village.id"))
    # the contact phone, encrypted (the vault) beside a masked copy for display (138****5678)
    phone_enc: Mapped[str | None] = mapped_column(String(255))
    phone_masked: Mapped[str | None] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(16), default="active")
    # signed up in chat under enrolment.village_confirms: may not pay before /确认登记
    awaits_village: Mapped[bool] = mapped_column(Boolean, default=False,
                                                 server_default=text("false"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    pool: Mapped[Pool] = relationship()
    village: Mapped[Village] = relationship()
    members: Mapped[list["Member"]] = relationship(back_populates="household", order_by="Member.id")
    # a village's households, for the console's queue (migration console_02)
    __table_args__ = (Index("ix_household_village", "village_id", "id"),
                      # households waiting for /确认登记 (migration scaleq_01)
                      Index("ix_household_awaits_village", "id",
                            sqlite_where=text("awaits_village"),
                            postgresql_where=text("awaits_village")))


class Member(Base):
    __tablename__ = "member"
    id: Mapped[int] = mapped_column(primary_key=True)
    household_id: Mapped[int] = mapped_column(ForeignKey("household.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    id_number_enc: Mapped[str] = mapped_column(String(255))
    id_number_hash: Mapped[str] = mapped_column(String(64), index=True)
    id_number_masked: Mapped[str] = mapped_column(String(24))
    # the year only: the full date is in the (encrypted) ID number, core.ids.birth_date_of
    birth_year: Mapped[int] = mapped_column(SmallInteger)
    relation: Mapped[Relation] = mapped_column(_enum(Relation, "relation"))
    insurance: Mapped[InsuranceType] = mapped_column(_enum(InsuranceType, "insurance_type"))
    category: Mapped[str | None] = mapped_column(String(16))  # 低保, 特困, …
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    household: Mapped[Household] = relationship(back_populates="members")


class Enrolment(Base):
    __tablename__ = "enrolment"
    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("member.id"))
    scheme_year_id: Mapped[int] = mapped_column(ForeignKey("scheme_year.id"))
    # a person (by ID) is in at most one household per pool and year
    id_number_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[EnrolmentStatus] = mapped_column(_enum(EnrolmentStatus, "enrolment_status"),
                                                    default=EnrolmentStatus.pending)
    paid_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # a newborn added outside the payment window (paid for on its own, scheme newborn_days)
    newborn: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_false())
    # 上年参加 from a village list: earlier participation not in the database (None: not said)
    continued: Mapped[bool | None] = mapped_column(Boolean)

    member: Mapped[Member] = relationship()
    scheme_year: Mapped[SchemeYear] = relationship()
    __table_args__ = (UniqueConstraint("member_id", "scheme_year_id"),
                      UniqueConstraint("scheme_year_id", "id_number_hash"),
                      # a year's enrolments by status (migration scaleq_01)
                      Index("ix_enrolment_year_status", "scheme_year_id", "status", "member_id"))


class HouseholdTally(Base):
    """An active household's counts for participation (/统计, the year report), migration
    scaleq_03: a row with scheme_year_id 0 (its members), and one per scheme year in which it
    has enrolments (how many, how many paid). Kept exact in the transaction that changes the
    household, its members or their enrolments (core.stats.refresh_tally)."""
    __tablename__ = "household_tally"
    household_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scheme_year_id: Mapped[int] = mapped_column(Integer, primary_key=True)  # 0: the members
    pool_id: Mapped[int] = mapped_column(Integer)
    village_id: Mapped[int] = mapped_column(Integer)
    persons: Mapped[int] = mapped_column(Integer, default=0)
    enrolled: Mapped[int] = mapped_column(Integer, default=0)
    paid: Mapped[int] = mapped_column(Integer, default=0)
    __table_args__ = (Index("ix_household_tally_pool_year", "pool_id", "scheme_year_id",
                            "village_id", "persons", "enrolled", "paid"),)


class HouseholdLink(Base):
    __tablename__ = "household_link"
    id: Mapped[int] = mapped_column(primary_key=True)
    household_id: Mapped[int] = mapped_column(ForeignKey("household.id"))
    openid: Mapped[str] = mapped_column(String(64), index=True)
    role: Mapped[LinkRole] = mapped_column(_enum(LinkRole, "link_role"))
    label: Mapped[str | None] = mapped_column(String(32))  # what the head calls a proxy: 儿子小明
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    household: Mapped[Household] = relationship()
    __table_args__ = (UniqueConstraint("household_id", "openid"),)


class ProxyCode(Base):
    __tablename__ = "proxy_code"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(6), index=True)
    household_id: Mapped[int] = mapped_column(ForeignKey("household.id"))
    created_by: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime]
    used_by: Mapped[str | None] = mapped_column(String(64))
    label: Mapped[str | None] = mapped_column(String(32))  # copied to the proxy's link


# ---------------------------------------------------------------------------------------------
# Payments and the ledger.

class PaymentOrder(Base):
    __tablename__ = "payment_order"
    id: Mapped[int] = mapped_column(primary_key=True)
    out_trade_no: Mapped[str] = mapped_column(String(32), unique=True)
    household_id: Mapped[int] = mapped_column(ForeignKey("household.id"))
    scheme_year_id: Mapped[int] = mapped_column(ForeignKey("scheme_year.id"))
    amount_fen: Mapped[int] = mapped_column(BigInteger)  # what the household pays
    breakdown: Mapped[dict] = mapped_column(JSON)  # per member and source, fen
    members_digest: Mapped[str] = mapped_column(String(64))
    status: Mapped[OrderStatus] = mapped_column(_enum(OrderStatus, "order_status"),
                                                default=OrderStatus.open)
    code_url: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    paid_at: Mapped[datetime | None]

    household: Mapped[Household] = relationship()
    # one open order per household and scheme year (migration payments_01)
    __table_args__ = (Index("ux_payment_order_open", "household_id", "scheme_year_id", unique=True,
                            sqlite_where=text("status = 'open'"),
                            postgresql_where=text("status = 'open'")),)


class Payment(Base):
    __tablename__ = "payment"
    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("payment_order.id"))
    household_id: Mapped[int] = mapped_column(ForeignKey("household.id"))
    scheme_year_id: Mapped[int] = mapped_column(ForeignKey("scheme_year.id"))
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    channel: Mapped[str] = mapped_column(String(16))  # wechatpay | cash | transfer
    transaction_id: Mapped[str] = mapped_column(String(64), unique=True)
    recorded_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PaymentException(Base):
    """A payment that could not be applied (amount mismatch, expired order): for an administrator."""
    __tablename__ = "payment_exception"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    out_trade_no: Mapped[str | None] = mapped_column(String(32))
    transaction_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    detail: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[datetime | None]


class PaymentReminder(Base):
    """A payment-deadline reminder sent to a household (days_before: 7 or 1), sent once."""
    __tablename__ = "payment_reminder"
    id: Mapped[int] = mapped_column(primary_key=True)
    household_id: Mapped[int] = mapped_column(ForeignKey("household.id"))
    scheme_year_id: Mapped[int] = mapped_column(ForeignKey("scheme_year.id"))
    days_before: Mapped[int] = mapped_column(Integer)
    sent_at: Mapped[datetime] = mapped_column(default=utcnow)
    __table_args__ = (UniqueConstraint("household_id", "scheme_year_id", "days_before"),)


class JournalEntry(Base):
    __tablename__ = "journal_entry"
    id: Mapped[int] = mapped_column(primary_key=True)
    pool_id: Mapped[int] = mapped_column(ForeignKey("pool.id"))
    booked_on: Mapped[date] = mapped_column(Date)
    kind: Mapped[str] = mapped_column(String(32))  # contribution, funds, payout, fee, recovery
    memo: Mapped[str] = mapped_column(String(255), default="")
    # idempotency key of what caused it (payment transaction, payout line, fee quarter…)
    ref: Mapped[str] = mapped_column(String(96), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    lines: Mapped[list["JournalLine"]] = relationship(back_populates="entry",
                                                      cascade="all, delete-orphan")
    # a pool's entries by day (migration scaleq_01)
    __table_args__ = (Index("ix_journal_entry_pool_booked", "pool_id", "booked_on"),)


class JournalLine(Base):
    __tablename__ = "journal_line"
    id: Mapped[int] = mapped_column(primary_key=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("journal_entry.id"), index=True)
    account: Mapped[str] = mapped_column(String(64))
    amount_fen: Mapped[int] = mapped_column(BigInteger)  # debit positive, credit negative

    entry: Mapped[JournalEntry] = relationship(back_populates="lines")


class FundTotal(Base):
    """The ledger summed per pool, day, entry kind and account (migration scaleq_02): what the
    fund's figures read instead of every line. Kept exact by `core.ledger.post`, in the
    transaction that posts the entry; `core.ledger.recount` rebuilds it from the lines."""
    __tablename__ = "fund_total"
    pool_id: Mapped[int] = mapped_column(ForeignKey("pool.id"), primary_key=True)
    booked_on: Mapped[date] = mapped_column(Date, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    account: Mapped[str] = mapped_column(String(64), primary_key=True)
    amount_fen: Mapped[int] = mapped_column(BigInteger, default=0)  # sum of the lines
    credit_fen: Mapped[int] = mapped_column(BigInteger, default=0)  # sum of the negative ones
    lines: Mapped[int] = mapped_column(Integer, default=0)


# ---------------------------------------------------------------------------------------------
# Claims, documents, bank cards, payouts, objections.

class Claim(Base):
    __tablename__ = "claim"
    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(16), unique=True)  # C + 8+ digits
    household_id: Mapped[int] = mapped_column(ForeignKey("household.id"))
    member_id: Mapped[int] = mapped_column(ForeignKey("member.id"))
    scheme_year_id: Mapped[int | None] = mapped_column(ForeignKey("scheme_year.id"))
    status: Mapped[ClaimStatus] = mapped_column(_enum(ClaimStatus, "claim_status"),
                                                default=ClaimStatus.collecting,
                                                index=True)  # ix_claim_status: payouts_01
    submitted_at: Mapped[datetime | None]
    due_date: Mapped[date | None] = mapped_column(Date)
    # facts as recorded by the reviewer (/核定) and as stated by the household
    drg_code: Mapped[str | None] = mapped_column(String(16))
    out_of_pocket_fen: Mapped[int | None] = mapped_column(BigInteger)
    admission_date: Mapped[date | None] = mapped_column(Date)
    discharge_date: Mapped[date | None] = mapped_column(Date)
    insurance: Mapped[InsuranceType | None] = mapped_column(_enum(InsuranceType, "insurance_type"))
    hospital: Mapped[str | None] = mapped_column(String(128))
    exclusion: Mapped[str | None] = mapped_column(String(32))
    stated: Mapped[dict] = mapped_column(JSON, default=dict)  # what the household typed
    ocr: Mapped[dict] = mapped_column(JSON, default=dict)  # read-out with confidences
    flags: Mapped[dict] = mapped_column(JSON, default=dict)  # possible_duplicate etc.
    # the decision: amount (null for a rejection), reason codes, trace
    amount_fen: Mapped[int | None] = mapped_column(BigInteger)
    reasons: Mapped[list] = mapped_column(JSON, default=list)
    trace: Mapped[list] = mapped_column(JSON, default=list)
    note: Mapped[str | None] = mapped_column(Text)
    # the last rejection and the household's one appeal of it (复核, core/appeals.py)
    rejected_at: Mapped[datetime | None]
    rejected_by: Mapped[str | None] = mapped_column(String(64))
    appealed_at: Mapped[datetime | None]
    appealed_by: Mapped[str | None] = mapped_column(String(64))
    appeal_reason: Mapped[str | None] = mapped_column(Text)
    # an uninsured member's claim under claims.uninsured_via_village: review waits for
    # the village administrator's /确认申请
    awaits_village: Mapped[bool] = mapped_column(Boolean, default=False,
                                                 server_default=text("false"))
    created_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    household: Mapped[Household] = relationship()
    member: Mapped[Member] = relationship()
    documents: Mapped[list["ClaimDocument"]] = relationship(back_populates="claim",
                                                            order_by="ClaimDocument.id")
    # the console's queue (migration console_02); a household's claims newest first, a
    # year's claims by status, those waiting for the village (migration scaleq_01); a
    # person's claims, read by each decision (migration scaleq_04)
    __table_args__ = (Index("ix_claim_queue", "status", "submitted_at", "id", "household_id"),
                      Index("ix_claim_household", "household_id", "created_at", "id"),
                      Index("ix_claim_member", "member_id"),
                      Index("ix_claim_year_status", "scheme_year_id", "status", "amount_fen"),
                      Index("ix_claim_awaits_village", "id",
                            sqlite_where=text("awaits_village"),
                            postgresql_where=text("awaits_village")),
                      # claims open to appeal, by household (migration webhook2_01)
                      Index("ix_claim_open_rejection", "household_id",
                            postgresql_where=text("status = 'rejected' AND appealed_at IS NULL"),
                            sqlite_where=text("status = 'rejected' AND appealed_at IS NULL")))


class ClaimDocument(Base):
    __tablename__ = "claim_document"
    id: Mapped[int] = mapped_column(primary_key=True)
    claim_id: Mapped[int] = mapped_column(ForeignKey("claim.id"), index=True)
    kind: Mapped[DocumentKind | None] = mapped_column(_enum(DocumentKind, "document_kind"))
    media_id: Mapped[str | None] = mapped_column(String(160))
    # the inbound message it came from: one document per image message, whatever the retries
    source_key: Mapped[str | None] = mapped_column(String(128), unique=True)
    sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    phash: Mapped[str | None] = mapped_column(String(32))
    size: Mapped[int | None] = mapped_column(Integer)
    content_type: Mapped[str | None] = mapped_column(String(64))
    ocr_text: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    claim: Mapped[Claim] = relationship(back_populates="documents")


class DocumentPhashBand(Base):
    """One band of a photo's pHash (its bits cut into DUPLICATE_DISTANCE + 1 bands, see
    core/media.py `phash_bands`): two photos within that many bits share at least one band
    whole, so the look-up of near duplicates reads the few photos sharing a band (an index)
    instead of every stored photo. Deleted with its document."""
    __tablename__ = "document_phash_band"
    id: Mapped[int] = mapped_column(primary_key=True)
    document_id: Mapped[int] = mapped_column(
        ForeignKey("claim_document.id", ondelete="CASCADE"), index=True)
    band: Mapped[int] = mapped_column(SmallInteger)
    value: Mapped[int] = mapped_column(Integer)

    __table_args__ = (Index("ix_document_phash_band", "band", "value"),)


class BankCard(Base):
    __tablename__ = "bank_card"
    id: Mapped[int] = mapped_column(primary_key=True)
    household_id: Mapped[int] = mapped_column(ForeignKey("household.id"), index=True)
    number_enc: Mapped[str] = mapped_column(String(255))
    number_hash: Mapped[str] = mapped_column(String(64))
    number_masked: Mapped[str] = mapped_column(String(24))
    bank_name: Mapped[str] = mapped_column(String(64))
    holder_member_id: Mapped[int] = mapped_column(ForeignKey("member.id"))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # one active card per household (migration payouts_01)
    __table_args__ = (Index("uq_bank_card_active_household", "household_id", unique=True,
                            sqlite_where=text("active"), postgresql_where=text("active")),)


class PayoutBatch(Base):
    __tablename__ = "payout_batch"
    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(24), unique=True)  # B + pool + month
    pool_id: Mapped[int] = mapped_column(ForeignKey("pool.id"))
    month: Mapped[str] = mapped_column(String(7))  # YYYY-MM
    status: Mapped[BatchStatus] = mapped_column(_enum(BatchStatus, "batch_status"),
                                                default=BatchStatus.draft)
    total_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    file_path: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    confirmed_at: Mapped[datetime | None]
    __table_args__ = (UniqueConstraint("pool_id", "month"),)

    lines: Mapped[list["PayoutLine"]] = relationship(back_populates="batch", order_by="PayoutLine.id")


class PayoutLine(Base):
    __tablename__ = "payout_line"
    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("payout_batch.id"))
    claim_id: Mapped[int] = mapped_column(ForeignKey("claim.id"))
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    card_bank: Mapped[str] = mapped_column(String(64))
    card_holder: Mapped[str] = mapped_column(String(64))
    card_number_enc: Mapped[str] = mapped_column(String(255))
    card_number_masked: Mapped[str] = mapped_column(String(24))
    status: Mapped[PayoutLineStatus] = mapped_column(_enum(PayoutLineStatus, "payout_line_status"),
                                                     default=PayoutLineStatus.pending)
    failure: Mapped[str | None] = mapped_column(Text)

    batch: Mapped[PayoutBatch] = relationship(back_populates="lines")
    claim: Mapped[Claim] = relationship()
    # a claim is in one live (pending or paid) line at most (migration payouts_01)
    __table_args__ = (UniqueConstraint("batch_id", "claim_id"),
                      Index("uq_payout_line_live_claim", "claim_id", unique=True,
                            sqlite_where=text("status <> 'failed'"),
                            postgresql_where=text("status <> 'failed'")))


class Objection(Base):
    __tablename__ = "objection"
    id: Mapped[int] = mapped_column(primary_key=True)
    claim_id: Mapped[int] = mapped_column(ForeignKey("claim.id"), index=True)
    openid: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="open")  # open | cleared | upheld
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[datetime | None]
