"""The data model: plain SQLAlchemy 2.0, usable without Flask."""

from __future__ import annotations

import enum
import os
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Annotated, Any, ClassVar

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    select,
)
from sqlalchemy import text as sql_text
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from cms.clock import SystemClock

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def stamp(context: Any) -> datetime:
    """``created_at``/``updated_at``: now on the injected clock of the session writing the row.

    ``cms.db`` puts the session's clock on its connection when the transaction begins; a
    write outside a session (or by a session without a clock) reads the real clock.
    """
    clock = context.connection.info.get("clock") if context is not None else None
    return (clock if clock is not None else SystemClock()).now()


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the zone otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime stored; use timezone-aware UTC")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# The dialect attribute that carries an engine's data folder (set by ``cms.db.make_engine``).
DATA_DIR_ATTRIBUTE = "dalaba_data_dir"


class NoDataFolder(RuntimeError):
    """A stored file path was read or written on an engine that knows no data folder."""


def data_dir_of(dialect: Any) -> Path:
    """The data folder of the engine whose dialect this is.

    Raises:
        NoDataFolder: the engine was made without one (``make_engine(url, data_dir=...)``).
    """
    root: Path | None = getattr(dialect, DATA_DIR_ATTRIBUTE, None)
    if root is None:
        raise NoDataFolder(
            "this engine has no data folder: make it with make_engine(url, data_dir=...)"
        )
    return root


def relative_to_data(path: str | os.PathLike[str], root: Path) -> str:
    """``path`` as stored: relative to the data folder ``root`` (resolved), or absolute when
    outside it.

    A path inside the folder is stored relative (POSIX separators), so that the folder can
    move: a restore into another ``DALABA_DATA_DIR``, or the folder mounted elsewhere on a
    second web machine. Production writes audio only inside the data folder; a path outside
    it (a test's shared render cache) is kept absolute on purpose, and the pages that send
    files refuse it. A relative path that climbs out of the folder is refused.
    """
    candidate = Path(path)
    if not candidate.is_absolute():
        if not (root / candidate).resolve().is_relative_to(root):
            raise ValueError(f"stored path {str(path)!r} leaves the data folder")
        return candidate.as_posix()
    # Lexically first (no system call per row); a path through a symlink is resolved.
    normal = Path(os.path.normpath(candidate))
    if not normal.is_relative_to(root):
        normal = candidate.resolve()
    if normal.is_relative_to(root):
        return normal.relative_to(root).as_posix()
    return str(candidate)


class DataPath(TypeDecorator[str]):
    """A file in the data folder: stored relative to it, read back as an absolute path.

    Code reads and writes absolute paths as before; the engine's data folder (from
    ``Settings.data_dir``, see ``cms.db.make_engine``) turns them into relative ones on the
    way in and back on the way out. So a restored or remounted data folder works at any path.
    """

    impl = String(500)
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Any) -> str | None:
        if value is None:
            return None
        return relative_to_data(value, data_dir_of(dialect))

    def process_result_value(self, value: str | None, dialect: Any) -> str | None:
        if value is None or Path(value).is_absolute():
            return value
        return str(data_dir_of(dialect) / value)


intpk = Annotated[int, mapped_column(primary_key=True)]
created_at = Annotated[datetime, mapped_column(UTCDateTime, default=stamp)]
str80 = Annotated[str, mapped_column(String(80))]
str200 = Annotated[str, mapped_column(String(200))]


class Base(DeclarativeBase):
    # Every model is mapped to a Table (DeclarativeBase only promises a FromClause).
    __table__: ClassVar[Table]

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime}


def _enum(cls: type[enum.Enum]) -> Enum:
    """Store enums by value (readable in the database, stable across renames of members)."""
    return Enum(
        cls,
        values_callable=lambda e: [m.value for m in e],
        native_enum=False,
        validate_strings=True,
        length=20,
        name=cls.__name__.lower(),
    )


class Role(enum.StrEnum):
    ADMIN = "admin"
    EDITOR = "editor"
    REVIEWER = "reviewer"
    OPERATOR = "operator"


class AreaKind(enum.StrEnum):
    COUNTY = "county"
    TOWNSHIP = "township"
    VILLAGE = "village"
    GROUP = "group"


class OutletKind(enum.StrEnum):
    LOUDSPEAKER = "loudspeaker"
    MOBILE = "mobile"


class Status(enum.StrEnum):
    DRAFT = "draft"
    IN_REVIEW = "in_review"
    APPROVED = "approved"
    WITHDRAWN = "withdrawn"


class Priority(enum.StrEnum):
    NORMAL = "normal"
    URGENT = "urgent"


class Airtime(enum.StrEnum):
    """The parts of the day a notice plays in (早 before 11:00, 中 until 16:00, 晚 after)."""

    ALL = "all"
    MORNING = "morning"
    NOON = "noon"
    EVENING = "evening"
    MORNING_NOON = "morning+noon"
    MORNING_EVENING = "morning+evening"
    NOON_EVENING = "noon+evening"


