"""Settings: where the database is, what agent19 may do there, where it writes.

Precedence: explicit arguments (CLI flags, library calls) > environment > defaults.

| setting            | flag                  | environment                 | default                  |
|--------------------|-----------------------|-----------------------------|--------------------------|
| dsn                | ``--dsn``             | ``DATABASE_URL``            | embedded server          |
| mode               | ``--mode``            | ``AGENT19_MODE``            | ``read-only``            |
| handoff_dir        | ``--handoff-dir``     | ``AGENT19_HANDOFF_DIR``     | ``./handoffs``           |
| statement_timeout  | ``--statement-timeout``| ``AGENT19_STATEMENT_TIMEOUT``| ``30s``                 |
| lock_timeout       | ``--lock-timeout``    | ``AGENT19_LOCK_TIMEOUT``    | ``5s``                   |
| data_dir           | ``--data-dir``        | ``AGENT19_DATA_DIR``        | per-user data directory  |
| confirm_key        |                       | ``AGENT19_CONFIRM_KEY``     | generated in data_dir    |
| allow_model_confirmation | ``--allow-model-confirmation`` | ``AGENT19_ALLOW_MODEL_CONFIRMATION`` | off |
| mass_write_fraction|                       | ``AGENT19_MASS_WRITE_FRACTION``| ``0.5``               |
| mass_write_rows    |                       | ``AGENT19_MASS_WRITE_ROWS`` | ``100000``               |
| mass_write_window_minutes |                | ``AGENT19_MASS_WRITE_WINDOW_MINUTES`` | ``60``         |
| read_dsn           | ``--read-dsn``        | ``AGENT19_READ_DSN``        | the main DSN             |
| allow_privileged_reads | ``--allow-privileged-reads`` | ``AGENT19_ALLOW_PRIVILEGED_READS`` | off     |
| allow_unreadable_code | ``--allow-unreadable-code`` | ``AGENT19_ALLOW_UNREADABLE_CODE`` | off        |
| isolated_max_mb    |                       | ``AGENT19_ISOLATED_MAX_MB`` | min(2048, 25 % of free)  |

``allow_model_confirmation`` lets a confirmation phrase arrive as a tool argument (written by
whoever calls the tool: a model, or a pipeline's approver program); by default only a human gives it
(MCP elicitation, ``agent19 confirm --token`` at a terminal, or the loopback page of ``agent19 serve``).
In execute mode a write that touches at least ``mass_write_fraction`` of a table's rows (when it
touches two or more) or more than ``mass_write_rows`` rows of one table is rolled back and goes
through the confirmation protocol with the measured numbers — its own rows added to those agent19 removed from the
same table without confirmation in the last ``mass_write_window_minutes`` (0: each statement on its own;
:mod:`agent19.safety.tally`).

``read_dsn`` is the least-privilege login user reads (run_sql, explain_query, the index advisor)
run as; ``agent19 setup-role`` prints the SQL that creates it. Without it, and when the main login
is privileged, those tools refuse in read-only mode unless ``allow_privileged_reads`` is on. The same setting lets
a trial (a dry run, EXPLAIN ANALYZE of a write) as a privileged login run in a database where another, less
privileged role owns objects (:mod:`agent19.safety.trial_owners`); without it no statement is tried there.

``allow_unreadable_code`` lets a dry run (and EXPLAIN ANALYZE of a write) run on the target statements whose
code agent19 cannot read — SQL built at run time (``EXECUTE``), functions in other languages — which it
otherwise reports as not tested (:mod:`agent19.safety.trial`). A person's setting, never a tool argument.

``isolated_max_mb`` bounds what an isolated dry run's throwaway cluster may write on this machine (its work
directory; :mod:`agent19.migrate.dryrun.isolated_limits`): by default the smaller of 2 GB and a quarter of the free
space where it is made. A person's setting, never a tool argument.

Timeouts accept PostgreSQL's spelling: ``500ms``, ``5s``, ``2min``, ``1h`` or a bare number of
milliseconds.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from agent19.errors import ConfigError


class AccessMode(StrEnum):
    """What agent19 may do on the server, enforced by the server itself."""

    READ_ONLY = "read-only"
    """Catalog and statistics reads; every transaction is READ ONLY."""
    DRY_RUN = "dry-run"
    """May run statements in transactions that are always rolled back, and in scratch databases."""
    EXECUTE = "execute"
    """May apply changes; destructive ones only through the confirmation protocol."""

    def allows(self, needed: AccessMode) -> bool:
        order = [AccessMode.READ_ONLY, AccessMode.DRY_RUN, AccessMode.EXECUTE]
        return order.index(self) >= order.index(needed)


_UNITS_MS = {"ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000}
_DURATION = re.compile(r"^\s*(\d+)\s*(ms|s|min|h)?\s*$")


def parse_duration_ms(value: str | int, setting: str) -> int:
    """``'5s'`` → 5000. A bare number is milliseconds, as in PostgreSQL."""
    if isinstance(value, int):
        ms = value
    else:
        match = _DURATION.match(value)
        if not match:
            raise ConfigError(
                f"{setting}: {value!r} is not a duration",
                "use a number of milliseconds or a unit: 500ms, 5s, 2min, 1h",
            )
        ms = int(match.group(1)) * _UNITS_MS[match.group(2) or "ms"]
    if ms < 0:
        raise ConfigError(f"{setting}: must not be negative (got {value!r})")
    return ms


def _flag(value: str | bool, setting: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if not isinstance(value, str):
        raise ConfigError(f"{setting}: {value!r} is not a yes/no value", "use 1 or 0 (true/false)")
    if value.strip().lower() in {"1", "true", "yes", "on"}:
        return True
    if value.strip().lower() in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{setting}: {value!r} is not a yes/no value", "use 1 or 0 (true/false)")


def _access_mode(mode: Any) -> AccessMode:
    try:
        return AccessMode(mode)
    except ValueError:
        allowed = ", ".join(m.value for m in AccessMode)
        raise ConfigError(f"mode: {mode!r} is not an access mode", f"use one of: {allowed}") from None


def default_data_dir() -> Path:
    """Per-user directory for the embedded server and agent19's own state."""
    import platformdirs

    return Path(platformdirs.user_data_dir("agent19", appauthor=False))


