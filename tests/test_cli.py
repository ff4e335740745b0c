"""The command line: config files with overrides, and one-line errors with exit status 2."""

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


@pytest.mark.parametrize("argv, expected", [
    (["plan", "--estimate_dir", "/nowhere", "--plan_path", "PLAN"], "not an estimate directory"),
    (["plan", "--head_ratio", "1.5", "--estimate_dir", "x", "--plan_path", "PLAN"], "[0, 1)"),
    (["train", "--model_name_or_path", "/no/such/model", "--output_dir", "OUT"], "does not exist"),
    (["plan", "--config", "/no/such.yaml"], "does not exist"),
    (["train", "--output_dir", "OUT", "--bogus_flag", "1"], "unknown arguments"),
])
def test_bad_input_is_one_line_with_status_2(argv, expected, capsys, tmp_path):
    argv = [a.replace("PLAN", str(tmp_path / "p.json")).replace("OUT", str(tmp_path / "out")) for a in argv]
    code, err = run_cli(argv, capsys)
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err
    assert not (tmp_path / "p.json").exists() and not (tmp_path / "out").exists()


def test_unknown_config_keys_are_named(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("head_ration: 0.5\n")
    code, err = run_cli(["plan", "--config", str(config)], capsys)
    assert code == 2 and "head_ration" in err[0]


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