outlet_operator = Table(
    "outlet_operator",
    Base.metadata,
    Column("outlet_id", ForeignKey("outlet.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", ForeignKey("user.id", ondelete="CASCADE"), primary_key=True),
)

revision_area = Table(
    "revision_area",
    Base.metadata,
    Column("revision_id", ForeignKey("revision.id", ondelete="CASCADE"), primary_key=True),
    Column("area_id", ForeignKey("area.id", ondelete="RESTRICT"), primary_key=True),
)


class User(Base):
    __tablename__ = "user"

    id: Mapped[intpk]
    username: Mapped[str] = mapped_column(String(40), unique=True)
    display_name: Mapped[str80]
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[Role] = mapped_column(_enum(Role))
    active: Mapped[bool] = mapped_column(default=True)
    locale: Mapped[str | None] = mapped_column(String(10))
    created_at: Mapped[created_at]
    # Stored in the login cookie and compared on every request: bumping it (logout, a new
    # password, deactivation) ends every session of this user, copied cookies included.
    session_version: Mapped[int] = mapped_column(default=0, server_default="0")
    # Locked after many failed logins from many addresses (cms.services.users.authenticate):
    # no login from anywhere until then, unless an admin lifts it first.
    login_locked_until: Mapped[datetime | None]
    # The office the user works for: they see and act on this area and everything below it
    # (cms.services.scope). None: the whole install (a single township's staff, the IT admin).
    area_id: Mapped[int | None] = mapped_column(
        ForeignKey("area.id", ondelete="RESTRICT"), index=True
    )

    outlets: Mapped[list[Outlet]] = relationship(
        secondary=outlet_operator, back_populates="operators"
    )
    area: Mapped[Area | None] = relationship()

    def __repr__(self) -> str:
        return f"<User {self.username} {self.role.value}>"


class ApiToken(Base):
    """A bearer token for /api/v1; only its SHA-256 is stored."""

    __tablename__ = "api_token"

    id: Mapped[intpk]
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(12))
    label: Mapped[str80] = mapped_column(default="")
    created_at: Mapped[created_at]
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

    user: Mapped[User] = relationship()


class LoginFailure(Base):
    """One failed login, kept briefly to throttle guessing by user name and by address."""

    __tablename__ = "login_failure"

    id: Mapped[intpk]
    username: Mapped[str] = mapped_column(String(40), index=True)
    remote_addr: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[created_at]


class Area(Base):
    """A node of the grid (县 → 乡镇 → 村 → 组, any depth; an install may start at a township).

    ``path`` is the materialised path of ids ("/1/4/9/") so that "this area and all below
    it" is one indexed prefix query on any database.
    """

    __tablename__ = "area"

    id: Mapped[intpk]
    name: Mapped[str80]
    kind: Mapped[AreaKind] = mapped_column(_enum(AreaKind))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("area.id", ondelete="RESTRICT"))
    path: Mapped[str] = mapped_column(String(255), index=True, default="")
    sort: Mapped[int] = mapped_column(default=0)

    parent: Mapped[Area | None] = relationship(remote_side="Area.id", back_populates="children")
    children: Mapped[list[Area]] = relationship(
        back_populates="parent", order_by="(Area.sort, Area.id)"
    )
    outlets: Mapped[list[Outlet]] = relationship(back_populates="area")

    __table_args__ = (UniqueConstraint("parent_id", "name"),)

    @property
    def depth(self) -> int:
        return self.path.count("/") - 2

    def __repr__(self) -> str:
        return f"<Area {self.id} {self.name}>"


class Outlet(Base):
    """A place where audio is played: a fixed loudspeaker or a mobile speaker."""

    __tablename__ = "outlet"

    id: Mapped[intpk]
    name: Mapped[str80]
    kind: Mapped[OutletKind] = mapped_column(_enum(OutletKind))
    area_id: Mapped[int] = mapped_column(ForeignKey("area.id", ondelete="RESTRICT"), index=True)
    active: Mapped[bool] = mapped_column(default=True)
    loop_minutes: Mapped[int] = mapped_column(default=30)
    note: Mapped[str] = mapped_column(String(500), default="")
    # Its own voice (every announcement spoken with it) and engine mode (auto, edge,
    # offline, neural, or recording: recordings only); None inherits (each announcement's
    # voice, the township's engine).
    voice: Mapped[str | None] = mapped_column(String(60))
    tts_engine: Mapped[str | None] = mapped_column(String(20))
    created_at: Mapped[created_at]

    area: Mapped[Area] = relationship(back_populates="outlets")
    slots: Mapped[list[Slot]] = relationship(
        back_populates="outlet", cascade="all, delete-orphan", order_by="Slot.at"
    )
    operators: Mapped[list[User]] = relationship(
        secondary=outlet_operator, back_populates="outlets"
    )


class Slot(Base):
    """A daily broadcast time of an outlet, with the length the program may fill."""

    __tablename__ = "slot"

    id: Mapped[intpk]
    outlet_id: Mapped[int] = mapped_column(ForeignKey("outlet.id", ondelete="CASCADE"))
    at: Mapped[time]
    minutes: Mapped[int] = mapped_column(default=10)

    outlet: Mapped[Outlet] = relationship(back_populates="slots")

    __table_args__ = (UniqueConstraint("outlet_id", "at"),)

    @property
    def label(self) -> str:
        return self.at.strftime("%H:%M")


