"""Lint configuration: ``agent19.toml`` (table ``[lint]``) or ``pyproject.toml`` (``[tool.agent19.lint]``).

    [lint]
    disable = ["A19030", "int-primary-key"]   # rule codes or names
    fail_on = "error"                         # error | warning | info | never: the CLI exits 1 at or above
    pg_version = 150000                       # when no database is given (server_version_num, or 15)
    style = true                              # turn on the style group (off by default): prefer bigint keys,
                                              # identity, text, timestamptz, jsonb; no char(n), long names…
    style_severity = "warning"                # severity of style findings (error | warning | info)
    enable = ["prefer-text-field"]            # or turn on single style rules (codes, names, squawk's names)
    severity = { "prefer-identity" = "error", "A19012" = "error" }   # any rule's severity
    assume = ["type-changes-widen"]           # what the team knows that the SQL does not say (see ASSUMPTIONS)
    migration_lock_timeout = "5s"             # the migration tool's connection already sets lock_timeout (e.g.
                                              # in its connection options): statements need no SET lock_timeout

The first file found walking up from the current directory is used; ``agent19.toml`` wins over
``pyproject.toml`` in the same directory. Keys directly in ``[tool.agent19]`` / at the top of
``agent19.toml`` are read too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from agent19.errors import ConfigError

Threshold = Literal["error", "warning", "info", "never"]
Severity = Literal["error", "warning", "info"]

ASSUME_WIDEN = "type-changes-widen"
ASSUMPTIONS = {
    ASSUME_WIDEN: "without a database, every ALTER COLUMN ... TYPE whose target can be reached without a rewrite "
    "(varchar(n) -> larger or text, numeric precision increase, timestamp <-> timestamptz under UTC...) is such a "
    "widening: no warning for it",
}
"""What ``--assume`` / ``[lint] assume`` can state, and what each means."""


@dataclass(kw_only=True)
class LintConfig:
    """Every value is checked (and a TOML spelling read as its type: ``"15"``, ``"yes"``) when the config is made:
    a wrong one raises :class:`InvalidSetting` naming the setting; an unknown assumption or a pg_version that is
    not a PostgreSQL version raise :class:`~agent19.errors.ConfigError`."""

    disable: list[str] = field(default_factory=list, metadata={"description": "rule codes or names to turn off"})
    fail_on: Threshold = "error"
    pg_version: int | None = None
    style: bool = field(default=False, metadata={"description": "turn on the style group of rules"})
    style_severity: Severity = "warning"
    enable: list[str] = field(default_factory=list, metadata={
        "description": "style rules to turn on one by one (codes, names, aliases)"})
    severity: dict[str, Severity] = field(default_factory=dict, metadata={
        "description": "rule (code, name or alias) -> severity"})
    assume: list[str] = field(default_factory=list, metadata={
        "description": f"facts the team states: {', '.join(ASSUMPTIONS)}"})
    migration_lock_timeout: str | None = field(default=None, metadata={
        "description": "lock_timeout the migration tool's connection sets (e.g. '5s'): statements then need no SET "
        "lock_timeout"})
    lock_timeout_source: str | None = field(default=None, metadata={
        "description": "where lock_timeout came from, when not from the config file (e.g. the role's setting in the "
        "database)"})
    source: str | None = field(default=None, metadata={"description": "the file this came from"})

    def __post_init__(self) -> None:
        first: InvalidSetting | None = None
        for name, kind in _KINDS.items():  # in field order: the first wrong one is named
            try:
                setattr(self, name, _read(kind, getattr(self, name), (name,)))
            except InvalidSetting as exc:
                first = first or exc
                continue
            if name == "pg_version":
                self.pg_version = normalize_version(self.pg_version)
            elif name == "assume":
                _check_assumptions(self.assume)
            elif name == "migration_lock_timeout" and self.migration_lock_timeout is not None and \
                    lock_timeout_ms(self.migration_lock_timeout) is None:
                first = first or InvalidSetting((name,), "Input should be a lock_timeout PostgreSQL accepts: a "
                                                "number of milliseconds or with a unit (500ms, 5s, 1min), at most "
                                                "2147483647 ms")
        if first is not None:
            raise first

    def _codes(self, keys: list[str], where: str) -> list[str]:
        from agent19.migrate.lint.rules import find_rule

        out = []
        for key in keys:
            rule = find_rule(key)
            if rule is None:
                raise ConfigError(f"{self.source or 'lint config'}: unknown lint rule {key!r} in {where}",
                                  "see `agent19 rules` for the codes, names and aliases")
            out.append(rule.code)
        return out

    def disabled_codes(self) -> set[str]:
        return set(self._codes(self.disable, "disable"))

    def active_codes(self) -> set[str]:
        """Every rule that runs: the safety rules, plus the style rules when the group or the rule is turned on;
        minus the disabled ones."""
        from agent19.migrate.lint.rules import all_rules

        enabled = set(self._codes(self.enable, "enable"))
        return {r.code for r in all_rules() if r.group != "style" or self.style or r.code in enabled} \
            - self.disabled_codes()

    def severities(self) -> dict[str, Severity]:
        """rule code → the severity its findings get, where the config changes it."""
        from agent19.migrate.lint.rules import all_rules

        out: dict[str, Severity] = {r.code: self.style_severity for r in all_rules() if r.group == "style"}
        codes = self._codes(list(self.severity), "severity")
        out.update({code: self.severity[key] for code, key in zip(codes, self.severity, strict=True)})
        return out


class InvalidSetting(ValueError):
    """A lint setting of the wrong type or value: where (``("severity", "A19001")``) and what is wrong."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(f"{loc}: {message}")
        self.loc, self.message = loc, message


