"""Settings: defaults that run, a TOML file, environment overrides, and clear refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from config.settings import load_settings

SAMPLE = Path(__file__).resolve().parent.parent / "config" / "settings.sample.toml"


def test_defaults_are_embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CC_CONFIG", raising=False)
    settings = load_settings()
    assert settings.store.url.startswith("sqlite://") and settings.bus.url == "memory://"
    assert settings.server.port == 8080


def test_sample_file_loads_and_matches_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CC_CONFIG", raising=False)
    monkeypatch.delenv("CC_CONFIG", raising=False)
    defaults = load_settings()
    from_file = load_settings(SAMPLE)
    assert from_file == defaults


def test_file_then_environment_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "cc.toml"
    config.write_text('[server]\nport = 9000\nhost = "0.0.0.0"\n[store]\nurl = "postgresql://cc@db/cc"\n')
    monkeypatch.setenv("CC_SERVER__PORT", "9100")
    settings = load_settings(config)
    assert settings.server.port == 9100  # environment wins over the file
    assert settings.server.host == "0.0.0.0"  # the file wins over the default
    assert settings.store.url == "postgresql://cc@db/cc"


def test_bad_values_are_refused_with_the_key_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CC_CONFIG", raising=False)
    monkeypatch.setenv("CC_STORE__URL", "mysql://nope")
    with pytest.raises(ValidationError, match=r"store\.url"):
        load_settings()
    monkeypatch.delenv("CC_STORE__URL")
    with pytest.raises(FileNotFoundError):
        load_settings(tmp_path / "missing.toml")
    typo = tmp_path / "typo.toml"
    typo.write_text("[server]\nprot = 1\n")
    with pytest.raises(ValidationError, match="prot"):
        load_settings(typo)
