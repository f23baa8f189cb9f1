"""Config loading: errors name the key and YAML line; the shipped YAML files are valid and complete."""

from __future__ import annotations

import re
import sys
import textwrap
from pathlib import Path

import pytest
from pydantic import BaseModel

from ewaste_stream.cli import main
from ewaste_stream.config import (REPO_ROOT, Config, ConfigError, check_paths, load_config, parse_setting,
                                  settings_overrides, yaml_key_lines)


@pytest.fixture(autouse=True)
def _restore_logging():
    """cli.main() points loguru at this test's captured stderr; point it back afterwards."""
    yield
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level="INFO")

GOOD = """\
line: l1
cameras:
  - id: cam0
    source: "0"
publish:
  hwm: 100
"""


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(textwrap.dedent(text))
    return p


# (yaml, key named in the error, its line, phrase in the message)
BAD = [
    ("lin: l1\n", "lin", 1, "did you mean 'line'"),
    ("publish:\n  hwn: 5\n", "publish.hwn", 2, "did you mean 'hwm'"),
    ("cameras:\n  - id: a\n    sorce: '1'\n", "cameras[0].sorce", 3, "did you mean 'source'"),
    ("publish:\n  zzz: 5\n", "publish.zzz", 2, "allowed here: endpoint"),
    ("publish:\n  hwm: lots\n", "publish.hwm", 2, "valid integer"),
    ("publish:\n  heartbeat_s: -1\n", "publish.heartbeat_s", 2, "greater than 0"),
    ("cameras:\n  - id: a\n    queue_size: -3\n", "cameras[0].queue_size", 3, "greater than or equal to 1"),
    ("cameras:\n  - id: a\n    source: rtps://cam/1\n", "cameras[0].source", 3, "unknown URL scheme 'rtps'"),
    ("cameras: cam0\n", "cameras", 1, "valid list"),
    ("cameras:\n  - id: a\n    reconnect_min_s: 5\n    reconnect_max_s: 1\n", "cameras[0]", 2, "reconnect_max_s"),
    ("cameras:\n  - id: a\n  - id: a\n", "(top level)", None, "camera ids must be unique"),
    ("publish:\n  endpoint: localhost:5556\n", "publish.endpoint", 2, "tcp://HOST:PORT"),
    ("publish:\n  curve_server_secret: k.key_secret\n", "publish", 1, "both curve_server_secret"),
    ("metrics:\n  listen: 9108\n", "metrics.listen", 2, "valid string"),
    ("metrics:\n  listen: 'localhost'\n", "metrics.listen", 2, "HOST:PORT"),
    ("decision:\n  lanes:\n    - name: a\n      y_max: 1.5\n", "decision.lanes[0].y_max", 4, "less than or equal to 1"),
    ("decision:\n  lanes:\n    - y_max: 0.5\n", "decision.lanes[0].name", 3, "Field required"),
    ("model:\n  backend: tensorrt\n", "model.backend", 2, "'auto', 'onnx' or 'torch'"),
    ("fsync: always\n", "fsync", 1, "unknown key"),
    ("batching:\n  flip_below: 1.5\n", "batching.flip_below", 2, "less than or equal to 1"),
    ("batching:\n  flips: [horizontal, sideways]\n", "batching.flips[1]", 2, "'horizontal', 'vertical' or 'both'"),
    ("batching:\n  flips: [vertical, vertical]\n", "batching.flips", 2, "each mirror once"),
    ("batching:\n  flips: []\n", "batching.flips", 2, "at least 1"),
]


@pytest.mark.parametrize("text, key, line, phrase", BAD)
def test_bad_values_name_key_and_line(tmp_path, text, key, line, phrase):
    with pytest.raises(ConfigError) as exc:
        load_config(_write(tmp_path, text))
    probs = exc.value.problems
    assert len(probs) == 1, str(exc.value)
    assert (probs[0].key, probs[0].line) == (key, line)
    assert phrase in str(exc.value) and str(tmp_path / "c.yaml") in str(exc.value)


@pytest.mark.parametrize("text, phrase", [
    ("line: [unclosed\n", "not valid YAML: line 2"),
    ("- a\n- b\n", "top level must be a mapping"),
    ("line: a\nline: b\n", "line 2: line: key given twice"),
])
def test_unreadable_yaml(tmp_path, text, phrase):
    with pytest.raises(ConfigError, match=re.escape(phrase)):
        load_config(_write(tmp_path, text))


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_several_problems_are_all_reported(tmp_path):
    with pytest.raises(ConfigError) as exc:
        load_config(_write(tmp_path, "lin: a\npublish:\n  hwm: -1\n"))
    assert [(p.key, p.line) for p in exc.value.problems] == [("lin", 1), ("publish.hwm", 3)]


def test_overrides_win_and_their_errors_say_command_line(tmp_path):
    p = _write(tmp_path, GOOD)
    cfg = load_config(p, {"publish": {"endpoint": None}})
    assert cfg.publish.endpoint is None and cfg.publish.hwm == 100  # deep merge keeps siblings
    with pytest.raises(ConfigError) as exc:
        load_config(p, {"publish": {"hwm": -1}})
    assert exc.value.problems[0].origin == "command line" and "(command line) publish.hwm" in str(exc.value)


def test_check_paths_names_missing_files_with_lines(tmp_path):
    p = _write(tmp_path, f"model:\n  dir: {tmp_path / 'nomodel'}\ncameras:\n  - id: a\n    source: {tmp_path}/x.mp4\n")
    problems = check_paths(load_config(p), yaml_key_lines(p))
    assert [(x.key, x.line) for x in problems] == [("model.dir", 2), ("cameras[0].source", 5)]
    assert "does not exist" in str(problems[0])