def _check_assumptions(assume: list[str]) -> None:
    unknown = [a for a in assume if a not in ASSUMPTIONS]
    if unknown:
        raise ConfigError(f"unknown assumption(s) {', '.join(map(repr, unknown))}",
                          "known: " + "; ".join(f"{k} - {d}" for k, d in ASSUMPTIONS.items()))


_PG_NUMBER = re.compile(r"\A\s*(?P<n>[+-]?0[xX][0-9a-fA-F]+|[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*"
                        r"(?P<unit>us|ms|s|min|h|d)?\s*\Z", re.ASCII)
_MS_PER = {"us": 0.001, "ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000, "d": 86_400_000, None: 1}


def lock_timeout_ms(text: str) -> int | None:
    """``text`` as PostgreSQL reads a ``lock_timeout`` (``SET lock_timeout = '5s'``): a number — decimal, with a
    fraction or an exponent, or hexadecimal — and an optional unit, rounded to whole milliseconds (``'5us'`` is
    0: no timeout); None where PostgreSQL would refuse it (not a number, negative, above 2147483647 ms)."""
    match = _PG_NUMBER.match(text)
    if match is None:
        return None
    number, unit = match["n"], match["unit"]
    value = float(int(number, 16)) if "x" in number.lower() else float(number)
    ms = round(value * _MS_PER[unit])
    return ms if 0 <= ms <= 2_147_483_647 else None

_TRUE = {"1", "on", "t", "true", "y", "yes"}
_FALSE = {"0", "off", "f", "false", "n", "no"}


def _read(kind: str, value: Any, loc: tuple[str | int, ...]) -> Any:
    """``value`` as the declared type ``kind`` (a field's annotation), read as pydantic's lax mode reads TOML values
    (and with its messages): ``"15"`` and ``15.0`` are 15, ``"yes"`` and 1 are true."""
    if kind.endswith(" | None"):
        return None if value is None else _read(kind.removesuffix(" | None"), value, loc)
    if kind in _CHOICES:
        choices = _CHOICES[kind]
        if isinstance(value, str) and value in choices:
            return value
        quoted = [repr(c) for c in choices]
        raise InvalidSetting(loc, f"Input should be {', '.join(quoted[:-1])} or {quoted[-1]}")
    if kind == "str":
        if isinstance(value, str):
            return value
        raise InvalidSetting(loc, "Input should be a valid string")
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:  # pydantic's spellings, not stripped
            return value.lower() in _TRUE
        if isinstance(value, int | float) and value in (0, 1):
            return bool(value)
        raise InvalidSetting(loc, "Input should be a valid boolean" + (
            ", unable to interpret input" if isinstance(value, str | int) else ""))
    if kind == "int":
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float):
            if value.is_integer():
                return int(value)
            raise InvalidSetting(loc, "Input should be a valid integer, got a number with a fractional part")
        if isinstance(value, str):  # "15", " 15 " and "15.0" as pydantic reads them; not other scripts' digits
            text = value.strip()
            number = _number_text(text) if text.isascii() else None
            if number is not None:
                return number
            raise InvalidSetting(loc, "Input should be a valid integer, unable to parse string as an integer")
        raise InvalidSetting(loc, "Input should be a valid integer")
    if kind.startswith("list[") and kind.endswith("]"):
        if not isinstance(value, list | tuple):
            raise InvalidSetting(loc, "Input should be a valid list")
        return [_read(kind[5:-1], item, (*loc, i)) for i, item in enumerate(value)]
    if kind.startswith("dict[str, ") and kind.endswith("]"):
        if not isinstance(value, dict):
            raise InvalidSetting(loc, "Input should be a valid dictionary")
        return {_read("str", k, (*loc, "[key]")): _read(kind[10:-1], v, (*loc, k)) for k, v in value.items()}
    raise TypeError(f"LintConfig: no reader for the type {kind!r}")  # a new field of a new type: add its reader


