"""The command line: config files with overrides, --help, unknown commands (bad inputs: test_bad_inputs.py)."""

import pytest

from lightpeft.cli import COMMANDS, main, parse


def run_cli(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.err.strip().splitlines()


def test_yaml_config_supplies_defaults_and_flags_override(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("head_ratio: 0.5\nrank_ratio: 0.25\nestimate_dir: est\n")
    plan_cfg, options = parse("plan", ["--config", str(config), "--rank_ratio", "0.1"])
    assert plan_cfg.head_ratio == 0.5 and plan_cfg.rank_ratio == 0.1 and options.estimate_dir == "est"


def test_unknown_command(capsys):
    code, err = run_cli(["prune-everything"], capsys)
    assert code == 2 and "unknown command" in err[-1]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_of_every_command_prints_usage(command, capsys):
    # argparse %-formats every help text: a bare `%` in one crashed `--help` with a TypeError
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: lightpeft {command}") and "--config FILE" in out
