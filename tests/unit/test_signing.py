"""The adapter signing key: where it comes from, what it covers, and that it is never shown."""

from __future__ import annotations

import pytest

from shared.errors import ConfigError, WeightsError
from shared.signing import ADAPTER, HEADER, KEY_ENV, KEY_FILE_ENV, SNAPSHOT, Signer, new_key

KEY = "k" * 40


def test_the_key_comes_from_the_environment_or_a_file(tmp_path):
    assert Signer.from_env({KEY_ENV: KEY}).sign(ADAPTER, "b", b"v") == Signer(KEY.encode()).sign(
        ADAPTER, "b", b"v"
    )
    (tmp_path / "key").write_text(KEY + "\n")
    from_file = Signer.from_env({KEY_FILE_ENV: str(tmp_path / "key")})
    assert from_file.sign(ADAPTER, "b", b"v") == Signer(KEY.encode()).sign(ADAPTER, "b", b"v")


def test_no_key_short_key_or_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="no adapter signing key"):
        Signer.from_env({})
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        Signer.from_env({KEY_ENV: "short"})
    with pytest.raises(ConfigError, match="cannot read the key"):
        Signer.from_env({KEY_FILE_ENV: str(tmp_path / "absent")})


def test_the_key_is_never_shown():
    signer = Signer(KEY.encode())
    assert KEY not in repr(signer) and KEY not in str(signer)
    assert len(new_key()) == 64 and new_key() != new_key()


def test_the_signature_covers_purpose_key_and_value():
    s = Signer(KEY.encode())
    headers = s.headers(ADAPTER, "bundle", b"payload")
    s.verify(ADAPTER, "bundle", b"payload", headers)
    s.verify(ADAPTER, b"bundle", b"payload", dict(headers))  # bytes key, headers as a mapping
    for purpose, key, value in (
        (SNAPSHOT, "bundle", b"payload"),
        (ADAPTER, "other", b"payload"),
        (ADAPTER, "bundle", b"payloaD"),
    ):
        with pytest.raises(WeightsError, match="does not match"):
            s.verify(purpose, key, value, headers)
    with pytest.raises(WeightsError, match="unsigned"):
        s.verify(ADAPTER, "bundle", b"payload", [("other", b"x")])
    with pytest.raises(WeightsError, match="does not match"):
        Signer(b"x" * 32).verify(ADAPTER, "bundle", b"payload", headers)
    assert headers[0][0] == HEADER and headers[0][1].startswith(b"v1:")
