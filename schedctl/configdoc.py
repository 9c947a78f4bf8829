"""The documentation of schedd's configuration keys, and annotated config files.

The keys, their types and defaults come from the settings models (``schedd.config``);
what each key means comes from the annotated reference file ``etc/schedd.toml``, the
comment block above each key. ``schedctl config init`` and the schedd.toml(5) man page
are both built from these two sources, so neither can drift from the code, and a test
fails when a key of the models has no description in the reference.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import tomli_w
from pydantic import BaseModel

import schedd
from schedd import __version__
from schedd.config import Settings
from schedd.configfile import sections
from schedd.errors import ConfigError

REFERENCE_NAME = "schedd.toml"
_SECTION = re.compile(r"^\[([a-z_]+)\]\s*$")
_KEY = re.compile(r"^([a-z_]+)\s*=")
_EXAMPLE = re.compile(r"^#\s?([a-z_]+)\s*=")


@dataclass
class KeyDoc:
    lines: list[str]  # the comment text, without "# "
    example: str | None = None  # a commented-out "key = value" line, as written
    active: bool = False  # set (not commented out) in the reference


@dataclass
class SectionDoc:
    lines: list[str] = field(default_factory=list)
    keys: dict[str, KeyDoc] = field(default_factory=dict)


@dataclass
class Reference:
    header: list[str]
    sections: dict[str, SectionDoc]


def reference_path() -> Path:
    """The annotated reference: installed with the package, or in the source tree."""
    try:
        packaged = resources.files("schedd.etc").joinpath(REFERENCE_NAME)
        if packaged.is_file():
            return Path(str(packaged))
    except ModuleNotFoundError:
        pass
    return Path(schedd.__file__).resolve().parent.parent / "etc" / REFERENCE_NAME


def _text(line: str) -> str:
    return line[1:].removeprefix(" ") if line.startswith("#") else line


def parse_reference(text: str) -> Reference:
    """Comment blocks of the reference, by section and key.

    The first comment block is the file's header; a block directly above ``[section]``
    describes the section, one directly above ``key = ...`` (or above a commented-out
    ``# key = ...`` example, which ends its block) describes the key.
    """
    header: list[str] | None = None
    result: dict[str, SectionDoc] = {}
    pending: list[str] = []
    current: SectionDoc | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            if header is None and current is None and pending:
                header = [_text(x) for x in pending]
            pending = []
        elif match := _SECTION.match(line):
            current = result.setdefault(match.group(1), SectionDoc())
            current.lines = [_text(x) for x in pending]
            pending = []
        elif current is not None and (match := _KEY.match(line)):
            current.keys[match.group(1)] = KeyDoc([_text(x) for x in pending], active=True)
            pending = []
        elif current is not None and (match := _EXAMPLE.match(line)):
            current.keys[match.group(1)] = KeyDoc([_text(x) for x in pending], example=line)
            pending = []
        elif line.startswith("#"):
            pending.append(line)
    return Reference(header or [], result)


def load_reference() -> Reference:
    path = reference_path()
    try:
        return parse_reference(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(str(path), None, "the annotated reference file is missing") from None


def missing_docs(reference: Reference) -> list[str]:
    """Keys of the settings models that the reference does not describe."""
    missing: list[str] = []
    for name, model in sections(Settings).items():
        section = reference.sections.get(name, SectionDoc())
        missing.extend(f"{name}.{key}" for key in model.model_fields if key not in section.keys)
    return missing


def defaults() -> dict[str, dict[str, Any]]:
    """The built-in default of every key that has a fixed one (env-free)."""
    result: dict[str, dict[str, Any]] = {}
    for name, model in sections(Settings).items():
        table: dict[str, Any] = {}
        for key, info in model.model_fields.items():
            if info.is_required() or info.default_factory is not None:
                factory = info.default_factory
                if factory is None or key in ("data_dir", "python_interpreter"):
                    continue
                value = factory()  # type: ignore[call-arg]
            else:
                value = info.default
            if value is not None:
                table[key] = value
        result[name] = table
    return result


def toml_value(value: Any) -> str:
    if isinstance(value, BaseModel):
        value = value.model_dump()
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # "30", as people write it; a float key accepts it
    return tomli_w.dumps({"v": value}).partition("=")[2].strip()


def annotated_toml(values: dict[str, dict[str, Any]], reference: Reference | None = None) -> str:
    """A complete config file: every key with its comment block; keys in ``values`` set,
    keys the reference leaves commented out kept as its commented example."""
    reference = reference or load_reference()
    fixed = defaults()
    out = [f"# {line}".rstrip() for line in reference.header]
    out += ["#", f"# Written by `schedctl config init` (sched {__version__})."]
    for name, model in sections(Settings).items():
        section = reference.sections.get(name, SectionDoc())
        out += ["", ""]
        out += [f"# {line}".rstrip() for line in section.lines]
        out.append(f"[{name}]")
        chosen = values.get(name, {})
        for key in model.model_fields:
            doc = section.keys.get(key, KeyDoc([]))
            out.append("")
            out += [f"# {line}".rstrip() for line in doc.lines]
            if key in chosen:
                out.append(f"{key} = {toml_value(chosen[key])}")
            elif doc.active and key in fixed[name]:
                out.append(f"{key} = {toml_value(fixed[name][key])}")
            else:
                out.append(doc.example or f"# {key} =")
    return "\n".join(out) + "\n"


def parse_assignment(text: str) -> tuple[str, str, Any]:
    """``section.key=value`` from ``--set``; the value is read as TOML when it is one
    (``9090``, ``true``, ``["shell"]``), else taken as a string."""
    dotted, sep, raw = text.partition("=")
    section, dot, key = dotted.strip().partition(".")
    known = sections(Settings)
    if not sep or not dot:
        raise ConfigError("--set", None, f"expected SECTION.KEY=VALUE, got {text!r}")
    if section not in known or key not in known[section].model_fields:
        raise ConfigError("--set", dotted.strip(), "unknown key (see schedd.toml(5))")
    try:
        value: Any = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return section, key, value
