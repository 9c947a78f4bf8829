"""``[auth]``: the JWT secret and token lifetime."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from schedd.configsections.base import Section

MIN_JWT_SECRET_BYTES = 32
# How to make one, for the errors that ask for a secret.
JWT_SECRET_HINT = "generate one: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"


class AuthSettings(Section):
    jwt_secret: SecretStr | None = None
    token_ttl_seconds: int = Field(3600, ge=1, le=31_536_000)

    @field_validator("jwt_secret")
    @classmethod
    def _strong_secret(cls, value: SecretStr | None) -> SecretStr | None:
        # DESIGN section 8: HS256 secrets of at least 32 bytes. Refused here so a weak
        # secret stops the start with the file/variable that held it.
        if value is not None:
            size = len(value.get_secret_value().encode())
            if size < MIN_JWT_SECRET_BYTES:
                raise ValueError(
                    f"must be at least {MIN_JWT_SECRET_BYTES} bytes, got {size} ({JWT_SECRET_HINT})"
                )
        return value
