"""Typed, frozen settings loaded from ``config.toml`` with environment overrides.

Every setting lives in ``config.toml`` with a comment. An unknown key, a value of the wrong type,
or an impossible value stops start-up with a :class:`SettingsError` naming the key and the file.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = PROJECT_ROOT / "config.toml"

# Named environment variables; any key can also be set as RESISTRY_<SECTION>__<KEY>.
ENV_OVERRIDES = {
    "RESISTRY_DATABASE_URL": ("database", "url"),
    "SENDGRID_API_KEY": ("sendgrid", "api_key"),
    "SENDGRID_HOST": ("sendgrid", "host"),
    "SENDGRID_WEBHOOK_PUBLIC_KEY": ("sendgrid", "webhook_public_key"),
    "RESISTRY_WEBHOOK_BEARER_TOKEN": ("sendgrid", "webhook_bearer_token"),
    "RESISTRY_BASE_URL": ("web", "base_url"),
}


class SettingsError(ValueError):
    """A setting is unknown, ill-typed or impossible; the message names the key and the file."""


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = "sqlite:///instance/resistry.sqlite3"
    busy_timeout_ms: int = 10000
    pool_size: int = 10
    wal_checkpoint_seconds: float = 0.25

    def validate(self) -> None:
        _check(self.busy_timeout_ms >= 0, "busy_timeout_ms must be ≥ 0")
        _check(self.pool_size >= 1, "pool_size must be ≥ 1")
        _check(0 <= self.wal_checkpoint_seconds <= 60, "wal_checkpoint_seconds must be in [0, 60]")
        # Checked here, else a bad URL is a traceback from the first command that connects.
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError, NoSuchModuleError

        try:
            url = make_url(self.url)
        except (ArgumentError, ValueError):  # ValueError: a port that is not a number
            # Not echoed: the URL may hold a password.
            raise ValueError(
                "url is not a database URL like postgresql+psycopg://user@host/db or sqlite:///path"
            ) from None
        try:
            url.get_dialect()
        except NoSuchModuleError:
            raise ValueError(f"url names an unknown database driver {url.drivername!r}") from None


@dataclass(frozen=True)
class WebSettings:
    secret_key_file: str = "instance/secret_key"
    base_url: str = "http://127.0.0.1:8000"
    magic_link_hours: int = 72
    send_token_days: int = 60
    signup_rate_limit: str = "20 per minute"
    rate_limit_storage: str = "memory://"
    log_format: str = "text"
    trusted_proxies: int = 0

    def validate(self) -> None:
        _check(self.magic_link_hours > 0, "magic_link_hours must be > 0")
        _check(self.send_token_days > 0, "send_token_days must be > 0")
        _check(self.log_format in ("text", "json"), "log_format must be 'text' or 'json'")
        _check(self.base_url.startswith(("http://", "https://")), "base_url must be http(s)")
        import limits

        try:
            limits.parse_many(self.signup_rate_limit)
        except ValueError:
            raise ValueError(
                f"signup_rate_limit {self.signup_rate_limit!r} is not a rate limit like "
                "'20 per minute'"
            ) from None
        _check("://" in self.rate_limit_storage, "rate_limit_storage must be a URI like memory://")
        _check(0 <= self.trusted_proxies <= 5, "trusted_proxies must be in [0, 5]")


@dataclass(frozen=True)
class SendGridSettings:
    host: str = "http://127.0.0.1:8025"
    api_key: str = "SG.simulator-key"
    webhook_public_key: str = ""
    verify_webhook_signature: bool = True
    webhook_bearer_token: str = ""
    timeout_seconds: float = 10.0
    max_retries: int = 5
    backoff_seconds: float = 0.5
    max_rate_limit_wait_seconds: float = 120.0
    from_email: str = "recruit@resistry.example"
    from_name: str = "Resistry"
    asm_group_id: int = 101
    max_backoff_seconds: float = 30.0
    personalizations_per_request: int = 1000
    unsubscribe_mailto: str = "unsubscribe@resistry.example"

    def validate(self) -> None:
        _check(self.timeout_seconds > 0, "timeout_seconds must be > 0")
        _check(self.max_retries >= 0, "max_retries must be ≥ 0")
        _check(self.backoff_seconds >= 0, "backoff_seconds must be ≥ 0")
        _check("@" in self.from_email, "from_email must be an email address")
        _check(self.max_rate_limit_wait_seconds >= 0, "max_rate_limit_wait_seconds must be ≥ 0")
        _check(self.asm_group_id > 0, "asm_group_id must be > 0")
        _check(
            self.max_backoff_seconds >= self.backoff_seconds,
            "max_backoff_seconds must be ≥ backoff_seconds",
        )
        _check(
            1 <= self.personalizations_per_request <= 1000,
            "personalizations_per_request must be in [1, 1000] (SendGrid's limit)",
        )
        _check(
            not self.unsubscribe_mailto or "@" in self.unsubscribe_mailto,
            "unsubscribe_mailto must be an email address or empty",
        )


@dataclass(frozen=True)
class SchedulerSettings:
    mailing_cron: str = "0 10 * * tue"
    decisions_cron: str = "*/30 * * * *"
    timezone: str = "America/New_York"
    misfire_grace_seconds: int = 21600

    def validate(self) -> None:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        for name in ("mailing_cron", "decisions_cron"):
            _check(len(getattr(self, name).split()) == 5, f"{name} must have 5 crontab fields")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"timezone {self.timezone!r} is not a known time zone") from None
        _check(self.misfire_grace_seconds > 0, "misfire_grace_seconds must be > 0")


@dataclass(frozen=True)
class ExperimentSettings:
    prior_alpha: float = 1.0
    prior_beta: float = 1.0
    burn_in: int = 600
    p_best_threshold: float = 0.95
    value_remaining_threshold: float = 0.01
    floor: float = 0.01
    max_trials_per_arm: int = 50000

    def validate(self) -> None:
        _check(
            self.prior_alpha > 0 and self.prior_beta > 0, "prior_alpha and prior_beta must be > 0"
        )
        _check(self.burn_in >= 0, "burn_in must be ≥ 0")
        _check(0.5 < self.p_best_threshold <= 1, "p_best_threshold must be in (0.5, 1]")
        _check(
            0 <= self.value_remaining_threshold < 1, "value_remaining_threshold must be in [0, 1)"
        )
        _check(0 <= self.floor < 0.5, "floor must be in [0, 0.5)")
        _check(self.max_trials_per_arm > self.burn_in, "max_trials_per_arm must exceed burn_in")


@dataclass(frozen=True)
class GuardrailSettings:
    unsubscribe_rate_limit: float = 0.01
    spam_report_rate_limit: float = 0.002
    confidence: float = 0.95
    min_trials: int = 1000

    def validate(self) -> None:
        for name in ("unsubscribe_rate_limit", "spam_report_rate_limit"):
            _check(0 < getattr(self, name) < 1, f"{name} must be in (0, 1)")
        _check(0.5 <= self.confidence < 1, "confidence must be in [0.5, 1)")
        _check(self.min_trials >= 0, "min_trials must be ≥ 0")


@dataclass(frozen=True)
class DelaySettings:
    click_median_hours: float = 6.0
    signup_median_hours: float = 12.0
    sigma: float = 1.2

    def validate(self) -> None:
        _check(self.click_median_hours > 0, "click_median_hours must be > 0")
        _check(self.signup_median_hours > 0, "signup_median_hours must be > 0")
        _check(self.sigma > 0, "sigma must be > 0")


@dataclass(frozen=True)
class WebhookSettings:
    max_body_bytes: int = 4 * 1024 * 1024
    scanner_seconds_after_delivery: int = 10
    scanner_burst_links: int = 3
    scanner_burst_seconds: int = 5
    apply_poll_seconds: float = 0.05
    applier_nice: int = 10

    def validate(self) -> None:
        _check(self.max_body_bytes >= 1024, "max_body_bytes must be ≥ 1024")
        _check(
            self.scanner_seconds_after_delivery >= 0, "scanner_seconds_after_delivery must be ≥ 0"
        )
        _check(self.scanner_burst_links >= 2, "scanner_burst_links must be ≥ 2")
        _check(self.scanner_burst_seconds >= 0, "scanner_burst_seconds must be ≥ 0")
        _check(0.001 <= self.apply_poll_seconds <= 60, "apply_poll_seconds must be in [0.001, 60]")
        _check(0 <= self.applier_nice <= 19, "applier_nice must be in [0, 19]")


@dataclass(frozen=True)
class LandingSettings:
    posterior_refresh_seconds: float = 5.0
    visibility_floor: int = 10
    visibility_noise_sigma: float = 0.35
    consent_text: str = (
        "Yes, {group} may email me about volunteering. I can unsubscribe at any time."
    )

    def validate(self) -> None:
        _check(self.posterior_refresh_seconds > 0, "posterior_refresh_seconds must be > 0")
        _check(self.visibility_floor >= 1, "visibility_floor must be ≥ 1")
        _check(self.visibility_noise_sigma >= 0, "visibility_noise_sigma must be ≥ 0")
        _check("{group}" in self.consent_text, "consent_text must contain {group}")


@dataclass(frozen=True)
class ReportSettings:
    leader_min_friends: int = 5

    def validate(self) -> None:
        _check(self.leader_min_friends >= 1, "leader_min_friends must be ≥ 1")


@dataclass(frozen=True)
class AdminSettings:
    login_rate_limit: str = "10 per minute"

    def validate(self) -> None:
        from limits import parse_many

        try:
            parse_many(self.login_rate_limit)
        except ValueError:
            raise ValueError(
                f"login_rate_limit {self.login_rate_limit!r} is not a rate limit "
                "(e.g. '10 per minute')"
            ) from None


LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True)
class SimulatorSettings:
    host: str = "127.0.0.1"
    port: int = 8025
    webhook_url: str = "http://127.0.0.1:8000/webhooks/sendgrid"
    true_rates_file: str = ""
    seed: int = 20261103
    time_scale: float = 60.0
    batch_interval_seconds: float = 5.0
    max_batch_events: int = 1000
    max_batch_bytes: int = 786432
    duplicate_rate: float = 0.01
    jitter_seconds: float = 3.0
    max_delivery_attempts: int = 8
    retry_backoff_seconds: float = 2.0
    post_timeout_seconds: float = 10.0

    def validate(self) -> None:
        _check(self.host in LOOPBACK_HOSTS, f"host must be a loopback address {LOOPBACK_HOSTS}")
        _check(0 <= self.port <= 65535, "port must be in [0, 65535]")
        _check(self.webhook_url.startswith(("http://", "https://")), "webhook_url must be http(s)")
        _check(self.seed >= 0, "seed must be ≥ 0")
        _check(self.time_scale > 0, "time_scale must be > 0")
        _check(self.batch_interval_seconds > 0, "batch_interval_seconds must be > 0")
        _check(1 <= self.max_batch_events <= 1000, "max_batch_events must be in [1, 1000]")
        _check(1024 <= self.max_batch_bytes <= 786432, "max_batch_bytes must be in [1024, 786432]")
        _check(0 <= self.duplicate_rate <= 0.5, "duplicate_rate must be in [0, 0.5]")
        _check(self.jitter_seconds >= 0, "jitter_seconds must be ≥ 0")
        _check(self.max_delivery_attempts >= 1, "max_delivery_attempts must be ≥ 1")
        _check(self.retry_backoff_seconds >= 0, "retry_backoff_seconds must be ≥ 0")
        _check(self.post_timeout_seconds > 0, "post_timeout_seconds must be > 0")


@dataclass(frozen=True)
class Settings:
    """All settings; ``secret_key`` is resolved from the environment or the key file."""

    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    web: WebSettings = field(default_factory=WebSettings)
    sendgrid: SendGridSettings = field(default_factory=SendGridSettings)
    scheduler: SchedulerSettings = field(default_factory=SchedulerSettings)
    experiments: ExperimentSettings = field(default_factory=ExperimentSettings)
    guardrails: GuardrailSettings = field(default_factory=GuardrailSettings)
    delay: DelaySettings = field(default_factory=DelaySettings)
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)
    landing: LandingSettings = field(default_factory=LandingSettings)
    reports: ReportSettings = field(default_factory=ReportSettings)
    simulator: SimulatorSettings = field(default_factory=SimulatorSettings)
    admin: AdminSettings = field(default_factory=AdminSettings)
    config_path: Path = DEFAULT_CONFIG
    secret_key: str = field(default="", repr=False)

    @property
    def base_dir(self) -> Path:
        return self.config_path.parent

    def replace(self, **sections: object) -> Settings:
        """A copy with whole sections or section keys replaced: ``replace(database={"url": u})``."""
        changes: dict[str, object] = {}
        for name, value in sections.items():
            current = getattr(self, name)
            if isinstance(value, Mapping) and dataclasses.is_dataclass(current):
                value = dataclasses.replace(current, **value)
            changes[name] = value
        return dataclasses.replace(self, **changes)


SECTIONS: dict[str, type] = {
    f.name: typing.get_type_hints(Settings)[f.name]
    for f in dataclasses.fields(Settings)
    if f.name not in ("config_path", "secret_key")
}


def load_settings(
    path: Path | str | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read ``config.toml`` (or ``RESISTRY_CONFIG``), apply environment overrides, validate.

    Raises :class:`SettingsError` naming the file and key of the first problem found.
    """
    environ = os.environ if environ is None else environ
    config_path = Path(path or environ.get("RESISTRY_CONFIG") or DEFAULT_CONFIG).resolve()
    try:
        raw = tomllib.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SettingsError(f"{config_path}: configuration file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{config_path}: not valid TOML: {exc}") from None
    origins = _apply_environment(raw, environ, config_path)

    sections: dict[str, object] = {}
    for name, value in raw.items():
        if name not in SECTIONS:
            raise SettingsError(f"{config_path}: unknown section [{name}]")
        if not isinstance(value, dict):
            raise SettingsError(f"{config_path}: [{name}] must be a table")
        sections[name] = _build_section(name, SECTIONS[name], value, config_path, origins)
    settings = Settings(**sections, config_path=config_path)  # type: ignore[arg-type]
    url = _resolve_sqlite_path(settings.database.url, settings.base_dir)
    secret = environ.get("RESISTRY_SECRET_KEY", "").strip()
    if secret:
        _check_secret(secret, "RESISTRY_SECRET_KEY")
    else:
        secret = _secret_from_file(settings)
    return settings.replace(database={"url": url}, secret_key=secret)