class _DataDir:
    """:attr:`Settings.data_dir`: the directory given (checked and made a :class:`Path` as it is set), else the
    per-user default (:func:`default_data_dir`) looked up when first read, not when the settings are made: a command
    that keeps no state (``agent19 lint``, ``agent19 rules``) never imports platformdirs (with its tempfile, random and
    shutil, 3 % of a one-statement lint's instructions; tools/bench/bench_mcp.py measures start-up). Its default as
    a dataclass field is ``None``, "not given"."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name, self.key = name, f"_{name}"

    def __get__(self, settings: Settings | None, owner: type | None = None) -> Any:
        if settings is None:  # the class's attribute: what dataclasses takes for the field's default
            return None
        value = settings.__dict__.get(self.key)
        if value is None:
            value = settings.__dict__[self.key] = default_data_dir()
        return value

    def __set__(self, settings: Settings, value: Any) -> None:
        if value is not None:
            if not isinstance(value, str | os.PathLike):
                raise ConfigError(f"{self.name}: expected a path, got {type(value).__name__}",
                                  "give a directory's path")
            value = Path(value)
        settings.__dict__[self.key] = value


class Secret:
    """A secret string (a DSN with its password, a key): ``get_secret_value()`` gives it; ``str``, ``repr`` and
    f-strings show asterisks only, so a settings object printed or logged never shows it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __str__(self) -> str:
        return "**********" if self._value else ""

    def __repr__(self) -> str:
        return f"Secret({str(self)!r})"

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)

    def __len__(self) -> int:
        return len(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> tuple[type[Secret], tuple[str]]:  # a worker process (agent19.workpool) gets it whole
        return Secret, (self._value,)


def _secret(value: Any) -> Secret | None:
    """A DSN or key as given (text, a :class:`Secret`, anything with ``get_secret_value()``), as a Secret."""
    if value is None or isinstance(value, Secret):
        return value
    return Secret(value.get_secret_value() if hasattr(value, "get_secret_value") else str(value))


_LIMITS: dict[str, tuple[str, str, Callable[[float], bool], str]] = {
    # setting: (environment variable, the values it takes, the check, an example)
    "mass_write_fraction": ("AGENT19_MASS_WRITE_FRACTION", "a share above 0 and at most 1", lambda v: 0 < v <= 1,
                            "e.g. 0.5"),
    "mass_write_rows": ("AGENT19_MASS_WRITE_ROWS", "a number of rows of at least 1", lambda v: v >= 1,
                        "e.g. 100000"),
    "mass_write_window_minutes": ("AGENT19_MASS_WRITE_WINDOW_MINUTES", "a number of minutes of at least 0 (0: off)",
                                  lambda v: v >= 0, "e.g. 60"),
    "require_verified_backup_hours": ("AGENT19_REQUIRE_VERIFIED_BACKUP", "a number of hours above 0",
                                      lambda v: v > 0, "e.g. 24"),
    "dry_run_max_age_hours": ("AGENT19_DRY_RUN_MAX_AGE_HOURS", "a number of hours above 0", lambda v: v > 0,
                              "e.g. 24"),
    "isolated_max_mb": ("AGENT19_ISOLATED_MAX_MB", "a number of megabytes of at least 64", lambda v: v >= 64,
                        "e.g. 2048"),
}
"""The settings whose values are bounded, checked when settings are built (:meth:`Settings.__post_init__`)."""


_FLAGS = ("allow_model_confirmation", "allow_privileged_reads", "allow_unreadable_code", "require_dry_run",
          "require_lock_ack")


def _number(value: Any, kind: type[int] | type[float]) -> Any:
    """``value`` as ``kind`` when it is one (text of a number, or a whole float for an int); else as given, for
    :data:`_LIMITS`' check to refuse, naming the setting."""
    if value is None or isinstance(value, bool):
        return value
    try:
        number = float(value) if isinstance(value, str) else value
    except ValueError:
        return value
    if kind is int and isinstance(number, float) and number.is_integer():
        return int(number)
    if kind is float and isinstance(number, int):
        return float(number)
    return number


@dataclass(frozen=True)
class Settings:
    """Resolved settings. Build with :meth:`Settings.load`; a changed copy with ``dataclasses.replace`` (checked
    again)."""

    dsn: Secret | None = field(default=None, metadata={"description": "libpq connection string or URI"})
    mode: AccessMode = AccessMode.READ_ONLY
    handoff_dir: Path = Path("handoffs")
    statement_timeout_ms: int = 30_000
    lock_timeout_ms: int = 5_000
    data_dir: Path = _DataDir()  # type: ignore[assignment]  # the per-user default when none is given, read lazily
    application_name: str = "agent19"
    confirm_key: Secret | None = field(default=None, metadata={
        "description": "HMAC key for confirmation tokens; default: generated once in data_dir (0600)"})
    allow_model_confirmation: bool = field(default=False, metadata={
        "description": "accept the confirmation phrase as a tool argument (risk: the model itself can confirm); "
        "default: only a human confirms, out of band"})
    mass_write_fraction: float = field(default=0.5, metadata={
        "description": "share of a table's rows a write may touch (update or delete) before it needs confirmation"})
    mass_write_rows: int = field(default=100_000, metadata={
        "description": "rows of one table a write may touch before it needs confirmation, whatever the share"})
    mass_write_window_minutes: float = field(default=60.0, metadata={
        "description": "the limits also hold for the rows agent19 removed from a table without confirmation within "
        "this many minutes, added up (0: each statement on its own)"})
    read_dsn: Secret | None = field(default=None, metadata={
        "description": "DSN of the least-privilege login user reads run as"})
    allow_privileged_reads: bool = field(default=False, metadata={
        "description": "let user reads run as a superuser/privileged login, and trials (dry runs) as one run where "
        "less privileged roles own objects (risks server files, programs and other sessions)"})
    allow_unreadable_code: bool = field(default=False, metadata={
        "description": "let a dry run run code agent19 cannot read (SQL built at run time, other languages) on the "
        "target; risk: what it does outside the rolled-back transaction (signals, other servers) is not prevented"})
    require_dry_run: bool = field(default=False, metadata={
        "description": "execute mode: refuse a statement that changes something until test_migration passed with "
        "it on the same database"})
    require_verified_backup_hours: float | None = field(default=None, metadata={
        "description": "execute mode: refuse UPDATE/DELETE/MERGE unless verify_backup verified a backup of the "
        "same database within this many hours"})
    require_lock_ack: bool = field(default=False, metadata={
        "description": "execute mode: refuse a statement with lock warnings unless each is acknowledged"})
    dry_run_max_age_hours: float = field(default=24.0, metadata={
        "description": "with require_dry_run: how long a passing dry run stays valid (it is also void once the "
        "schema changes)"})
    isolated_max_mb: int | None = field(default=None, metadata={
        "description": "megabytes an isolated dry run's throwaway cluster may write here (default: the smaller of "
        "2048 and a quarter of the free space)"})

    def __post_init__(self) -> None:
        """What the fields' types promise, made true (text to a :class:`Secret`, a :class:`Path`, an
        :class:`AccessMode`) and the bounds of :data:`_LIMITS` checked: :class:`ConfigError` naming the setting."""
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        for name in ("dsn", "confirm_key", "read_dsn"):
            value = getattr(self, name)
            if not (value is None or isinstance(value, str) or hasattr(value, "get_secret_value")):
                raise ConfigError(f"{name}: expected text, got {type(value).__name__}",
                                  "give the connection string or key")
            put(name, _secret(value))
        put("mode", _access_mode(self.mode))
        if not isinstance(self.handoff_dir, str | os.PathLike):  # data_dir is checked as it is set (_DataDir)
            raise ConfigError(f"handoff_dir: expected a path, got {type(self.handoff_dir).__name__}",
                              "give a directory's path")
        put("handoff_dir", Path(self.handoff_dir))
        if not isinstance(self.application_name, str):
            raise ConfigError(f"application_name: {self.application_name!r} is not text", "e.g. agent19")
        for name in _FLAGS:  # 'false' from a caller's own config must not be a true (non-empty) string
            put(name, _flag(getattr(self, name), name))
        for name in ("statement_timeout_ms", "lock_timeout_ms"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | str):
                raise ConfigError(f"{name}: {value!r} is not a duration", "a number of milliseconds, or e.g. '5s'")
            put(name, parse_duration_ms(value, name))
        for name, (var, values, within, example) in _LIMITS.items():
            kind = int if name in ("mass_write_rows", "isolated_max_mb") else float
            value = _number(getattr(self, name), kind)
            if value is None and name in ("require_verified_backup_hours", "isolated_max_mb"):  # may be unset
                continue
            if value is None or isinstance(value, bool) or not isinstance(value, kind | int) or not within(value):
                raise ConfigError(f"{name} ({var}): {value!r} is not {values}", example)
            put(name, value)

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Resolve settings from ``overrides`` (None means "not given") and the environment."""
        env = os.environ if env is None else env
        given = {k: v for k, v in overrides.items() if v is not None}

        def pick(key: str, var: str) -> Any:
            if key in given:
                return given[key]
            value = env.get(var)
            return value if value not in (None, "") else None

        def flag(key: str, var: str) -> None:
            raw_flag = pick(key, var)
            if raw_flag is not None:
                values[key] = _flag(raw_flag, var)

        values: dict[str, Any] = {}
        dsn = pick("dsn", "DATABASE_URL")
        if dsn is not None:
            values["dsn"] = dsn  # text or a Secret: checked and wrapped by __post_init__
        mode = pick("mode", "AGENT19_MODE")
        if mode is not None:
            values["mode"] = _access_mode(mode)
        handoff = pick("handoff_dir", "AGENT19_HANDOFF_DIR")
        if handoff is not None:
            values["handoff_dir"] = Path(handoff)
        data_dir = pick("data_dir", "AGENT19_DATA_DIR")
        if data_dir is not None:
            try:
                values["data_dir"] = Path(data_dir).expanduser()
            except RuntimeError as exc:  # ~someone who has no home directory here
                raise ConfigError(f"data_dir (AGENT19_DATA_DIR): {data_dir!r}: {exc}",
                                  "give an absolute path") from None
        confirm_key = pick("confirm_key", "AGENT19_CONFIRM_KEY")
        if confirm_key is not None:
            values["confirm_key"] = confirm_key  # text or a Secret: checked and wrapped by __post_init__
        flag("allow_model_confirmation", "AGENT19_ALLOW_MODEL_CONFIRMATION")
        for key, var, cast in (("mass_write_fraction", "AGENT19_MASS_WRITE_FRACTION", float),
                               ("mass_write_rows", "AGENT19_MASS_WRITE_ROWS", int),
                               ("mass_write_window_minutes", "AGENT19_MASS_WRITE_WINDOW_MINUTES", float),
                               ("isolated_max_mb", "AGENT19_ISOLATED_MAX_MB", int)):
            raw_value = pick(key, var)
            if raw_value is not None:
                try:
                    values[key] = cast(raw_value)
                except ValueError:
                    raise ConfigError(f"{var}: {raw_value!r} is not a number", "e.g. 0.5 (a share) or 100000 (rows)"
                                      ) from None
        read_dsn = pick("read_dsn", "AGENT19_READ_DSN")
        if read_dsn is not None:
            values["read_dsn"] = read_dsn  # text or a Secret: checked and wrapped by __post_init__
        flag("allow_privileged_reads", "AGENT19_ALLOW_PRIVILEGED_READS")
        flag("allow_unreadable_code", "AGENT19_ALLOW_UNREADABLE_CODE")
        flag("require_dry_run", "AGENT19_REQUIRE_DRY_RUN")
        flag("require_lock_ack", "AGENT19_REQUIRE_LOCK_ACK")
        for key, var in (("dry_run_max_age_hours", "AGENT19_DRY_RUN_MAX_AGE_HOURS"),
                         ("require_verified_backup_hours", "AGENT19_REQUIRE_VERIFIED_BACKUP")):
            hours = pick(key, var)
            if hours is not None:
                try:
                    values[key] = float(hours)
                except ValueError:
                    raise ConfigError(f"{var}: {hours!r} is not a number of hours", "e.g. 24") from None
        for key, var, setting in (
            ("statement_timeout", "AGENT19_STATEMENT_TIMEOUT", "statement_timeout"),
            ("lock_timeout", "AGENT19_LOCK_TIMEOUT", "lock_timeout"),
        ):
            raw = pick(key, var)
            if raw is not None:
                values[f"{key}_ms"] = parse_duration_ms(raw, setting)
        return cls(**values)

    def dsn_value(self) -> str | None:
        return self.dsn.get_secret_value() if self.dsn else None
