import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine import server
from engine.cli import LAZY_COMMANDS, main
from engine.runtime import Runtime
from tests.conftest import make_settings


def test_every_lazy_command_resolves() -> None:
    context = main.make_context("resistry", ["db"])
    for name in LAZY_COMMANDS:
        command = main.get_command(context, name)
        assert command is not None, name


def test_help_lists_all_commands() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for name in [*LAZY_COMMANDS, "db", "serve"]:
        assert f"  {name} " in result.output


def test_stats_command_does_not_load_the_web_stack() -> None:
    code = (
        "import sys; from engine.cli import main\n"
        "try:\n    main(['stats', '--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('flask', 'sqlalchemy', 'matplotlib') if m in sys.modules))"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert output.strip().splitlines()[-1] == "[]"


def test_bad_config_is_a_one_line_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "config.toml"
    config.write_text("[experiments]\np_best_threshold = 1.5\n")
    result = CliRunner().invoke(main, ["--config", str(config), "db", "current"])
    assert result.exit_code == 1
    assert "experiments.p_best_threshold" in result.output
    assert "Traceback" not in result.output


def test_a_bad_database_url_is_a_one_line_error() -> None:
    env = {"RESISTRY_DATABASE_URL": "notaurl", "RESISTRY_SECRET_KEY": "s" * 32}
    result = CliRunner(env=env).invoke(main, ["db", "current"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.startswith("Error: RESISTRY_DATABASE_URL: database.url is not")
    assert len(result.output.strip().splitlines()) == 1


def test_upgrading_to_an_unknown_revision_is_a_one_line_error(tmp_path: Path) -> None:
    settings = make_settings(f"sqlite:///{tmp_path / 'cli.sqlite3'}")
    result = CliRunner().invoke(
        main, ["db", "upgrade", "--revision", "nope"], obj=Runtime(settings)
    )
    assert result.exit_code == 1, result.output
    assert result.output == "Error: Can't locate revision identified by 'nope'\n"


def test_serve_needs_at_least_one_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[dict] = []
    monkeypatch.setattr(server, "serve", lambda settings, **options: started.append(options))
    runtime = Runtime(make_settings("sqlite://"))
    result = CliRunner().invoke(main, ["serve", "--workers", "0"], obj=runtime)
    assert result.exit_code == 2 and "--workers" in result.output
    assert started == []  # gunicorn with no worker would listen on nothing, forever