_WHOLE = re.compile(r"\A[+-]?\d+(?:\.0*)?\Z", re.ASCII)


def _number_text(text: str) -> int | None:
    """A whole number written as ``15`` or ``15.0`` (ASCII digits, no exponent: pydantic's reading), else None."""
    return int(float(text)) if _WHOLE.match(text) else None


_CHOICES: dict[str, tuple[str, ...]] = {"Threshold": get_args(Threshold), "Severity": get_args(Severity)}
_KINDS: dict[str, str] = {f.name: str(f.type) for f in LintConfig.__dataclass_fields__.values()}
"""Each field's declared type, as written (``from __future__ import annotations``): what :func:`_read` checks."""


def normalize_version(v: int | None) -> int | None:
    """``15`` → ``150000``; ``150004`` stays; ``None`` stays; a whole float (``150000.0``) as its int."""
    if v is None:
        return None
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int):
        raise ConfigError(f"pg_version {v!r} is not a PostgreSQL version", "give e.g. 15 or 150004")
    if 9 <= v <= 99:
        return v * 10000
    if v < 90000:
        raise ConfigError(f"pg_version {v} is not a PostgreSQL version", "give e.g. 15 or 150004")
    return v


def _section(data: dict[str, Any], pyproject: bool, name: str, top_keys: tuple[str, ...],
             path: Path) -> dict[str, Any] | None:
    tool = data.get("tool", {}) if pyproject else {}
    if not isinstance(tool, dict):
        raise ConfigError(f"{path}: [tool] must be a table", f"write agent19's settings under [tool.agent19.{name}]")
    root = tool.get("agent19") if pyproject else data
    if root is None:
        return None
    table = f"[tool.agent19.{name}]" if pyproject else f"[{name}]"
    if not isinstance(root, dict) or not isinstance(root.get(name, {}), dict):
        raise ConfigError(f"{path}: {table if isinstance(root, dict) else '[tool.agent19]'} must be a table",
                          f"write its settings under a {table} header")
    section = dict(root.get(name, {}))
    for key in top_keys:
        if key in root and key not in section:
            section[key] = root[key]
    return section


