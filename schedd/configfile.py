"""Where configuration comes from, and how its mistakes are reported.

This module gathers raw values from the sources (the file search, the TOML file, the
``SCHEDD_<SECTION>__<KEY>`` variables, flag overrides) into :class:`Layer` objects that
remember which source set each key, and turns a pydantic ``ValidationError`` into one
:class:`~schedd.errors.ConfigError` line naming source, key and reason.

It knows nothing about the settings themselves: the schema (a pydantic model whose
fields are section models) is passed in, so ``schedd.config`` owns what the keys are
and this module owns where they come from.
"""

from __future__ import annotations

import difflib
import json
import os
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin

import annotated_types
import tomli_w
from pydantic import BaseModel, SecretStr, ValidationError
from pydantic.fields import FieldInfo

from schedd.errors import ConfigError
from schedd.redact import redact_url, redact_url_path

ENV_PREFIX = "SCHEDD_"
CONFIG_ENV = "SCHEDD_CONFIG"
# Module attributes rather than literals in find_config_file so tests can point them
# at a temporary directory.
LOCAL_CONFIG = Path("schedd.toml")
SYSTEM_CONFIG = Path("/etc/schedd/schedd.toml")
COMMAND_LINE = "command line"
DEFAULTS = "defaults"

Schema = type[BaseModel]


