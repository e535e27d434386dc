"""One place where configuration is read from the environment (``DALABA_*``).

The chat and publisher plugins (``dalaba.channels``, ``dalaba.publishers``) own their keys:
cms keeps every ``DALABA_*`` variable as it was read and a plugin asks for its own through
:meth:`Settings.plugin_env` (and checks them, see ``cms.channels.check_config``).
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cms.clock import Clock, SystemClock, clock_from_env, local_day


class ConfigError(ValueError):
    """A configuration value is missing or malformed; the message names the variable."""


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
TTS_ENGINES = ("auto", "edge", "offline", "neural")
"""The engine modes (``DALABA_TTS_ENGINE``, and a township's own choice in :mod:`cms.tree`)."""
MAX_PROXY_HOPS = 10


def _neural_model_dir(env: Mapping[str, str], data_dir: Path) -> Path | None:
    """``DALABA_NEURAL_MODEL_DIR``, else the model ``dalaba voices install`` installed last."""
    configured = env.get("DALABA_NEURAL_MODEL_DIR", "").strip()
    if configured:
        return Path(configured).expanduser().resolve()
    from audio.install import default_model, models_dir

    return default_model(models_dir(data_dir))


def _bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ConfigError(f"{name} 应为 true/false（当前为 {raw!r}）")


def _int(name: str, raw: str, minimum: int, maximum: int) -> int:
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} 应为整数（当前为 {raw!r}）") from exc
    if not minimum <= value <= maximum:
        raise ConfigError(f"{name} 应在 {minimum}–{maximum} 之间（当前为 {value}）")
    return value


