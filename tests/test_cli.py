"""The dispatcher: --config merging, unknown keys, one-line errors."""
from polyground.cli import main


def test_config_file_after_global_store_option(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("n: 4\nseed: 3\nfamily: locate_red\n")
    code = main(["--store", str(tmp_path / "s"), "build", "tasks", "--source", "synthetic",
                 "--name", "t", "--config", str(cfg), "--quiet"])
    assert code == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("t@")


def test_flag_overrides_config(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("n: 4\nseed: 3\nfamily: locate_red\n")
    main(["--store", str(tmp_path / "s"), "build", "tasks", "--source", "synthetic", "--name", "t",
          "--config", str(cfg), "--n", "2", "--quiet"])
    main(["--store", str(tmp_path / "s"), "data", "show", "t", "--json"])
    assert '"rows": 2' in capsys.readouterr().out


def test_unknown_config_key_is_one_line_error(tmp_path, capsys):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("bogus: 1\n")
    code = main(["--store", str(tmp_path / "s"), "build", "tasks", "--source", "synthetic", "--name", "t",
                 "--config", str(cfg)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == f"error: config {cfg}: unknown option(s) bogus"


def test_unknown_ref_is_one_line_error(tmp_path, capsys):
    code = main(["--store", str(tmp_path / "s"), "data", "show", "nothing"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and err[0].startswith("error:")
