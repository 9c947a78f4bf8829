"""Text rules that the API both enforces and publishes in its OpenAPI schema.

Each rule is one regular expression, checked on input with ``re.search`` (what JSON
Schema tools do with ``pattern``), so the published schema and the server cannot
disagree: a value the schema allows is accepted, one it refuses is refused. The
validators still say in words which part of a rule a value breaks.

The patterns are plain ECMA-262 as well as Python. Each starts with ``(?!.*\\n)``:
``$`` also matches before a final newline, which would let ``"name\\n"`` through.
"""

from __future__ import annotations

import re
import sys
import unicodedata

# Characters a name may not contain: control (Cc) and format (Cf: zero-width and
# bidirectional overrides, which make a name look like another), as a character-class
# body (Unicode 14; tests/unit/test_textrules.py derives it from
# unicodedata, which at import time would cost most of a second).
HIDDEN_CATEGORIES = ("Cc", "Cf")
HIDDEN_CLASS = (
    "\\u0000-\\u001f\\u007f-\\u009f\\u00ad\\u0600-\\u0605\\u061c\\u06dd\\u070f"
    "\\u0890-\\u0891\\u08e2\\u180e\\u200b-\\u200f\\u202a-\\u202e\\u2060-\\u2064"
    "\\u2066-\\u206f\\ufeff\\ufff9-\\ufffb"
    # Astral ranges as the characters themselves: ECMA-262 has no escape for them.
    "\U000110bd\U000110cd\U00013430-\U00013438\U0001bca0-\U0001bca3"
    "\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f"
)


def hidden_class() -> str:
    """HIDDEN_CLASS computed from this interpreter's unicodedata (for the test)."""
    ranges: list[tuple[int, int]] = []
    for code in range(sys.maxunicode + 1):
        if unicodedata.category(chr(code)) in HIDDEN_CATEGORIES:
            if ranges and ranges[-1][1] == code - 1:
                ranges[-1] = (ranges[-1][0], code)
            else:
                ranges.append((code, code))
    return "".join(
        _escape(low) if low == high else f"{_escape(low)}-{_escape(high)}" for low, high in ranges
    )


def _escape(code: int) -> str:
    return f"\\u{code:04x}" if code <= 0xFFFF else chr(code)


# Python's whitespace (str.isspace, what strip() removes), spelled out: regex engines
# disagree on \s (Rust's, which schemathesis validates with, leaves out \x1c-\x1f).
SPACE_CLASS = (
    "\\t\\n\\u000b\\u000c\\r\\u001c-\\u001f \\u0085\\u00a0\\u1680\\u2000-\\u200a"
    "\\u2028\\u2029\\u202f\\u205f\\u3000"
)
NAME_PATTERN = (
    rf"^(?!.*\n)(?![\s\S]*[{HIDDEN_CLASS}])(?![{SPACE_CLASS}])(?![0-9]+$)"
    rf"[\s\S]*[^{SPACE_CLASS}]$"
)
TAG_PATTERN = rf"^(?!.*\n)[^,{SPACE_CLASS}]([^,]*[^,{SPACE_CLASS}])?$"
ENV_NAME_PATTERN = r"^(?!.*\n)(?!SCHED_)[A-Za-z_][A-Za-z0-9_]*$"
RUN_AS_PATTERN = r"^(?!.*\n)[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,31})?$"
WORKING_DIR_PATTERN = r"^(?!.*\n)(?![\s\S]*\x00)(?![\s\S]*/\.\.?(/|$))/[\s\S]*$"


def _any_case(word: str) -> str:
    return "".join(f"[{c.upper()}{c}]" for c in word)


# A log level as the service reads it: any case, surrounding whitespace ignored; empty
# is no filter.
LEVEL_PATTERN = (
    rf"^(?!.*\n)(?:[{SPACE_CLASS}]*"
    + "(?:"
    + "|".join(_any_case(w) for w in ("debug", "info", "warning", "error", "critical"))
    + rf")[{SPACE_CLASS}]*)?$"
)


def space_class() -> str:
    """SPACE_CLASS computed from this interpreter (for the test)."""
    codes = [c for c in range(sys.maxunicode + 1) if chr(c).isspace()]
    return "".join(chr(c) for c in codes)


def matches(pattern: str, value: str) -> bool:
    return re.search(pattern, value) is not None


def check_name(value: str) -> str:
    if matches(NAME_PATTERN, value):
        return value
    if not value:
        raise ValueError("must not be empty")
    if value != value.strip() or value[:1].isspace() or value[-1:].isspace():
        raise ValueError("must not start or end with whitespace")
    if value.isascii() and value.isdigit():
        raise ValueError("must not be only digits (digits refer to task ids)")
    raise ValueError("must not contain control or invisible format characters")