@dataclass(frozen=True)
class Settings:
    """Everything dalaba can be configured with. Build it with :meth:`from_env`."""

    data_dir: Path
    database_url: str
    secret_key: str
    demo: bool = False
    timezone: str = "Asia/Shanghai"
    default_locale: str = "zh_CN"
    tts_engine: str = "auto"  # auto | edge | offline | neural
    edge_wss_url: str | None = None
    # The offline neural voice's model folder (DALABA_NEURAL_MODEL_DIR, else the model
    # `dalaba voices install` installed last under <data>/models).
    neural_model_dir: Path | None = None
    scheduler_enabled: bool = True
    build_time: str = "04:00"
    base_url: str = "http://127.0.0.1:8080"
    # Downloads handed to a front server: nginx's internal location (X-Accel-Redirect) …
    accel_redirect: str | None = None
    # … or Apache mod_xsendfile / lighttpd (X-Sendfile).
    x_sendfile: bool = False
    # Defaults for admin-editable settings (the admin's value in the CMS wins).
    escalate_after_minutes: int = 120
    late_grace_minutes: int = 60
    # A login ends after this long without a request, and in any case this long after it began.
    session_idle_hours: int = 8
    session_max_days: int = 7
    # Reverse proxies whose X-Forwarded-For/-Proto are believed: a count of proxies in front,
    # or their addresses/networks separated by commas; empty: forwarded headers are ignored.
    trusted_proxies: str = ""
    # Robot webhooks on loopback and private addresses (tests, a self-hosted relay); without
    # it only the platforms' own hosts over https are accepted.
    allow_local_webhooks: bool = False
    # Below this much free space in the audio folder, renders and program builds wait.
    min_free_mb: int = 200
    # The nice value of renders and builds (and the ffmpeg they start): 0–19, 0 keeps them at
    # the web's priority (cms.scheduler.priority).
    work_nice: int = 10
    # Every DALABA_* variable as read: the plugins' own keys (see plugin_env). Never shown
    # (tokens), and not compared (two settings differ by what cms itself reads).
    extra: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    # The one clock of this installation (DALABA_FAKE_NOW moves it, for tests only).
    clock: Clock = field(default_factory=SystemClock, compare=False, repr=False)

    def __post_init__(self) -> None:
        from cms.db import driver_problem

        problem = driver_problem(self.database_url)
        if problem is not None:
            raise ConfigError(problem)
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigError(f"DALABA_TIMEZONE 不是有效的时区：{self.timezone!r}") from exc
        if self.tts_engine not in TTS_ENGINES:
            raise ConfigError(
                "DALABA_TTS_ENGINE 应为 auto、edge、offline 或 neural"
                f"（当前为 {self.tts_engine!r}）"
            )
        if self.tts_engine == "neural":
            # Only the neural engine is allowed to speak: refuse to start without a usable
            # folder. In auto mode a missing folder is no reason to stop: renders fall back
            # to eSpeak NG and record why on the clip.
            from audio.errors import NeuralError
            from audio.neural import locate_model

            if self.neural_model_dir is None:
                raise ConfigError("DALABA_TTS_ENGINE=neural 需要设置 DALABA_NEURAL_MODEL_DIR")
            try:
                locate_model(self.neural_model_dir)
            except NeuralError as exc:
                raise ConfigError(f"DALABA_NEURAL_MODEL_DIR 无效：{exc}") from exc
        if self.accel_redirect is not None and not (
            self.accel_redirect.startswith("/") and self.accel_redirect.endswith("/")
        ):
            raise ConfigError(
                f"DALABA_ACCEL_REDIRECT 应以 / 开头并以 / 结尾（当前为 {self.accel_redirect!r}）"
            )
        hh, _, mm = self.build_time.partition(":")
        if not (hh.isdigit() and mm.isdigit() and int(hh) < 24 and int(mm) < 60):
            raise ConfigError(f"DALABA_BUILD_TIME 应为 HH:MM（当前为 {self.build_time!r}）")
        parse_trusted_proxies(self.trusted_proxies)

    def plugin_env(self, name: str, default: str = "") -> str:
        """A plugin's own ``DALABA_*`` key as the process was started with it (blank: unset)."""
        return self.extra.get(name, "").strip() or default

    def with_env(self, **values: str | None) -> Settings:
        """These settings with plugin keys set (None removes one): tests, and a CLI option."""
        extra = {**self.extra, **{k: v for k, v in values.items() if v is not None}}
        for name in (k for k, v in values.items() if v is None):
            extra.pop(name, None)
        return replace(self, extra=extra)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def now(self) -> datetime:
        """The current time from this installation's clock (aware, UTC)."""
        return self.clock.now()

    def today(self) -> date:
        """The township's date now (``DALABA_TIMEZONE``), never the server's or UTC's."""
        return local_day(self.clock.now(), self.tz)

    @property
    def audio_dir(self) -> Path:
        return self.data_dir / "audio"

    @property
    def proxies(self) -> int | tuple[IPNetwork, ...]:
        """``DALABA_TRUSTED_PROXIES`` parsed: a hop count (0: none) or the proxies' networks."""
        return parse_trusted_proxies(self.trusted_proxies)

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, demo: bool = False, **overrides: object
    ) -> Settings:
        """Read ``DALABA_*`` variables; ``overrides`` win over the environment.

        Raises:
            ConfigError: a value is malformed, or no secret key is set outside demo mode.
        """
        env = os.environ if environ is None else environ
        data_dir = Path(env.get("DALABA_DATA_DIR") or "dalaba-data").expanduser().resolve()
        if "data_dir" in overrides:
            data_dir = Path(str(overrides.pop("data_dir"))).expanduser().resolve()
        database_url = env.get("DALABA_DATABASE_URL") or f"sqlite:///{data_dir / 'dalaba.db'}"
        secret_key = env.get("DALABA_SECRET_KEY", "")
        if not secret_key:
            if demo:
                secret_key = _demo_secret(data_dir)
            elif not overrides.get("secret_key"):
                raise ConfigError(
                    "未设置 DALABA_SECRET_KEY：生产环境必须提供一个随机密钥"
                    '（例如 python -c "import secrets; print(secrets.token_hex(32))"）'
                )
        values: dict[str, object] = {
            "data_dir": data_dir,
            "database_url": database_url,
            "secret_key": secret_key,
            "demo": demo,
            "timezone": env.get("DALABA_TIMEZONE", "Asia/Shanghai"),
            "default_locale": env.get("DALABA_LOCALE", "zh_CN"),
            "tts_engine": env.get("DALABA_TTS_ENGINE", "offline" if demo else "auto"),
            "edge_wss_url": env.get("DALABA_EDGE_WSS_URL") or None,
            "neural_model_dir": _neural_model_dir(env, data_dir),
            "scheduler_enabled": _bool("DALABA_SCHEDULER", env.get("DALABA_SCHEDULER", "true")),
            "build_time": env.get("DALABA_BUILD_TIME", "04:00"),
            "base_url": env.get("DALABA_BASE_URL", "http://127.0.0.1:8080").rstrip("/"),
            "accel_redirect": env.get("DALABA_ACCEL_REDIRECT") or None,
            "x_sendfile": _bool("DALABA_X_SENDFILE", env.get("DALABA_X_SENDFILE", "false")),
            "escalate_after_minutes": _int(
                "DALABA_ESCALATE_AFTER_MINUTES",
                env.get("DALABA_ESCALATE_AFTER_MINUTES", "120"),
                0,
                1440,
            ),
            "late_grace_minutes": _int(
                "DALABA_LATE_GRACE_MINUTES", env.get("DALABA_LATE_GRACE_MINUTES", "60"), 0, 1440
            ),
            "session_idle_hours": _int(
                "DALABA_SESSION_IDLE_HOURS", env.get("DALABA_SESSION_IDLE_HOURS", "8"), 1, 720
            ),
            "session_max_days": _int(
                "DALABA_SESSION_MAX_DAYS", env.get("DALABA_SESSION_MAX_DAYS", "7"), 1, 365
            ),
            "trusted_proxies": env.get("DALABA_TRUSTED_PROXIES", "").strip(),
            "allow_local_webhooks": local_webhooks_allowed(env),
            "min_free_mb": _int(
                "DALABA_MIN_FREE_MB", env.get("DALABA_MIN_FREE_MB", "200"), 0, 1_000_000
            ),
            "work_nice": _int("DALABA_WORK_NICE", env.get("DALABA_WORK_NICE", "10"), 0, 19),
            "extra": {k: v for k, v in env.items() if k.startswith("DALABA_")},
        }
        if env.get("DALABA_FAKE_NOW", "").strip():
            try:
                values["clock"] = clock_from_env(env)
            except ValueError as exc:
                raise ConfigError(
                    "DALABA_FAKE_NOW 应为带时区的时间，如 2026-12-04T16:01:00+00:00"
                    f"（当前为 {env['DALABA_FAKE_NOW']!r}）"
                ) from exc
        if "DALABA_PORT" in env:
            _int("DALABA_PORT", env["DALABA_PORT"], 1, 65535)
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]