class SettingError(ValueError):
    """A rule that involves one key or several failed inside a validator.

    ``keys`` are relative to the model that raises (``"url"`` in a section,
    ``"worker.fence_seconds"`` in the root); the error is reported against the first
    one that a source set explicitly, so the reason should read well after any of them.
    """

    def __init__(self, reason: str, *keys: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.keys = keys


# -- paths -------------------------------------------------------------------------


def _home(env: Mapping[str, str]) -> Path:
    home = env.get("HOME")
    return Path(home) if home else Path.home()


def _xdg_dir(env: Mapping[str, str], variable: str, fallback: str) -> Path:
    value = env.get(variable, "")
    # The XDG base directory spec says relative values are invalid and must be ignored.
    if value and os.path.isabs(value):
        return Path(value)
    return _home(env) / fallback


def default_data_dir(env: Mapping[str, str]) -> Path:
    """``$XDG_DATA_HOME/sched``, or ``~/.local/share/sched``."""
    return _xdg_dir(env, "XDG_DATA_HOME", ".local/share") / "sched"


def user_config_file(env: Mapping[str, str]) -> Path:
    """``$XDG_CONFIG_HOME/sched/schedd.toml``, or ``~/.config/sched/schedd.toml``."""
    return _xdg_dir(env, "XDG_CONFIG_HOME", ".config") / "sched" / "schedd.toml"


def expand_path(value: str, env: Mapping[str, str]) -> str:
    """Expand a leading ``~`` (with HOME from ``env``) and make the path absolute."""
    if value == "~" or value.startswith("~/"):
        value = str(_home(env)) + value[1:]
    return os.path.abspath(value)


def find_config_file(explicit: str | Path | None, env: Mapping[str, str]) -> Path | None:
    """The configuration file to load, or None to run on defaults and environment.

    Order: ``explicit`` (``--config``), ``$SCHEDD_CONFIG``, ``./schedd.toml``,
    ``$XDG_CONFIG_HOME/sched/schedd.toml``, ``/etc/schedd/schedd.toml``. A file named
    explicitly or by ``SCHEDD_CONFIG`` must exist; the others are used when they do.
    """
    if explicit is not None and str(explicit):
        path = Path(explicit)
        if not path.exists():
            raise ConfigError(str(path), None, "config file not found")
        return path
    named = env.get(CONFIG_ENV, "")
    if named:
        path = Path(named)
        if not path.exists():
            raise ConfigError(CONFIG_ENV, None, f"config file not found: {named}")
        return path
    for candidate in (Path.cwd() / LOCAL_CONFIG, user_config_file(env), SYSTEM_CONFIG):
        if candidate.exists():
            return candidate
    return None


def read_toml(path: Path) -> dict[str, Any]:
    """Parse ``path``; every failure is a ConfigError naming the file."""
    source = str(path)
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(source, None, "config file not found") from None
    except IsADirectoryError:
        raise ConfigError(source, None, "is a directory, not a config file") from None
    except PermissionError:
        raise ConfigError(source, None, "permission denied reading the config file") from None
    except UnicodeDecodeError:
        raise ConfigError(source, None, "invalid TOML: the file is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, None, f"invalid TOML: {_one_line(str(exc))}") from None
    except OSError as exc:
        raise ConfigError(source, None, f"cannot read: {exc.strerror or exc}") from None


# -- schema introspection ---------------------------------------------------------


def sections(schema: Schema) -> dict[str, type[BaseModel]]:
    """The schema's sections: the fields whose type is itself a model."""
    found: dict[str, type[BaseModel]] = {}
    for name, info in schema.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            found[name] = annotation
    return found


def env_var(section: str, key: str) -> str:
    """The variable that sets ``section.key``: ``SCHEDD_<SECTION>__<KEY>``."""
    return f"{ENV_PREFIX}{section.upper()}__{key.upper()}"


def _field(schema: Schema, section: str, key: str) -> FieldInfo | None:
    model = sections(schema).get(section)
    return model.model_fields.get(key) if model else None


def type_parts(annotation: Any) -> Iterable[Any]:
    """The annotation and everything nested in it (union members, Annotated metadata)."""
    yield annotation
    for arg in get_args(annotation):
        yield from type_parts(arg)


def _is_list(info: FieldInfo) -> bool:
    return any(get_origin(part) is list for part in type_parts(info.annotation))


def _is_table(info: FieldInfo) -> bool:
    return any(get_origin(part) is dict for part in type_parts(info.annotation))


def _is_secret(info: FieldInfo | None) -> bool:
    return info is not None and SecretStr in type_parts(info.annotation)


def _bounds(info: FieldInfo | None) -> dict[str, Any]:
    """The numeric limits (ge, gt, le, lt) on a field, however they were declared."""
    if info is None:
        return {}
    constraints: list[Any] = list(info.metadata)
    for part in type_parts(info.annotation):
        constraints.extend(part.metadata if isinstance(part, FieldInfo) else [part])
    return {
        name: getattr(item, name)
        for item in constraints
        if isinstance(item, annotated_types.BaseMetadata)
        for name in ("ge", "gt", "le", "lt")
        if hasattr(item, name)
    }


def _unknown(kind: str, name: str, choices: Iterable[str], home: str | None = None) -> str:
    if home:
        return f"unknown {kind} '{name}' (it belongs in {home})"
    match = difflib.get_close_matches(name, list(choices), n=1)
    if match:
        return f"unknown {kind} '{name}' (did you mean '{match[0]}'?)"
    return f"unknown {kind} '{name}'"


def check_key(
    schema: Schema, section: str, key: str | None, *, kind: str = "section"
) -> str | None:
    """Why ``section.key`` (or the bare ``section``) is not a setting, or None.

    ``kind`` names an unknown top-level name: "section", or "key" for a bare value.
    """
    known = sections(schema)

    def home(name: str) -> str | None:
        return " or ".join(f"[{s}]" for s, m in known.items() if name in m.model_fields) or None

    if section not in known:
        return _unknown(kind, section, known, home(section))
    fields = known[section].model_fields
    if key is not None and key not in fields:
        return _unknown("key", key, fields, home(key))
    return None


# -- layers -----------------------------------------------------------------------


@dataclass
class Layer:
    """Raw values by section and key, and the source (file or variable) of each."""

    values: dict[str, dict[str, Any]] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)

    def set(self, section: str, key: str, value: Any, source: str) -> None:
        self.values.setdefault(section, {})[key] = value
        self.sources[f"{section}.{key}"] = source

    def get(self, dotted: str) -> Any:
        section, _, key = dotted.partition(".")
        return self.values.get(section, {}).get(key)

    def update(self, other: Layer) -> None:
        """Let ``other`` win over this layer."""
        for section, table in other.values.items():
            for key, value in table.items():
                self.set(section, key, value, other.sources[f"{section}.{key}"])


def file_layer(schema: Schema, path: Path) -> Layer:
    """The values of one TOML file, with unknown sections and keys refused."""
    source = str(path)
    layer = Layer()
    for section, table in read_toml(path).items():
        kind = "section" if isinstance(table, dict) else "key"
        if reason := check_key(schema, section, None, kind=kind):
            raise ConfigError(source, section, reason)
        if not isinstance(table, dict):
            raise ConfigError(source, section, f"expected a table [{section}], got {show(table)}")
        for key, value in table.items():
            if reason := check_key(schema, section, key):
                raise ConfigError(source, f"{section}.{key}", reason)
            layer.set(section, key, value, source)
    return layer


def parse_text(schema: Schema, section: str, key: str, text: str, source: str) -> Any:
    """An environment or flag string as the field wants it: lists from a JSON array or
    comma-separated words; anything else stays a string for pydantic to convert."""
    info = _field(schema, section, key)
    if info is not None and _is_table(info):
        try:
            table = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                source, f"{section}.{key}", f"invalid JSON object: {exc.msg}"
            ) from None
        if not isinstance(table, dict):
            raise ConfigError(source, f"{section}.{key}", f"expected a JSON object, got {text!r}")
        return table
    if info is None or not _is_list(info):
        return text
    stripped = text.strip()
    if not stripped.startswith("["):
        return [item.strip() for item in stripped.split(",") if item.strip()]
    try:
        value = json.loads(stripped)
    except json.JSONDecodeError as exc:
        raise ConfigError(source, f"{section}.{key}", f"invalid JSON array: {exc.msg}") from None
    if not isinstance(value, list):
        raise ConfigError(source, f"{section}.{key}", f"expected a JSON array, got {stripped!r}")
    return value