MIN_SECRET_LENGTH = 32


def _check_secret(secret: str, source: str) -> None:
    """A short key makes every signed link and cookie guessable: refuse to start with one."""
    if len(secret) < MIN_SECRET_LENGTH:
        raise SettingsError(
            f"{source}: the secret key must be at least {MIN_SECRET_LENGTH} characters, got"
            f" {len(secret)} (make one: python -c 'import secrets; print(secrets.token_hex(32))')"
        )


def _apply_environment(
    raw: dict, environ: Mapping[str, str], config_path: Path
) -> dict[tuple[str, str], str]:
    """Apply the environment's overrides to ``raw``; returns the variable behind each key, so
    an error names the variable, not the file."""
    origins: dict[tuple[str, str], str] = {}
    for variable, (section, key) in ENV_OVERRIDES.items():
        if environ.get(variable):
            raw.setdefault(section, {})[key] = environ[variable]
            origins[section, key] = variable
    for variable, value in environ.items():
        if variable.startswith("RESISTRY_") and "__" in variable:
            section, _, key = variable.removeprefix("RESISTRY_").lower().partition("__")
            if section not in SECTIONS:
                raise SettingsError(f"{variable}: unknown section [{section}] ({config_path})")
            raw.setdefault(section, {})[key] = value
            origins[section, key] = variable
    return origins


