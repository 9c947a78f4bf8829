"""The state one schedctl invocation carries: environment, global options, the client.

The root callback fills it from the global options; commands reach it with
``Cli.of(ctx)`` and ask it for the client (built on first use, closed at exit), the
settings, and the output format.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from schedctl.client import Client
from schedctl.discovery import Endpoint, find_endpoint
from schedctl.env import Environment
from schedctl.output import Output

if TYPE_CHECKING:
    from rich.console import RenderableType

    from schedd.config import Settings


class UsageProblem(Exception):
    """A command line that parses but makes no sense (--api with --db): exit 2."""


@dataclass
class Options:
    """The global options, after environment variables were applied."""

    api: str | None = None
    api_source: str = "--api"
    token: str | None = None
    token_source: str = "--token"
    db: str | None = None
    db_from_command_line: bool = False
    config: Path | None = None
    output: Output = Output.table
    debug: bool = False

    @property
    def direct(self) -> bool:
        """Direct mode: --db on the command line, or DATABASE_URL without an API URL."""
        return bool(self.db) and (self.db_from_command_line or not self.api)


@dataclass
class Cli:
    env: Environment
    options: Options = field(default_factory=Options)
    _client: Client | None = None
    _settings: Settings | None = None

    @classmethod
    def of(cls, ctx: typer.Context) -> Cli:
        state = ctx.find_root().obj
        assert isinstance(state, Cli), "schedctl commands run under the root app"
        return state

    def settings(self) -> Settings:
        """The configuration (file, environment, --db), loaded once."""
        if self._settings is None:
            from schedd.config import load_settings  # 0.5 s: only when needed

            overrides = {"database.url": self.options.db} if self.options.db else None
            self._settings = load_settings(self.options.config, self.env.environ, overrides)
        return self._settings

    def endpoint(self) -> Endpoint:
        o = self.options
        return find_endpoint(o.api, o.api_source, o.token, o.token_source, self.settings)

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = self._connect()
        return self._client

    def _connect(self) -> Client:
        if self.options.direct:
            from schedctl.direct_client import DirectClient

            return DirectClient(self.settings())
        from schedctl.http_client import HttpClient

        endpoint = self.endpoint()
        return HttpClient(endpoint.url, endpoint.token, token_source=endpoint.token_source)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- output -----------------------------------------------------------------------

    def output(self, override: Output | None = None) -> Output:
        return override or self.options.output

    def json(self, override: Output | None = None) -> bool:
        return self.output(override) is Output.json

    def show(
        self,
        data: Any,
        view: Callable[[Any], RenderableType | Iterable[RenderableType]],
        output: Output | None = None,
    ) -> None:
        """Print ``data`` as the output format says (a table through ``view``, or JSON)."""
        from schedctl import render  # Rich: only for a command that prints

        render.emit(self.env, self.output(output), data, view)

    def say(self, message: str, output: Output | None = None, *, style: str = "") -> None:
        """A line for people on stdout; nothing in JSON mode (scripts get the data)."""
        if not self.json(output):
            self.env.console().print(message, style=style, markup=False)

    def warn(self, message: str) -> None:
        """A problem that did not stop the command, on stderr (in every output format)."""
        self.env.console(stderr=True).print(f"warning: {message}", style="yellow", markup=False)

    def note(self, message: str) -> None:
        """Progress or a hint on stderr (never mixed into stdout's data)."""
        self.env.console(stderr=True).print(message, style="dim", markup=False)
