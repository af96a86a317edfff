"""HMAC-SHA256 signatures on adapter payloads: only a holder of the key can change what
the scorers run.

Every record on ``adapter-weights`` and ``adapter-registry`` carries a header
``selfheal-signature: v1:<hex>``, the HMAC-SHA256 of ``purpose NUL record-key NUL value``
under the shared key. The purpose (``adapter`` or ``snapshot``) and the record key are
signed with the payload, so a signed record cannot be replayed on the other topic or
under another bundle's key. A reader checks the signature before it parses the payload.

The key comes from ``SELFHEAL_ADAPTER_KEY`` or from the file ``SELFHEAL_ADAPTER_KEY_FILE``
names (a Docker or Kubernetes secret); at least 32 bytes (``selfheal keygen`` prints one).
It is never logged, and ``repr`` does not show it.

>>> signer = Signer(b"k" * 32)
>>> headers = signer.headers("adapter", "bundle-1", b"weights")
>>> signer.verify("adapter", "bundle-1", b"weights", headers)
>>> signer.verify("adapter", "bundle-2", b"weights", headers)
Traceback (most recent call last):
...
shared.errors.WeightsError: signature does not match: forged, corrupt, or signed with another key
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path

from shared.errors import ConfigError, WeightsError

HEADER = "selfheal-signature"
KEY_ENV = "SELFHEAL_ADAPTER_KEY"
KEY_FILE_ENV = "SELFHEAL_ADAPTER_KEY_FILE"
MIN_KEY_BYTES = 32
ADAPTER = "adapter"  # purpose of records on adapter-weights
SNAPSHOT = "snapshot"  # purpose of records on adapter-registry
_SCHEME = b"v1:"
Headers = Sequence[tuple[str, str | bytes | None]] | Mapping[str, str | bytes | None] | None


def new_key() -> str:
    """A fresh random key (64 hex characters)."""
    return secrets.token_hex(32)


class Signer:
    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ConfigError(
                f"the adapter signing key must be at least {MIN_KEY_BYTES} bytes (got {len(key)})"
            )
        self._key = key

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Signer:
        """The key from ``SELFHEAL_ADAPTER_KEY`` or ``SELFHEAL_ADAPTER_KEY_FILE``; a clear error
        when neither is set (a service must not run with weights anyone can forge)."""
        env = os.environ if env is None else env
        if env.get(KEY_ENV):
            return cls(env[KEY_ENV].encode())
        if env.get(KEY_FILE_ENV):
            path = Path(env[KEY_FILE_ENV])
            try:
                return cls(path.read_bytes().strip())
            except OSError as exc:
                raise ConfigError(f"{KEY_FILE_ENV}={path}: cannot read the key: {exc.strerror}") from exc
        raise ConfigError(
            f"no adapter signing key: set {KEY_ENV} (or {KEY_FILE_ENV}) to the same secret for the "
            "healer and every scorer; `selfheal keygen` prints a new one"
        )

    def __repr__(self) -> str:
        return "Signer(key=***)"

    def sign(self, purpose: str, key: str | bytes, value: bytes) -> bytes:
        k = key.encode() if isinstance(key, str) else key
        mac = hmac.new(self._key, purpose.encode() + b"\0" + k + b"\0" + value, hashlib.sha256)
        return _SCHEME + mac.hexdigest().encode()

    def headers(self, purpose: str, key: str | bytes, value: bytes) -> list[tuple[str, bytes]]:
        """The record headers that carry the signature."""
        return [(HEADER, self.sign(purpose, key, value))]

    def verify(
        self,
        purpose: str,
        key: str | bytes | None,
        value: bytes | None,
        headers: Headers,
    ) -> None:
        """Return if the record carries a valid signature; raise WeightsError saying why not."""
        pairs = headers.items() if isinstance(headers, Mapping) else headers or []
        given = [v for k, v in pairs if k == HEADER]
        if not given:
            raise WeightsError("unsigned payload: no selfheal-signature header")
        if key is None or value is None:
            raise WeightsError("a signed record needs a key and a value")
        sig = given[-1]
        sig = sig.encode() if isinstance(sig, str) else sig or b""
        if not hmac.compare_digest(sig, self.sign(purpose, key, value)):
            raise WeightsError("signature does not match: forged, corrupt, or signed with another key")