class ChatGroup(Base):
    """A group chat bound to one area; the bot posts the area's notices there."""

    __tablename__ = "chat_group"

    id: Mapped[intpk]
    platform: Mapped[str] = mapped_column(String(20), default="telegram")
    chat_id: Mapped[str] = mapped_column(String(64))
    title: Mapped[str200] = mapped_column(default="")
    area_id: Mapped[int] = mapped_column(ForeignKey("area.id", ondelete="RESTRICT"), index=True)
    active: Mapped[bool] = mapped_column(default=True)
    deactivated_reason: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[created_at]
    # What the chat's plugin keeps to reach it (a group robot's webhook address and signing
    # secret), under the plugin's own names (cms.channels.Binding); cms never reads it.
    # Never shown again after saving, never logged, kept out of exports and the API.
    credentials: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)

    area: Mapped[Area] = relationship()

    __table_args__ = (UniqueConstraint("platform", "chat_id"),)


class Topic(Base):
    __tablename__ = "topic"

    id: Mapped[intpk]
    name: Mapped[str] = mapped_column(String(40), unique=True)
    active: Mapped[bool] = mapped_column(default=True)
    sort: Mapped[int] = mapped_column(default=0)


class Announcement(Base):
    """An announcement and its workflow state; its content lives in immutable revisions."""

    __tablename__ = "announcement"

    id: Mapped[intpk]
    status: Mapped[Status] = mapped_column(_enum(Status), default=Status.DRAFT, index=True)
    created_by_id: Mapped[int] = mapped_column(ForeignKey("user.id"))
    # The office that owns it (its drafts, review and history are seen there and above):
    # the author's area, or for an author of the whole install the targets' common ancestor.
    # None: owned by the whole install, seen only by its users.
    area_id: Mapped[int | None] = mapped_column(
        ForeignKey("area.id", ondelete="RESTRICT"), index=True
    )
    created_at: Mapped[created_at]
    updated_at: Mapped[datetime] = mapped_column(default=stamp, onupdate=stamp)
    # The newest revision (what the editor sees and what goes to review).
    latest_revision_id: Mapped[int | None] = mapped_column(
        ForeignKey("revision.id", use_alter=True)
    )
    # The revision that goes out; stays pinned while a newer revision is in review.
    approved_revision_id: Mapped[int | None] = mapped_column(
        ForeignKey("revision.id", use_alter=True)
    )
    submitted_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    review_comment: Mapped[str | None] = mapped_column(Text)
    reviewed_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    reviewed_at: Mapped[datetime | None]
    withdrawn_at: Mapped[datetime | None]
    # The public share page /s/<token> (kept in clear: the panel shows the link again and
    # again). Set when first approved; a new one replaces it and the old link dies.
    share_token: Mapped[str | None] = mapped_column(String(64), unique=True, index=True)
    # A county campaign (cms.services.campaigns): drafted and reviewed by the county, it
    # never goes out itself; each township adopts it as is or adapts it into its own copy.
    campaign: Mapped[bool] = mapped_column(default=False, server_default=false())
    # A township's copy of a county campaign: the campaign, and how the copy was made
    # (``adopted``: the county's approved content as is; ``adapted``: the township's revision).
    origin_id: Mapped[int | None] = mapped_column(
        ForeignKey("announcement.id", ondelete="RESTRICT"), index=True
    )
    adoption: Mapped[str | None] = mapped_column(String(10))

    created_by: Mapped[User] = relationship(foreign_keys=[created_by_id])
    origin: Mapped[Announcement | None] = relationship(remote_side="Announcement.id")
    area: Mapped[Area | None] = relationship()
    reviewed_by: Mapped[User | None] = relationship(foreign_keys=[reviewed_by_id])
    latest_revision: Mapped[Revision | None] = relationship(
        foreign_keys=[latest_revision_id], post_update=True
    )
    approved_revision: Mapped[Revision | None] = relationship(
        foreign_keys=[approved_revision_id], post_update=True
    )
    revisions: Mapped[list[Revision]] = relationship(
        back_populates="announcement",
        foreign_keys="Revision.announcement_id",
        order_by="Revision.number",
    )

    # One copy per township and campaign.
    __table_args__ = (UniqueConstraint("origin_id", "area_id"),)

    @property
    def current(self) -> Revision:
        assert self.latest_revision is not None
        return self.latest_revision

    @property
    def approved(self) -> Revision:
        """The approved revision of an announcement known to be approved (live queries)."""
        if self.approved_revision is None:
            raise LookupError(f"announcement {self.id} has no approved revision")
        return self.approved_revision

    def phase(self, today: date) -> str:
        """The workflow state as users see it, with approved split into its campaign phases."""
        if self.status is not Status.APPROVED or self.approved_revision is None:
            return self.status.value
        rev = self.approved_revision
        if today < rev.start_date:
            return "scheduled"
        if today > rev.end_date:
            return "finished"
        return "active"


