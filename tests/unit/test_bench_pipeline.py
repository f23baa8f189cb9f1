"""tools/bench_pipeline.py: CPU per thread, by thread name."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from ewaste_stream.testing import load_tool


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_thread_cpu_names_a_busy_thread_and_keeps_it_after_it_ends():
    bench = load_tool("bench_pipeline")
    busy_done, release = threading.Event(), threading.Event()

    def spin() -> None:
        while time.thread_time() < 0.2:  # burn 0.2 s of this thread's CPU
            pass
        busy_done.set()
        release.wait()

    worker = threading.Thread(target=spin, name="busy")
    worker.start()
    busy_done.wait()
    seen: dict = {}
    bench.thread_cpu(seen)
    release.set()
    worker.join()
    bench.thread_cpu(seen)  # the ended thread keeps its last figure and its name
    by_name = bench._by_name(seen)
    assert by_name["busy"] >= 0.15
    assert "MainThread" in by_name  # Python threads go by their names
    assert list(by_name.values()) == sorted(by_name.values(), reverse=True)


@pytest.mark.parametrize("text, ok", [("10:6", (10, 6)), ("2:0", (2, 0)), ("10:10", None), ("6", None), ("a:b", None)])
def test_drop_pattern_is_checked_when_the_arguments_are_read(text, ok, capsys):
    bench = load_tool("bench_pipeline")
    if ok is not None:
        assert bench._args(["--video", "v.mp4", "--drop", text]).drop == ok
    else:
        with pytest.raises(SystemExit) as e:
            bench._args(["--video", "v.mp4", "--drop", text])
        assert e.value.code == 2 and "--drop" in capsys.readouterr().err


@pytest.mark.parametrize("setting, key", [("batching.flips=[horizontal]", "batching.flips"),
                                          ('batching.flips=["sideways"]', "batching.flips[0]"),
                                          ("batching.no_such_key=1", "batching.no_such_key")])
def test_a_bad_setting_is_named_with_exit_2_before_any_video_is_read(setting, key, tmp_path, capsys):
    bench = load_tool("bench_pipeline")
    assert bench.run(["--video", str(tmp_path / "absent.mp4"), "--set", setting]) == 2
    err = capsys.readouterr().err
    assert key in err and "(command line)" in err
    # nor made: --make would write a video first
    assert bench.run(["--make", str(tmp_path / "made" / "belt"), "--set", setting]) == 2
    assert key in capsys.readouterr().err and not (tmp_path / "made").exists()


def test_a_list_setting_is_read_as_json():
    bench = load_tool("bench_pipeline")
    cfg = bench._config(bench._args(["--video", "v.mp4", "--set", 'batching.flips=["both"]']))
    assert cfg.batching.flips == ("both",)
