from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from engine.settings import SettingsError, load_settings

ENV = {"RESISTRY_SECRET_KEY": "s" * 32}


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_project_config_loads_with_documented_defaults() -> None:
    settings = load_settings(environ=ENV)
    assert settings.experiments.p_best_threshold == 0.95
    assert settings.experiments.prior_alpha == 1.0
    assert settings.database.url.startswith("sqlite:////")  # resolved to an absolute path
    assert settings.database.url.endswith("instance/resistry.sqlite3")
    assert settings.secret_key == "s" * 32


def test_every_setting_in_config_toml_has_a_comment(project_root: Path) -> None:
    lines = (project_root / "config.toml").read_text().splitlines()
    for number, line in enumerate(lines):
        if "=" in line and not line.startswith("#"):
            assert lines[number - 1].startswith("#"), f"config.toml:{number + 1} lacks a comment"


def test_environment_overrides_file() -> None:
    settings = load_settings(
        environ={
            **ENV,
            "RESISTRY_DATABASE_URL": "postgresql://u@h/db",
            "SENDGRID_API_KEY": "SG.x",
            "RESISTRY_EXPERIMENTS__BURN_IN": "500",
            "RESISTRY_SENDGRID__VERIFY_WEBHOOK_SIGNATURE": "false",
        }
    )
    assert settings.database.url == "postgresql://u@h/db"
    assert settings.sendgrid.api_key == "SG.x"
    assert settings.experiments.burn_in == 500
    assert settings.sendgrid.verify_webhook_signature is False


def test_unknown_key_names_key_and_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[experiments]\nburnin = 3\n")
    with pytest.raises(SettingsError, match=r"config\.toml: unknown key experiments\.burnin"):
        load_settings(path, environ=ENV)


def test_unknown_section(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[experiment]\nburn_in = 3\n")
    with pytest.raises(SettingsError, match=r"unknown section \[experiment\]"):
        load_settings(path, environ=ENV)


def test_wrong_type_names_key(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[experiments]\nburn_in = "many"\n')
    with pytest.raises(SettingsError, match=r"experiments\.burn_in must be int, got 'many'"):
        load_settings(path, environ=ENV)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("RESISTRY_EXPERIMENTS__BURN_IN", "abc", "experiments.burn_in must be int, got 'abc'"),
        ("RESISTRY_EXPERIMENTS__BURNIN", "5", "unknown key experiments.burnin"),
        ("RESISTRY_WEB__TRUSTED_PROXIES", "9", "web.trusted_proxies must be in [0, 5]"),
    ],
)
def test_a_bad_environment_override_names_the_variable_not_the_file(
    tmp_path: Path, variable: str, value: str, message: str
) -> None:
    path = write_config(tmp_path, "")
    with pytest.raises(SettingsError) as raised:
        load_settings(path, environ={**ENV, variable: value})
    assert str(raised.value).startswith(f"{variable}: {message}")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("notaurl", "database.url is not a database URL"),
        ("postgresql://ada:hunter2@db:notaport/x", "database.url is not a database URL"),
        ("foo://x", "database.url names an unknown database driver 'foo'"),
    ],
)
def test_a_bad_database_url_stops_start_up(tmp_path: Path, url: str, message: str) -> None:
    path = write_config(tmp_path, "")
    with pytest.raises(SettingsError) as raised:
        load_settings(path, environ={**ENV, "RESISTRY_DATABASE_URL": url})
    assert str(raised.value).startswith(f"RESISTRY_DATABASE_URL: {message}")
    assert "hunter2" not in str(raised.value)


def test_bool_is_not_an_int(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[experiments]\nburn_in = true\n")
    with pytest.raises(SettingsError, match=r"experiments\.burn_in"):
        load_settings(path, environ=ENV)


def test_impossible_threshold(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[experiments]\np_best_threshold = 1.5\n")
    with pytest.raises(SettingsError, match=r"config\.toml: experiments\.p_best_threshold"):
        load_settings(path, environ=ENV)


def test_bad_timezone(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[scheduler]\ntimezone = "Mars/Olympus"\n')
    with pytest.raises(SettingsError, match=r"scheduler\.timezone 'Mars/Olympus'"):
        load_settings(path, environ=ENV)


def test_bad_environment_value_is_named(tmp_path: Path) -> None:
    path = write_config(tmp_path, "")
    with pytest.raises(SettingsError, match=r"experiments\.floor must be float"):
        load_settings(path, environ={**ENV, "RESISTRY_EXPERIMENTS__FLOOR": "lots"})


def test_invalid_toml(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[experiments\n")
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings(path, environ=ENV)


def test_secret_key_file_created_once_when_env_missing(tmp_path: Path) -> None:
    path = write_config(tmp_path, "")
    first = load_settings(path, environ={}).secret_key
    second = load_settings(path, environ={}).secret_key
    assert len(first) == 64 and first == second
    assert (tmp_path / "instance" / "secret_key").stat().st_mode & 0o077 == 0


def test_a_short_secret_key_stops_start_up(tmp_path: Path) -> None:
    path = write_config(tmp_path, "")
    with pytest.raises(
        SettingsError, match="RESISTRY_SECRET_KEY: the secret key must be at least 32"
    ):
        load_settings(path, environ={"RESISTRY_SECRET_KEY": "x" * 31})
    key_file = tmp_path / "instance" / "secret_key"
    key_file.parent.mkdir()
    key_file.write_text("  \n")  # an emptied file, and a blank variable that falls back to it
    with pytest.raises(SettingsError, match=f"{key_file}: the secret key must be at least 32"):
        load_settings(path, environ={"RESISTRY_SECRET_KEY": " "})


def test_processes_starting_together_share_one_new_secret_key(tmp_path: Path) -> None:
    path = write_config(tmp_path, "")
    with ThreadPoolExecutor(8) as pool:
        keys = set(pool.map(lambda _: load_settings(path, environ={}).secret_key, range(32)))
    assert len(keys) == 1
    assert [p.name for p in (tmp_path / "instance").iterdir()] == ["secret_key"]  # no drafts left


def test_settings_are_frozen() -> None:
    settings = load_settings(environ=ENV)
    with pytest.raises(AttributeError):
        settings.experiments.burn_in = 3  # type: ignore[misc]