class Revision(Base):
    """One immutable version of an announcement's content."""

    __tablename__ = "revision"

    id: Mapped[intpk]
    announcement_id: Mapped[int] = mapped_column(
        ForeignKey("announcement.id", ondelete="CASCADE"), index=True
    )
    number: Mapped[int]
    title: Mapped[str200]
    body: Mapped[str] = mapped_column(Text)
    spoken_text: Mapped[str | None] = mapped_column(Text)
    topic_id: Mapped[int | None] = mapped_column(ForeignKey("topic.id", ondelete="SET NULL"))
    priority: Mapped[Priority] = mapped_column(_enum(Priority), default=Priority.NORMAL)
    to_loudspeaker: Mapped[bool] = mapped_column(default=True)
    to_chats: Mapped[bool] = mapped_column(default=True)
    start_date: Mapped[date]
    end_date: Mapped[date]
    # A notice that ends when its event ends: on the last day it plays (and is posted) only
    # before this time; and it plays only in these parts of the day (cms.services.airtime).
    end_time: Mapped[time | None]
    airtime: Mapped[Airtime] = mapped_column(
        _enum(Airtime), default=Airtime.ALL, server_default=Airtime.ALL.value
    )
    repeats: Mapped[int] = mapped_column(default=1)
    chat_post_time: Mapped[time | None]
    voice: Mapped[str] = mapped_column(String(60), default="zh-CN-XiaoxiaoNeural")
    rate: Mapped[int] = mapped_column(default=0)
    author_id: Mapped[int] = mapped_column(ForeignKey("user.id"))
    created_at: Mapped[created_at]

    announcement: Mapped[Announcement] = relationship(
        back_populates="revisions", foreign_keys=[announcement_id]
    )
    topic: Mapped[Topic | None] = relationship()
    author: Mapped[User] = relationship()
    areas: Mapped[list[Area]] = relationship(secondary=revision_area, order_by="Area.path")

    __table_args__ = (UniqueConstraint("announcement_id", "number"),)

    @property
    def speech(self) -> str:
        """What the loudspeaker says: the spoken text, or the body when none is given."""
        return self.spoken_text or self.body

    @property
    def channels(self) -> list[str]:
        return [
            c for c, on in (("loudspeaker", self.to_loudspeaker), ("chats", self.to_chats)) if on
        ]


class LexiconEntry(Base):
    """A whole-word pronunciation fix: written form → spoken form.

    ``area_id`` None: the county's (or a single township install's) lexicon; set: an entry of
    that township, which wins over a county entry with the same written form there.
    """

    __tablename__ = "lexicon_entry"

    id: Mapped[intpk]
    area_id: Mapped[int | None] = mapped_column(
        ForeignKey("area.id", ondelete="CASCADE"), index=True
    )
    written: Mapped[str] = mapped_column(String(40))
    spoken: Mapped[str] = mapped_column(String(80))
    note: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[created_at]

    area: Mapped[Area | None] = relationship()

    # NULLs are distinct in a unique constraint: the partial index keeps global entries unique.
    __table_args__ = (
        UniqueConstraint("area_id", "written"),
        Index(
            "uq_lexicon_entry_written_global",
            "written",
            unique=True,
            sqlite_where=sql_text("area_id IS NULL"),
            postgresql_where=sql_text("area_id IS NULL"),
        ),
    )


class Setting(Base):
    """Admin-editable settings (key → JSON value), global or for one township.

    ``area_id`` None: the install's (county's) value; set: that township's own value, which
    wins there (see :mod:`cms.services.township`).
    """

    __tablename__ = "setting"

    id: Mapped[intpk]
    area_id: Mapped[int | None] = mapped_column(
        ForeignKey("area.id", ondelete="CASCADE"), index=True
    )
    key: Mapped[str] = mapped_column(String(60))
    value: Mapped[Any] = mapped_column(JSON)

    __table_args__ = (
        UniqueConstraint("area_id", "key"),
        Index(
            "uq_setting_key_global",
            "key",
            unique=True,
            sqlite_where=sql_text("area_id IS NULL"),
            postgresql_where=sql_text("area_id IS NULL"),
        ),
    )


