"""Authentication: forged, expired and altered tokens, changed and revoked keys, scope
ceilings for minting, and keys that never leak."""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
from sqlmodel import select

from schedd.db import Database
from schedd.models import ApiKey, AuditEntry
from schedd.schemas import SCOPES
from tests.apikit import SECRET, ApiEnv, api_env, task_body


@pytest.fixture
def api(db: Database, tmp_path: Path) -> Iterator[ApiEnv]:
    with api_env(db, tmp_path) as env:
        yield env


def _token(api: ApiEnv, scopes: list[str] | None = None, **extra: object) -> str:
    body: dict[str, object] = {"scopes": scopes} if scopes is not None else {}
    body.update(extra)
    response = api.client.post("/api/tokens", json=body, headers=api.admin)
    assert response.status_code == 201, response.text
    token: str = response.json()["token"]
    return token


def _claims(api: ApiEnv, **changes: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {
        "iss": "sched",
        "sub": "key:1:admin",
        "key": _admin_id(api),
        "scopes": list(SCOPES),
        "iat": now,
        "exp": now + 600,
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _admin_id(api: ApiEnv) -> int:
    return int(api.client.get("/api/whoami", headers=api.admin).json()["key_id"])


def _status(api: ApiEnv, credential: str, path: str = "/api/tasks") -> int:
    return api.client.get(path, headers=api.auth(credential)).status_code


def test_a_token_issued_by_the_api_works_with_its_scopes_only(api: ApiEnv) -> None:
    token = _token(api, ["task.read"])
    assert _status(api, token) == 200
    assert _status(api, token, "/api/workers") == 403


def test_a_well_formed_token_signed_with_the_secret_is_accepted(api: ApiEnv) -> None:
    # The control for the forgeries below: same claims, right key.
    assert _status(api, jwt.encode(_claims(api), SECRET, algorithm="HS256")) == 200


def test_alg_none_token_is_rejected(api: ApiEnv) -> None:
    header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=")
    payload = base64.urlsafe_b64encode(json.dumps(_claims(api)).encode()).rstrip(b"=")
    token = f"{header.decode()}.{payload.decode()}."
    assert _status(api, token) == 401


def test_token_signed_with_another_key_is_rejected(api: ApiEnv) -> None:
    token = jwt.encode(_claims(api), "another-secret-" + "k" * 40, algorithm="HS256")
    assert _status(api, token) == 401


def test_token_without_exp_is_rejected(api: ApiEnv) -> None:
    assert _status(api, jwt.encode(_claims(api, exp=None), SECRET, algorithm="HS256")) == 401


def test_expired_token_is_rejected(api: ApiEnv) -> None:
    past = int(time.time()) - 10
    token = jwt.encode(_claims(api, iat=past - 600, exp=past), SECRET, algorithm="HS256")
    response = api.client.get("/api/tasks", headers=api.auth(token))
    assert response.status_code == 401
    assert response.json()["code"] == "unauthorized"


def test_token_with_altered_scopes_is_rejected(api: ApiEnv) -> None:
    token = _token(api, ["task.read"])
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["scopes"] = list(SCOPES)
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    assert _status(api, f"{header}.{forged}.{signature}", "/api/workers") == 401


def test_token_with_unknown_scope_is_rejected(api: ApiEnv) -> None:
    token = jwt.encode(_claims(api, scopes=["root"]), SECRET, algorithm="HS256")
    assert _status(api, token) == 401


def test_api_key_with_one_character_changed_is_rejected(api: ApiEnv) -> None:
    key = api.admin_key
    last = "A" if key[-1] != "A" else "B"
    assert _status(api, key) == 200
    assert _status(api, key[:-1] + last) == 401
    assert _status(api, key[:12] + ("x" if key[12] != "x" else "y") + key[13:]) == 401


def test_revoked_key_and_its_tokens_are_rejected_at_once(api: ApiEnv) -> None:
    key = api.key("task.read", "system.write")
    token = api.client.post("/api/tokens", json={}, headers=api.auth(key)).json()["token"]
    assert _status(api, key) == 200
    assert _status(api, token) == 200
    key_id = api.client.get("/api/whoami", headers=api.auth(key)).json()["key_id"]
    assert api.client.delete(f"/api/apikeys/{key_id}", headers=api.admin).status_code == 204
    assert _status(api, key) == 401
    assert _status(api, token) == 401


def test_expired_key_is_rejected(api: ApiEnv) -> None:
    soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    response = api.client.post(
        "/api/apikeys",
        json={"name": "brief", "scopes": ["task.read"], "expires_at": soon},
        headers=api.admin,
    )
    key = response.json()["key"]
    time.sleep(1.1)
    assert _status(api, key) == 401


def test_a_key_cannot_create_a_key_with_more_scopes(api: ApiEnv) -> None:
    key = api.key("system.write", "task.read")
    before = _key_count(api)
    response = api.client.post(
        "/api/apikeys",
        json={"name": "escalate", "scopes": ["task.read", "task.delete"]},
        headers=api.auth(key),
    )
    assert response.status_code == 403
    assert "task.delete" in response.json()["message"]
    assert _key_count(api) == before
    ok = api.client.post(
        "/api/apikeys", json={"name": "narrow", "scopes": ["task.read"]}, headers=api.auth(key)
    )
    assert ok.status_code == 201


def test_a_token_cannot_mint_a_token_with_more_scopes_or_a_longer_life(api: ApiEnv) -> None:
    narrow = _token(api, ["task.read"], ttl_seconds=60)
    wider = api.client.post(
        "/api/tokens", json={"scopes": ["task.read", "task.write"]}, headers=api.auth(narrow)
    )
    assert wider.status_code == 403
    child = api.client.post("/api/tokens", json={}, headers=api.auth(narrow)).json()
    assert child["scopes"] == ["task.read"]
    parent_exp = jwt.decode(narrow, options={"verify_signature": False})["exp"]
    assert jwt.decode(child["token"], options={"verify_signature": False})["exp"] <= parent_exp


def test_token_lifetime_is_bounded_by_the_configured_ttl(api: ApiEnv) -> None:
    too_long = api.settings.auth.token_ttl_seconds + 1
    response = api.client.post("/api/tokens", json={"ttl_seconds": too_long}, headers=api.admin)
    assert response.status_code == 422
    assert response.json()["field"] == "ttl_seconds"


def test_a_narrow_key_cannot_revoke_a_wider_one(api: ApiEnv) -> None:
    key = api.key("system.write")
    admin_id = _admin_id(api)
    assert api.client.delete(f"/api/apikeys/{admin_id}", headers=api.auth(key)).status_code == 403
    assert _status(api, api.admin_key) == 200
    denied = _audit(api, action="apikey.revoke")
    assert [e.outcome for e in denied] == ["denied"]


def test_last_used_at_is_recorded_without_a_write_per_request(api: ApiEnv) -> None:
    key = api.key("task.read", name="used")
    assert _last_used(api, "used") is None
    assert _status(api, key) == 200
    first = _last_used(api, "used")
    assert first is not None
    assert _status(api, key) == 200
    assert _last_used(api, "used") == first


def test_an_api_key_never_appears_after_the_response_that_created_it(
    api: ApiEnv, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    created = api.client.post(
        "/api/apikeys", json={"name": "secret-one", "scopes": ["task.read"]}, headers=api.admin
    )
    assert created.status_code == 201
    key = created.json()["key"]
    assert key.startswith("scheduler_") and len(key) == len("scheduler_") + 32
    bodies = [
        api.client.get("/api/apikeys", headers=api.admin).text,
        api.client.get("/api/apikeys?include_revoked=true", headers=api.admin).text,
        api.client.get("/api/audit", headers=api.admin).text,
        api.client.get("/api/whoami", headers=api.auth(key)).text,
        api.client.get("/api/tasks", headers=api.auth(key[:-1] + "#")).text,
        api.client.get("/api/workers", headers=api.auth(key)).text,  # 403
        api.client.post("/api/tasks", json=task_body(key), headers=api.auth(key)).text,  # 403
        api.client.post(
            "/api/tasks", json=task_body("x", executor=key), headers=api.admin
        ).text,  # 422
        api.client.post("/api/tasks", json={key: 1}, headers=api.admin).text,  # 422
    ]
    assert "secret-one" in bodies[0]
    for body in bodies:
        assert key not in body
    assert key not in caplog.text
    assert "GET /api/tasks" in caplog.text  # the access log was captured, without the key


def test_whoami_names_the_caller(api: ApiEnv) -> None:
    me = api.client.get("/api/whoami", headers=api.admin).json()
    assert me["kind"] == "api_key"
    assert me["key_name"] == "admin"
    assert me["scopes"] == list(SCOPES)
    assert me["actor"] == f"key:{me['key_id']}:admin"


def _key_count(api: ApiEnv) -> int:
    with api.db.session() as session:
        return len(session.exec(select(ApiKey)).all())


def _last_used(api: ApiEnv, name: str) -> datetime | None:
    with api.db.session() as session:
        key = session.exec(select(ApiKey).where(ApiKey.name == name)).one()
        return key.last_used_at


def _audit(api: ApiEnv, action: str) -> list[AuditEntry]:
    with api.db.session() as session:
        return list(session.exec(select(AuditEntry).where(AuditEntry.action == action)).all())
