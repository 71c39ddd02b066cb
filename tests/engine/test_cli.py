import subprocess
import sys

from click.testing import CliRunner

from engine.cli import LAZY_COMMANDS, main


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