class NoticeTemplate(Base):
    """A notice template an office keeps (beside the shipped library, cms.services.templates):
    a county's serve its townships, a township's its villages. ``{字段}`` in the title and
    text are the fields an editor fills in."""

    __tablename__ = "notice_template"

    id: Mapped[intpk]
    # The office that keeps it (None: the whole install).
    area_id: Mapped[int | None] = mapped_column(
        ForeignKey("area.id", ondelete="RESTRICT"), index=True
    )
    name: Mapped[str80]
    title: Mapped[str200]
    body: Mapped[str] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(default=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    created_at: Mapped[created_at]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    area: Mapped[Area | None] = relationship()


class StaffChannel(Base):
    """A township's staff channel: one of its work robots (WeCom, DingTalk, Feishu) where
    dalaba tells its officers what waits for them (cms.services.staff).

    The marks are how far the events have been read (audit entries, alerts, failures), so
    that each is told once; they start at the moment of binding (no flood of old news).
    """

    __tablename__ = "staff_channel"

    id: Mapped[intpk]
    area_id: Mapped[int] = mapped_column(ForeignKey("area.id", ondelete="CASCADE"), unique=True)
    chat_group_id: Mapped[int] = mapped_column(ForeignKey("chat_group.id", ondelete="CASCADE"))
    events: Mapped[list[str]] = mapped_column(JSON, default=list)
    audit_mark: Mapped[int] = mapped_column(default=0)
    alert_mark: Mapped[int] = mapped_column(default=0)
    failure_mark: Mapped[datetime | None]
    # Submissions seen and not yet told ("待审核 N 条" goes out at most every 10 minutes).
    review_due: Mapped[bool] = mapped_column(default=False)
    review_posted_at: Mapped[datetime | None]
    created_at: Mapped[created_at]

    area: Mapped[Area] = relationship()
    chat_group: Mapped[ChatGroup] = relationship()


class AuditLog(Base):
    """Who did what, when: every state change and admin action."""

    __tablename__ = "audit_log"

    id: Mapped[intpk]
    at: Mapped[created_at] = mapped_column(index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    action: Mapped[str] = mapped_column(String(60), index=True)
    object_type: Mapped[str] = mapped_column(String(40))
    object_id: Mapped[int | None]
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    user: Mapped[User | None] = relationship()


def get_setting(session: Session, key: str, default: Any = None) -> Any:
    """The global (install-wide) value of ``key``; a township's own value is read with
    :func:`cms.tree.effective`."""
    value = session.scalar(
        select(Setting.value).where(Setting.key == key, Setting.area_id.is_(None))
    )
    return default if value is None else value


# --- Work queue: the database is the queue; APScheduler only ticks. ---------------------------


class JobState(enum.StrEnum):
    """States of queued work. Every transition is one ``UPDATE … WHERE state = old``."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class DeliveryState(enum.StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    # The request went out but its answer was lost: Telegram has no idempotency key, so it
    # may or may not have arrived. Shown to officers; never retried automatically.
    UNCERTAIN = "uncertain"
    FAILED = "failed"
    CANCELLED = "cancelled"


class ClipProfile(enum.StrEnum):
    LOUDSPEAKER = "loudspeaker"
    VOICE = "voice"


class QueueMixin:
    """Columns shared by queued work: attempts, backoff, the last error and a claim lease."""

    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None]
    # A running row whose claim expired belongs to a worker that died: it is taken again.
    claimed_until: Mapped[datetime | None]
    claimed_by: Mapped[str | None] = mapped_column(String(80))
    last_error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=stamp, onupdate=stamp)


class Clip(QueueMixin, Base):
    """The rendered, mastered audio of one revision in one profile."""

    __tablename__ = "clip"

    id: Mapped[intpk]
    revision_id: Mapped[int] = mapped_column(
        ForeignKey("revision.id", ondelete="CASCADE"), index=True
    )
    profile: Mapped[ClipProfile] = mapped_column(_enum(ClipProfile))
    state: Mapped[JobState] = mapped_column(_enum(JobState), default=JobState.PENDING, index=True)
    # Hash of everything that shapes the audio (spoken text after lexicon, engine, voice, rate,
    # profile); a lexicon change alters it and the clip is rendered again.
    cache_key: Mapped[str | None] = mapped_column(String(64))
    path: Mapped[str | None] = mapped_column(DataPath)
    duration: Mapped[float | None]
    engine: Mapped[str | None] = mapped_column(String(20))
    fallback_reason: Mapped[str | None] = mapped_column(Text)
    subtitles_path: Mapped[str | None] = mapped_column(DataPath)
    created_at: Mapped[created_at]

    revision: Mapped[Revision] = relationship()

    __table_args__ = (UniqueConstraint("revision_id", "profile"),)


class Recording(Base):
    """A human recording uploaded for an announcement; replaces synthesis for its revisions."""

    __tablename__ = "recording"

    id: Mapped[intpk]
    announcement_id: Mapped[int] = mapped_column(
        ForeignKey("announcement.id", ondelete="CASCADE"), index=True
    )
    original_name: Mapped[str200]
    path: Mapped[str] = mapped_column(DataPath)
    duration: Mapped[float]
    uploaded_by_id: Mapped[int] = mapped_column(ForeignKey("user.id"))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[created_at]


class Program(QueueMixin, Base):
    """One outlet's audio for one day and one slot, built from mastered clips."""

    __tablename__ = "program"

    id: Mapped[intpk]
    outlet_id: Mapped[int] = mapped_column(ForeignKey("outlet.id", ondelete="CASCADE"), index=True)
    day: Mapped[date] = mapped_column(index=True)
    slot_id: Mapped[int] = mapped_column(ForeignKey("slot.id", ondelete="CASCADE"))
    state: Mapped[JobState] = mapped_column(_enum(JobState), default=JobState.PENDING, index=True)
    # Hash of the inputs (clips, order, repeats); a rebuild with the same hash does nothing.
    input_hash: Mapped[str | None] = mapped_column(String(64))
    path: Mapped[str | None] = mapped_column(DataPath)
    duration: Mapped[float | None]
    manifest: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    overrun: Mapped[bool] = mapped_column(default=False)
    missed: Mapped[bool] = mapped_column(default=False)
    built_at: Mapped[datetime | None]
    created_at: Mapped[created_at]

    outlet: Mapped[Outlet] = relationship()
    slot: Mapped[Slot] = relationship()

    __table_args__ = (UniqueConstraint("outlet_id", "day", "slot_id"),)


class Delivery(QueueMixin, Base):
    """One approved revision posted to one group chat."""

    __tablename__ = "delivery"

    id: Mapped[intpk]
    revision_id: Mapped[int] = mapped_column(
        ForeignKey("revision.id", ondelete="CASCADE"), index=True
    )
    chat_group_id: Mapped[int] = mapped_column(
        ForeignKey("chat_group.id", ondelete="CASCADE"), index=True
    )
    due_at: Mapped[datetime] = mapped_column(index=True)
    state: Mapped[DeliveryState] = mapped_column(
        _enum(DeliveryState), default=DeliveryState.PENDING, index=True
    )
    message_ids: Mapped[list[Any]] = mapped_column(JSON, default=list)
    sent_at: Mapped[datetime | None]
    created_at: Mapped[created_at]

    revision: Mapped[Revision] = relationship()
    chat_group: Mapped[ChatGroup] = relationship()

    __table_args__ = (UniqueConstraint("revision_id", "chat_group_id"),)


class StaffPost(QueueMixin, Base):
    """One message to a staff channel: ``pending → sending → sent | failed | uncertain``.

    Queued like a delivery (:mod:`cms.jobs.staff` over :func:`cms.jobs.lifecycle.run_job`):
    claimed (``sending``, committed) before it goes out; one found still ``sending`` after its
    claim expired (a crash) may have arrived and becomes ``uncertain``, never sent again.
    """

    __tablename__ = "staff_post"

    id: Mapped[intpk]
    staff_channel_id: Mapped[int] = mapped_column(
        ForeignKey("staff_channel.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(20))
    text: Mapped[str] = mapped_column(Text)
    state: Mapped[DeliveryState] = mapped_column(
        _enum(DeliveryState), default=DeliveryState.PENDING, index=True
    )
    created_at: Mapped[created_at]
    sent_at: Mapped[datetime | None]

    staff_channel: Mapped[StaffChannel] = relationship()


class OutboxMessage(Base):
    """A chat message recorded by the local outbox channel (the default without a bot token)."""

    __tablename__ = "outbox_message"

    id: Mapped[intpk]
    delivery_id: Mapped[int | None] = mapped_column(ForeignKey("delivery.id", ondelete="SET NULL"))
    chat_group_id: Mapped[int | None] = mapped_column(
        ForeignKey("chat_group.id", ondelete="SET NULL")
    )
    kind: Mapped[str] = mapped_column(String(20))  # text | voice | audio | document
    text: Mapped[str] = mapped_column(Text, default="")
    file_path: Mapped[str | None] = mapped_column(DataPath)
    created_at: Mapped[created_at]


class SchedulerLease(Base):
    """Exactly one scheduler per database: whoever holds an unexpired lease runs it."""

    __tablename__ = "scheduler_lease"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    holder: Mapped[str] = mapped_column(String(120))
    acquired_at: Mapped[datetime]
    heartbeat_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    info: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Alert(Base):
    """Something officers must see: a gap found by reconciliation, an unconfirmed program …"""

    __tablename__ = "alert"

    id: Mapped[intpk]
    kind: Mapped[str] = mapped_column(String(40), index=True)
    message: Mapped[str] = mapped_column(Text)
    day: Mapped[date | None]
    object_type: Mapped[str] = mapped_column(String(40), default="")
    object_id: Mapped[int | None]
    created_at: Mapped[created_at]
    notified_at: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None]

    __table_args__ = (UniqueConstraint("kind", "object_type", "object_id", "day"),)


# --- Chats and operators -----------------------------------------------------------------------


class BindingCode(Base):
    """A one-time code: binds a group chat to an area, or a chat account to a CMS user."""

    __tablename__ = "binding_code"

    id: Mapped[intpk]
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    purpose: Mapped[str] = mapped_column(String(20))  # chat | operator
    area_id: Mapped[int | None] = mapped_column(ForeignKey("area.id", ondelete="CASCADE"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    created_at: Mapped[created_at]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    used_by: Mapped[str | None] = mapped_column(String(64))


class ChatAccount(Base):
    """A chat-platform account linked to a CMS user (operators use it for /program)."""

    __tablename__ = "chat_account"

    id: Mapped[intpk]
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    platform: Mapped[str] = mapped_column(String(20), default="telegram")
    external_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[created_at]

    user: Mapped[User] = relationship()

    __table_args__ = (UniqueConstraint("platform", "external_id"),)


class OutletToken(Base):
    """The private download link of an outlet; only the SHA-256 of the token is stored."""

    __tablename__ = "outlet_token"

    id: Mapped[intpk]
    outlet_id: Mapped[int] = mapped_column(ForeignKey("outlet.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(12))
    created_at: Mapped[created_at]
    revoked_at: Mapped[datetime | None]

    outlet: Mapped[Outlet] = relationship()


class Receipt(Base):
    """An operator's confirmation that a program was played: one per program."""

    __tablename__ = "receipt"

    id: Mapped[intpk]
    program_id: Mapped[int] = mapped_column(
        ForeignKey("program.id", ondelete="CASCADE"), unique=True
    )
    user_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    via: Mapped[str] = mapped_column(String(20))  # web | bot | link
    confirmed_at: Mapped[datetime]
    late: Mapped[bool] = mapped_column(default=False)

    program: Mapped[Program] = relationship()
    user: Mapped[User | None] = relationship()


class DownloadEvent(Base):
    """A program file fetched through an outlet's link (for the compliance view)."""

    __tablename__ = "download_event"

    id: Mapped[intpk]
    program_id: Mapped[int | None] = mapped_column(
        ForeignKey("program.id", ondelete="SET NULL"), index=True
    )
    outlet_id: Mapped[int] = mapped_column(ForeignKey("outlet.id", ondelete="CASCADE"), index=True)
    day: Mapped[date] = mapped_column(index=True)
    kind: Mapped[str] = mapped_column(String(20))  # mp3 | zip | loop | m3u | rss
    at: Mapped[created_at]


class ShareDownload(Base):
    """How often the share page's audio was fetched, per announcement and day (no one's data)."""

    __tablename__ = "share_download"

    announcement_id: Mapped[int] = mapped_column(
        ForeignKey("announcement.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[date] = mapped_column(primary_key=True)
    count: Mapped[int] = mapped_column(default=0)


# --- Publishing platforms (e.g. the WeChat Official Account): drafts and publishing --------


class PublisherAccount(Base):
    """One township's account on a publishing platform (``platform`` names the installed
    :class:`cms.publishers.PublisherPlugin`): its credentials and the cached access token.

    ``credentials`` is the plugin's own mapping (its declared fields by name); cms never reads
    a key of it. The secret fields and the access token are credentials: never shown after
    saving, never logged, kept out of exports, the API and the audit log. The token row doubles
    as a lease, so that only one process fetches a new token at a time (quotas are small).
    """

    __tablename__ = "publisher_account"

    id: Mapped[intpk]
    area_id: Mapped[int] = mapped_column(ForeignKey("area.id", ondelete="RESTRICT"))
    platform: Mapped[str] = mapped_column(String(40))
    credentials: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    # The article's author line: the issuing office.
    office: Mapped[str] = mapped_column(String(16), default="")
    active: Mapped[bool] = mapped_column(default=True)
    access_token: Mapped[str | None] = mapped_column(String(1024))
    token_expires_at: Mapped[datetime | None]
    token_lease_by: Mapped[str | None] = mapped_column(String(80))
    token_lease_until: Mapped[datetime | None]
    # The cover image, uploaded once to the platform and reused for every draft (its reference).
    cover_ref: Mapped[str | None] = mapped_column(String(128))
    # Tokens the plugin fetched by forcing a refresh on ``token_refresh_day`` (platforms allow
    # few a day, and each may break the token of every other system on the same account).
    token_refreshes: Mapped[int] = mapped_column(default=0, server_default="0")
    token_refresh_day: Mapped[date | None]
    created_at: Mapped[created_at]
    updated_at: Mapped[datetime] = mapped_column(default=stamp, onupdate=stamp)

    area: Mapped[Area] = relationship()

    __table_args__ = (UniqueConstraint("area_id", "platform"),)


class ArticleState(enum.StrEnum):
    """``pending → creating → drafted → queued → submitting → publishing → published``.

    A failed publish returns the article to ``drafted`` with the reason (the draft stays in
    the account). ``uncertain``: a draft or publish request went out and its answer was
    lost; officers check the account's back office, nothing is resent by itself.
    """

    PENDING = "pending"
    CREATING = "creating"
    DRAFTED = "drafted"
    QUEUED = "queued"
    SUBMITTING = "submitting"
    PUBLISHING = "publishing"
    PUBLISHED = "published"
    FAILED = "failed"
    UNCERTAIN = "uncertain"
    CANCELLED = "cancelled"


class PublisherArticle(QueueMixin, Base):
    """One approved revision as an article of one publisher account (a draft, then published)."""

    __tablename__ = "publisher_article"

    id: Mapped[intpk]
    account_id: Mapped[int] = mapped_column(
        ForeignKey("publisher_account.id", ondelete="CASCADE"), index=True
    )
    announcement_id: Mapped[int] = mapped_column(
        ForeignKey("announcement.id", ondelete="CASCADE"), index=True
    )
    revision_id: Mapped[int] = mapped_column(ForeignKey("revision.id", ondelete="CASCADE"))
    state: Mapped[ArticleState] = mapped_column(
        _enum(ArticleState), default=ArticleState.PENDING, index=True
    )
    # Set (and committed) just before a non-repeatable request goes out: a claim found expired
    # with it set may have reached the platform, so it becomes ``uncertain``, not a retry.
    request_started_at: Mapped[datetime | None]
    # The platform's reference of the draft, and of the publish request (opaque to cms).
    draft_ref: Mapped[str | None] = mapped_column(String(128))
    publish_ref: Mapped[str | None] = mapped_column(String(64))
    article_url: Mapped[str | None] = mapped_column(String(1000))
    publish_requested_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("user.id", ondelete="SET NULL")
    )
    drafted_at: Mapped[datetime | None]
    # When the platform accepted the publish request: polling its state stops after a while.
    submitted_at: Mapped[datetime | None]
    published_at: Mapped[datetime | None]
    created_at: Mapped[created_at]

    account: Mapped[PublisherAccount] = relationship()
    revision: Mapped[Revision] = relationship()

    __table_args__ = (UniqueConstraint("account_id", "revision_id"),)


# --- Break-ins (立即插播) and terminals (boxes that fetch by URL) ------------------------------


class BreakIn(QueueMixin, Base):
    """An urgent notice played now: one insert (chime, the notice read twice) for every outlet
    it reaches, served at each outlet link's ``now.mp3`` until it is ended or the day is over.

    ``rule``: ``approval`` (a reviewer sent it on approving), ``reviewer`` (a reviewer sent an
    approved urgent notice), ``emergency`` (an admin, under the audited emergency rule,
    with ``reason``). ``state`` is the build's queue state (``pending → running → done``).
    """

    __tablename__ = "break_in"

    id: Mapped[intpk]
    announcement_id: Mapped[int] = mapped_column(
        ForeignKey("announcement.id", ondelete="CASCADE"), index=True
    )
    revision_id: Mapped[int] = mapped_column(ForeignKey("revision.id", ondelete="CASCADE"))
    # The owning office (the announcement's), for scope.
    area_id: Mapped[int | None] = mapped_column(
        ForeignKey("area.id", ondelete="RESTRICT"), index=True
    )
    day: Mapped[date] = mapped_column(index=True)
    rule: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(Text, default="")
    state: Mapped[JobState] = mapped_column(_enum(JobState), default=JobState.PENDING, index=True)
    path: Mapped[str | None] = mapped_column(DataPath)
    duration: Mapped[float | None]
    outlet_count: Mapped[int] = mapped_column(default=0)
    started_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    started_at: Mapped[datetime]
    built_at: Mapped[datetime | None]
    notified_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    ended_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    created_at: Mapped[created_at]

    announcement: Mapped[Announcement] = relationship()
    revision: Mapped[Revision] = relationship()
    started_by: Mapped[User | None] = relationship(foreign_keys=[started_by_id])
    ended_by: Mapped[User | None] = relationship(foreign_keys=[ended_by_id])


class BreakInOutlet(Base):
    """One outlet's copy of a break-in's insert (a hard link of the shared file) and whether
    its operator played it."""

    __tablename__ = "break_in_outlet"

    id: Mapped[intpk]
    break_in_id: Mapped[int] = mapped_column(
        ForeignKey("break_in.id", ondelete="CASCADE"), index=True
    )
    outlet_id: Mapped[int] = mapped_column(ForeignKey("outlet.id", ondelete="CASCADE"), index=True)
    path: Mapped[str] = mapped_column(DataPath)
    ready_at: Mapped[datetime]
    played_at: Mapped[datetime | None]
    played_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    via: Mapped[str | None] = mapped_column(String(20))

    break_in: Mapped[BreakIn] = relationship()
    outlet: Mapped[Outlet] = relationship()

    __table_args__ = (UniqueConstraint("break_in_id", "outlet_id"),)


class TerminalKind(enum.StrEnum):
    IP_SPEAKER = "ip_speaker"
    COLUMN_4G = "column_4g"
    PC_PLAYER = "pc_player"


class Terminal(Base):
    """A box at an outlet that fetches its audio by URL itself (IP speaker, 4G column, PC
    player), with its own revocable link; only the SHA-256 of the token is stored."""

    __tablename__ = "terminal"

    id: Mapped[intpk]
    outlet_id: Mapped[int] = mapped_column(ForeignKey("outlet.id", ondelete="CASCADE"), index=True)
    kind: Mapped[TerminalKind] = mapped_column(_enum(TerminalKind))
    name: Mapped[str80]
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(12))
    created_at: Mapped[created_at]
    revoked_at: Mapped[datetime | None]

    outlet: Mapped[Outlet] = relationship()


class TerminalFetch(Base):
    """One fetch by a terminal: what, when, how many bytes of how many, which ranges."""

    __tablename__ = "terminal_fetch"

    id: Mapped[intpk]
    terminal_id: Mapped[int] = mapped_column(
        ForeignKey("terminal.id", ondelete="CASCADE"), index=True
    )
    outlet_id: Mapped[int] = mapped_column(ForeignKey("outlet.id", ondelete="CASCADE"), index=True)
    program_id: Mapped[int | None] = mapped_column(
        ForeignKey("program.id", ondelete="SET NULL"), index=True
    )
    break_in_id: Mapped[int | None] = mapped_column(
        ForeignKey("break_in.id", ondelete="SET NULL"), index=True
    )
    day: Mapped[date] = mapped_column(index=True)
    kind: Mapped[str] = mapped_column(String(20))
    at: Mapped[datetime] = mapped_column(index=True)
    size: Mapped[int] = mapped_column(default=0)
    bytes_sent: Mapped[int] = mapped_column(default=0)
    complete: Mapped[bool] = mapped_column(default=False)
    # The byte ranges sent, "start-end" (inclusive) joined by commas.
    ranges: Mapped[str] = mapped_column(String(200), default="")
