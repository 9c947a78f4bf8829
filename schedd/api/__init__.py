"""The HTTP API: ``create_app()`` (app.py), routes per resource, auth dependencies
(deps.py), the error mapping (errors.py) and the api role (role.py)."""
