"""Arguments and options several commands share, defined once so they read the same."""

from __future__ import annotations

from typing import Annotated

import typer

from schedctl import completion
from schedctl.render import Output

OutputOpt = Annotated[
    Output | None,
    typer.Option(
        "--output",
        "-o",
        case_sensitive=False,
        help="table or json (default: the global --output).",
        show_default=False,
    ),
]
PageOpt = Annotated[int, typer.Option("--page", metavar="N", min=1, help="Page number, from 1.")]
SizeOpt = Annotated[
    int, typer.Option("--size", metavar="N", min=1, max=500, help="Items per page (at most 500).")
]
TaskRef = Annotated[
    str,
    typer.Argument(
        metavar="TASK",
        help="Task id or name.",
        show_default=False,
        autocompletion=completion.task_names,
    ),
]
RunId = Annotated[
    int,
    typer.Argument(
        metavar="RUN", help="Run id.", show_default=False, autocompletion=completion.run_ids
    ),
]
WorkerId = Annotated[str, typer.Argument(metavar="WORKER", help="Worker id.", show_default=False)]