def load_section(name: str, top_keys: tuple[str, ...] = (), explicit: Path | str | None = None,
                 start: Path | None = None) -> tuple[dict[str, Any], str | None]:
    """The table ``[name]`` of agent19's config file and that file's path: ``explicit``, else the nearest
    agent19.toml / pyproject.toml (``[tool.agent19.<name>]``) above ``start`` (cwd); ``({}, None)`` when
    there is none. ``top_keys`` are also read from the top of the file (``[tool.agent19]``).
    One loader for every section (``lint``, ``health``…)."""
    candidates: list[tuple[Path, bool]] = []
    if explicit:
        p = Path(explicit)
        if not p.is_file():
            raise ConfigError(f"config file {p} not found")
        candidates = [(p, p.name == "pyproject.toml")]
    else:
        here = (start or Path.cwd()).resolve()
        for d in (here, *here.parents):
            candidates += [(d / "agent19.toml", False), (d / "pyproject.toml", True)]
    for path, pyproject in candidates:
        if not path.is_file():
            continue
        import tomllib  # where a file is read: a lint with no config file does not load the parser

        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        section = _section(data, pyproject, name, top_keys, path)
        if section is not None:
            return section, str(path)
    return {}, None


def load_config(explicit: Path | str | None = None, start: Path | None = None) -> LintConfig:
    """The config from ``explicit``, else the nearest agent19.toml / pyproject.toml above ``start`` (cwd)."""
    keys = ("disable", "fail_on", "pg_version", "assume", "migration_lock_timeout", "style", "style_severity",
            "enable", "severity")
    section, path = load_section("lint", keys, explicit, start)
    if path is None:
        return LintConfig()
    names = set(_KINDS) - {"source"}  # where it came from is not a setting
    try:
        config = LintConfig(**{k: v for k, v in section.items() if k in names}, source=path)
        for key in section:
            if key not in names:
                raise InvalidSetting((key,), "Extra inputs are not permitted")
        return config
    except InvalidSetting as exc:
        raise ConfigError(f"{path}: invalid lint settings: {exc}",
                          "allowed: disable, enable (lists), fail_on (error|warning|info|never), pg_version, "
                          "style (true|false), style_severity, severity (table), assume (list), "
                          "migration_lock_timeout") from None


_ROLE_LOCK_TIMEOUT = """
SELECT split_part(cfg, '=', 2) AS value, s.setrole <> 0 AS by_role, s.setdatabase <> 0 AS by_database
FROM pg_db_role_setting s, unnest(s.setconfig) AS cfg
WHERE s.setrole IN (0, (SELECT oid FROM pg_roles WHERE rolname = session_user))
  AND s.setdatabase IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))
  AND cfg LIKE 'lock_timeout=%'
ORDER BY (s.setrole <> 0 AND s.setdatabase <> 0) DESC, s.setrole <> 0 DESC
LIMIT 1
"""


def role_lock_timeout(conn: Any) -> tuple[str, str] | None:
    """The lock_timeout a new session of this login starts with from ``ALTER ROLE … [IN DATABASE …] SET`` or
    ``ALTER DATABASE … SET`` (pg_db_role_setting, readable by every role), and where it comes from; ``None``
    when none is set or it is 0. The session's own value is not used: agent19 sets its own lock_timeout."""
    row = conn.execute(_ROLE_LOCK_TIMEOUT).fetchone()
    if row is None:
        return None
    value, by_role, by_database = (row["value"], row["by_role"], row["by_database"]) if isinstance(row, dict) \
        else row
    if not lock_timeout_ms(value):  # 0 (or rounding to 0): no timeout
        return None
    where = ("ALTER ROLE ... IN DATABASE ... SET" if by_role and by_database else "ALTER ROLE ... SET" if by_role
             else "ALTER DATABASE ... SET")
    return value, f"{where} lock_timeout, read from pg_db_role_setting"