def env_layer(schema: Schema, env: Mapping[str, str]) -> Layer:
    """The ``SCHEDD_<SECTION>__<KEY>`` variables (names case-insensitive).

    An empty variable counts as unset. Other ``SCHEDD_`` names (``SCHEDD_CONFIG``,
    ``SCHEDD_LOG``) are not keys and are left alone, except a near miss of a key
    variable with a single underscore, which is refused with the right name.
    """
    layer = Layer()
    near_misses = {
        f"{ENV_PREFIX}{section}_{key}".upper(): env_var(section, key)
        for section, model in sections(schema).items()
        for key in model.model_fields
    }
    for name in sorted(env):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX):
            continue
        rest = upper[len(ENV_PREFIX) :]
        if "__" not in rest:
            if upper in near_misses:
                raise ConfigError(name, None, f"not a setting (did you mean {near_misses[upper]}?)")
            continue
        section, _, key = rest.lower().partition("__")
        dotted = f"{section}.{key}"
        if reason := check_key(schema, section, key):
            raise ConfigError(name, dotted if section in sections(schema) else section, reason)
        if not env[name]:
            continue
        if dotted in layer.sources:
            raise ConfigError(name, dotted, f"also set by {layer.sources[dotted]}")
        layer.set(section, key, parse_text(schema, section, key, env[name], name), name)
    return layer


def override_layer(schema: Schema, overrides: Mapping[str, Any]) -> Layer:
    """Flag values by dotted key; None means the flag was not given."""
    layer = Layer()
    for dotted, value in overrides.items():
        if value is None:
            continue
        section, dot, key = dotted.partition(".")
        if not dot:
            raise ConfigError(COMMAND_LINE, dotted, "expected a 'section.key' name")
        if reason := check_key(schema, section, key):
            raise ConfigError(COMMAND_LINE, dotted, reason)
        if isinstance(value, str):
            value = parse_text(schema, section, key, value, COMMAND_LINE)
        elif isinstance(value, Path):
            value = str(value)
        elif isinstance(value, tuple):
            value = list(value)
        layer.set(section, key, value, COMMAND_LINE)
    return layer


def gather(
    schema: Schema,
    path: Path | None,
    env: Mapping[str, str],
    overrides: Mapping[str, Any],
    seed_variables: Callable[[Layer], Mapping[str, str]],
) -> Layer:
    """All sources merged, later winning: file, seed variables, ``SCHEDD_*``, flags.

    ``seed_variables`` maps the seed's variable names (``DATABASE_URL``) to dotted keys;
    it sees what the file, ``SCHEDD_*`` and flags say, because some of them (the broker
    URLs) apply only to the broker those choose.
    """
    merged = file_layer(schema, path) if path else Layer()
    named, flags = env_layer(schema, env), override_layer(schema, overrides)
    chosen = Layer()
    for layer in (merged, named, flags):
        chosen.update(layer)
    seed = Layer()
    for name, dotted in seed_variables(chosen).items():
        if env.get(name):
            section, _, key = dotted.partition(".")
            seed.set(section, key, env[name], name)
    for layer in (seed, named, flags):
        merged.update(layer)
    return merged


