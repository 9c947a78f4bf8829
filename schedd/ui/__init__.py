"""The web dashboard, served by the api role under ``/ui/`` (``api.ui_enabled``).

Server-rendered pages (Jinja2 templates and inline SVG charts) from files packaged in
the wheel; a little JavaScript (``static/ui.js``) only localises times and follows a
running run's output. Sign-in, sessions and CSRF: :mod:`schedd.ui.security`.
"""

from __future__ import annotations

from fastapi import FastAPI


def install(app: FastAPI) -> None:
    """Add the dashboard's routes, error pages and headers to the API ``app``."""
    from schedd.ui import actions, pages, routing, security

    for module in (actions, pages):
        app.router.routes.extend(module.router.routes)
    routing.install_errors(app)
    app.add_middleware(security.UiHeaders)