def _build_section(
    name: str, cls: type, values: dict, config_path: Path, origins: dict[tuple[str, str], str]
) -> object:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    converted: dict[str, object] = {}
    for key, value in values.items():
        source = origins.get((name, key), config_path)
        if key not in known:
            raise SettingsError(f"{source}: unknown key {name}.{key}")
        try:
            converted[key] = _coerce(value, hints[key])
        except (TypeError, ValueError):
            expected = getattr(hints[key], "__name__", str(hints[key]))
            raise SettingsError(
                f"{source}: {name}.{key} must be {expected}, got {value!r}"
            ) from None
    section = cls(**converted)
    try:
        section.validate()
    except ValueError as exc:
        key = str(exc).split(" ", 1)[0]  # the messages start with the key they are about
        raise SettingsError(f"{origins.get((name, key), config_path)}: {name}.{exc}") from None
    return section


def _coerce(value: object, expected: type) -> object:
    """Accept TOML values of the declared type, and strings from environment variables."""
    if isinstance(expected, types.UnionType):
        expected = typing.get_args(expected)[0]
    if expected is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
            return value.lower() in ("true", "1", "yes")
        raise TypeError
    if expected is int:
        if isinstance(value, bool):
            raise TypeError
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            return int(value)
        raise TypeError
    if expected is float:
        if isinstance(value, bool):
            raise TypeError
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str):
            return float(value)
        raise TypeError
    if expected is str:
        if isinstance(value, str):
            return value
        raise TypeError
    raise TypeError


def _resolve_sqlite_path(url: str, base_dir: Path) -> str:
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith("sqlite:////"):
        relative = url.removeprefix(prefix)
        if relative and not relative.startswith(":memory:") and not Path(relative).is_absolute():
            return prefix + str(base_dir / relative)
    return url


def _secret_from_file(settings: Settings) -> str:
    """Development fallback: a random key created once next to the SQLite file."""
    path = settings.base_dir / settings.web.secret_key_file
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written whole and private under another name, then linked into place: processes
        # starting together (make run starts three) all read the one key that won.
        draft = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_hex(32) + "\n")
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    key = path.read_text().strip()
    _check_secret(key, str(path))
    return key