# -- reporting --------------------------------------------------------------------


def render(settings: BaseModel, *, redact: bool = True) -> str:
    """``settings`` as TOML without None values; with ``redact``, secrets and URL
    passwords show as ``***``."""
    document: dict[str, dict[str, Any]] = {}
    for name in sections(type(settings)):
        table = getattr(settings, name).model_dump(exclude_none=True)
        for key, value in table.items():
            if isinstance(value, SecretStr):
                table[key] = "***" if redact else value.get_secret_value()
            elif redact:
                table[key] = _redacted(value)
        document[name] = table
    return tomli_w.dumps(document)


def _redacted(value: Any, key: str = "") -> Any:
    """``value`` with URL passwords masked; nested tables too, where a ``url`` (a
    notification channel's: its path may be the credential) keeps only scheme and
    host."""
    if isinstance(value, dict):
        return {k: _redacted(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted(v) for v in value]
    if isinstance(value, str) and "://" in value:
        return redact_url_path(value) if key == "url" else redact_url(value)
    return value


def show(value: Any, *, secret: bool = False) -> str:
    """A short one-line rendering of a bad value that never reveals a secret."""
    if secret:
        return "***"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and "://" in value:
        value = redact_url(value)
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _one_line(text: str) -> str:
    return " ".join(text.splitlines()) if text else text


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _range_reason(bounds: dict[str, Any]) -> str:
    if "ge" in bounds and "le" in bounds:
        return f"must be between {_number(bounds['ge'])} and {_number(bounds['le'])}"
    words = {"ge": "at least", "gt": "greater than", "le": "at most", "lt": "less than"}
    return "must be " + " and ".join(
        f"{word} {_number(bounds[name])}" for name, word in words.items() if name in bounds
    )


_TYPE_REASONS = {
    **dict.fromkeys(("int_type", "int_parsing", "int_from_float"), "expected an integer"),
    **dict.fromkeys(("float_type", "float_parsing"), "expected a number"),
    **dict.fromkeys(("bool_type", "bool_parsing"), "expected true or false"),
    **dict.fromkeys(("model_type", "model_attributes_type", "dict_type"), "expected a table"),
    "string_type": "expected a string",
    "list_type": "expected a list",
    "finite_number": "expected a finite number",
}


def _reason(error: Any, info: FieldInfo | None) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    got = f", got {show(error.get('input'), secret=_is_secret(info))}"
    if kind in _TYPE_REASONS:
        return _TYPE_REASONS[kind] + got
    if kind == "literal_error":
        return f"expected {ctx.get('expected')}" + got
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return _range_reason(_bounds(info) or ctx) + got
    if kind in ("too_short", "string_too_short"):
        return "must not be empty"
    if kind == "value_error" and "error" in ctx:
        return _one_line(str(ctx["error"]))
    if kind == "missing":
        return "is required"
    return _one_line(str(error["msg"])) + got


def config_error(
    exc: ValidationError, schema: Schema, sources: Mapping[str, str], fallback: str
) -> ConfigError:
    """The first problem in ``exc`` as a ConfigError naming the source that set the key
    (``fallback`` when no source did: the file, or "defaults")."""
    error = exc.errors()[0]
    loc = [part for part in error["loc"] if isinstance(part, str | int)]
    names = [str(part) for part in loc if isinstance(part, str)]
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, SettingError) and cause.keys:
        prefix = "".join(f"{name}." for name in names)
        keys = [prefix + key for key in cause.keys]
        key = next((k for k in keys if k in sources), keys[0])
        return ConfigError(sources.get(key, fallback), key, _one_line(cause.reason))
    section, key_name = (names + ["", ""])[:2]
    # Deeper tables (notify.channels.NAME.url) are named in full; list items by index.
    dotted = ".".join(names) + "".join(f"[{p}]" for p in loc[2:] if isinstance(p, int))
    source = sources.get(f"{section}.{key_name}") or sources.get(section) or fallback
    if error["type"] == "extra_forbidden":
        reason = check_key(schema, section, key_name or None) or "unknown key"
        return ConfigError(source, dotted, reason)
    info = _field(schema, section, key_name) if key_name else None
    return ConfigError(source, dotted or None, _reason(error, info))