def local_webhooks_allowed(env: Mapping[str, str] | None = None) -> bool:
    """``DALABA_ALLOW_LOCAL_WEBHOOKS``, read when asked (``env`` None: the process's)."""
    env = os.environ if env is None else env
    return _bool("DALABA_ALLOW_LOCAL_WEBHOOKS", env.get("DALABA_ALLOW_LOCAL_WEBHOOKS", "false"))


def parse_trusted_proxies(raw: str) -> int | tuple[IPNetwork, ...]:
    """``""``/``"0"`` → 0; ``"2"`` → 2 hops; ``"127.0.0.1, 10.0.0.0/8"`` → those networks.

    Raises:
        ConfigError: neither a count nor a list of IP addresses or networks.
    """
    value = raw.strip()
    if not value:
        return 0
    if value.isascii() and value.isdigit():
        return _int("DALABA_TRUSTED_PROXIES", value, 0, MAX_PROXY_HOPS)
    networks: list[IPNetwork] = []
    for part in value.split(","):
        try:
            networks.append(ipaddress.ip_network(part.strip(), strict=False))
        except ValueError as exc:
            raise ConfigError(
                "DALABA_TRUSTED_PROXIES 应为代理层数（如 1）或以逗号分隔的代理地址"
                f"（如 127.0.0.1,10.0.0.0/8）；{part.strip()!r} 不是 IP 地址或网段"
            ) from exc
    return tuple(networks)


def _demo_secret(data_dir: Path) -> str:
    """A per-installation secret for demo mode, kept in the data folder so sessions survive."""
    path = data_dir / "secret_key"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = secrets.token_hex(32)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(key)
    os.chmod(tmp, 0o600)
    tmp.replace(path)
    return key
