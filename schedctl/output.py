"""The output formats (``--output``): a module of its own so that the root command
can declare the option without importing Rich (:mod:`schedctl.render` prints)."""

from __future__ import annotations

from enum import StrEnum


class Output(StrEnum):
    table = "table"
    json = "json"