def test_check_paths_names_an_unwritable_decision_log_and_log_file(tmp_path):
    (tmp_path / "afile").write_text("")
    (tmp_path / "adir").mkdir()
    p = _write(tmp_path, f"publish:\n  decisions_log: {tmp_path / 'afile' / 'd.jsonl'}\n"
                         f"logging:\n  file: {tmp_path / 'adir'}\n")
    problems = check_paths(load_config(p), yaml_key_lines(p))
    assert [(x.key, x.line) for x in problems] == [("publish.decisions_log", 2), ("logging.file", 4)]
    assert "is a file, so" in str(problems[0]) and "catch-up" in str(problems[0])
    assert "is a folder" in str(problems[1])
    ok = _write(tmp_path, f"publish:\n  decisions_log: {tmp_path / 'new' / 'deeper' / 'd.jsonl'}\n"
                          f"logging:\n  file: {tmp_path / 'adir' / 'x.log'}\n")
    assert check_paths(load_config(ok)) == []  # missing folders are made at start


def _leaf_keys(model: type[BaseModel]) -> set[str]:
    out = set()
    for name, field in model.model_fields.items():
        out.add(name)
        for arg in (field.annotation, *getattr(field.annotation, "__args__", ())):
            for inner in (arg, *getattr(arg, "__args__", ())):
                if isinstance(inner, type) and issubclass(inner, BaseModel):
                    out |= _leaf_keys(inner)
    return out


@pytest.mark.parametrize("name", ["default.yaml", "example-line.yaml"])
def test_shipped_configs_are_valid(name):
    cfg = load_config(REPO_ROOT / "config" / name)
    assert isinstance(cfg, Config)


def test_default_yaml_documents_every_key():
    text = (REPO_ROOT / "config" / "default.yaml").read_text()
    missing = [k for k in sorted(_leaf_keys(Config)) if not re.search(rf"(?m)^\s*(- )?(# )?{k}:", text)]
    assert not missing, f"config/default.yaml lacks keys: {missing}"


def test_check_config_cli_exit_codes(tmp_path, capsys):
    good = _write(tmp_path, GOOD)
    assert main(["check-config", "--no-paths", str(good)]) == 0
    assert "ok:" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("cameras:\n  - id: a\n    queue_size: -3\n")
    assert main(["check-config", str(bad)]) == 2
    assert "line 3: cameras[0].queue_size" in capsys.readouterr().err


def test_check_config_does_not_print_a_camera_password(tmp_path, capsys):
    cfg = tmp_path / "line.yaml"
    cfg.write_text("cameras:\n  - id: top\n    source: rtsp://sorter:s3cr3t@10.0.0.5:554/stream1\n")
    assert main(["check-config", "--no-paths", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "top=rtsp://sorter:***@10.0.0.5:554/stream1" in out and "s3cr3t" not in out


def test_default_yaml_values_are_the_schema_defaults():
    """config/default.yaml documents the defaults; it must not silently override them."""
    import yaml

    schema = Config().model_dump(mode="json")
    schema.pop("model")  # model.dir is left to the schema (the shipped model's absolute path)
    text = yaml.safe_load((REPO_ROOT / "config" / "default.yaml").read_text())
    text.pop("model", None)
    diffs = []

    def walk(a, b, path):
        if isinstance(a, dict) and isinstance(b, dict):
            for k in a:
                walk(a[k], b.get(k, "<missing>"), f"{path}{k}.")
        elif a != b and not (isinstance(a, list) and isinstance(b, list) and list(map(str, a)) == list(map(str, b))):
            diffs.append(f"{path[:-1]}: schema {a!r}, yaml {b!r}")

    walk(schema, text, "")
    assert not diffs, "config/default.yaml differs from the schema defaults:\n" + "\n".join(diffs)


@pytest.mark.parametrize("text, path, value", [
    ("vote.min_confidence=0.7", ("vote", "min_confidence"), 0.7),
    ("batching.flip_below=null", ("batching", "flip_below"), None),
    ('batching.flips=["horizontal"]', ("batching", "flips"), ["horizontal"]),
    ("model.precision=fp32", ("model", "precision"), "fp32"),  # not JSON: the bare string
    ("line=L2", ("line",), "L2"),
    ("decision.line_position=", ("decision", "line_position"), ""),
])
def test_a_command_line_setting_is_read_as_json_else_as_a_string(text, path, value):
    assert parse_setting(text) == (path, value)


@pytest.mark.parametrize("text", ["vote", "=1", "vote.=1", ".x=1", "a.b.c=1"])
def test_a_setting_not_of_the_form_section_key_value_is_refused(text):
    with pytest.raises(ValueError, match="SECTION.KEY=VALUE"):
        parse_setting(text)


def test_settings_nest_and_the_last_of_a_key_wins_over_the_file(tmp_path):
    over = settings_overrides(["vote.min_confidence=0.7", "vote.min_margin=0.1", "vote.min_confidence=0.8"])
    assert over == {"vote": {"min_confidence": 0.8, "min_margin": 0.1}}
    cfg = load_config(_write(tmp_path, "vote:\n  min_confidence: 0.5\n  min_views: 1\n"), over)
    assert (cfg.vote.min_confidence, cfg.vote.min_margin, cfg.vote.min_views) == (0.8, 0.1, 1)
