"""Secrets at rest: Fernet (AES-128-CBC + HMAC-SHA256) with key rotation.

``METERBRIDGE_SECRET_KEY`` holds one or more comma-separated Fernet keys; the first
encrypts, all decrypt. With the embedded database it may be left empty: a key is then
generated once into ``<data dir>/secret.key`` with mode 0600, beside the database it
unlocks.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from domain.settings import Settings, SettingsError


class SecretBox:
    def __init__(self, keys: list[str]) -> None:
        try:
            self._fernet = MultiFernet([Fernet(key.strip().encode()) for key in keys])
        except (ValueError, TypeError) as exc:
            raise SettingsError(
                "METERBRIDGE_SECRET_KEY: each key must be 32 url-safe base64-encoded bytes "
                "(make one with `meterbridge secret-key`)"
            ) from exc

    def encrypt(self, plain: str) -> str:
        return self._fernet.encrypt(plain.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise SettingsError(
                "METERBRIDGE_SECRET_KEY: a stored secret cannot be decrypted with the "
                "configured keys (was the key changed without keeping the old one?)"
            ) from exc


def generate_key() -> str:
    return Fernet.generate_key().decode()


def secret_box(settings: Settings) -> SecretBox:
    if settings.secret_key is not None and settings.secret_key.get_secret_value().strip():
        return SecretBox(settings.secret_key.get_secret_value().split(","))
    if not settings.embedded_database:
        raise SettingsError(
            "METERBRIDGE_SECRET_KEY: required with a server database, so that every "
            "process decrypts with the same key (make one with `meterbridge secret-key`)"
        )
    return SecretBox([_local_key(settings.data_dir / "secret.key")])


def _local_key(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    key = generate_key()
    with os.fdopen(fd, "w") as handle:
        handle.write(key)
    return key
