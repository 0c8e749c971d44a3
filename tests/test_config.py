"""Settings: one declaration feeds the TOML file, the CLI and the README."""

from __future__ import annotations

from pathlib import Path

import pytest

from rexec import config

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_documents_every_setting_with_its_default() -> None:
    assert config.reference_table() in README.read_text()


def test_file_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "rexec.toml"
    path.write_text("[server]\nport = 7000\n[pool]\nmax = 3\nwait_timeout = 2\n")
    cfg = config.load(path, {"pool.max": 5, "server.host": None})
    assert cfg["server.port"] == 7000
    assert cfg["pool.max"] == 5
    assert cfg["pool.wait_timeout"] == 2.0
    assert cfg["server.host"] == "127.0.0.1"


@pytest.mark.parametrize(
    "text",
    [
        "[server]\nport = 'x'\n",
        "[pool]\nmode = 'thread'\n",
        "[nope]\nkey = 1\n",
        "[auth]\nrequired = 1\n",
    ],
)
def test_bad_settings_are_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "rexec.toml"
    path.write_text(text)
    with pytest.raises(config.ConfigError):
        config.load(path)


def test_safe_defaults() -> None:
    cfg = config.Config()
    assert cfg["server.host"] == "127.0.0.1"
    assert cfg["server.shutdown"] == "auth"
    assert cfg["limits.maxinbuf"] == 256 * 1024 * 1024
