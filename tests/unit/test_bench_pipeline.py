"""tools/bench_pipeline.py: CPU per thread, by thread name."""

from __future__ import annotations

import importlib.util
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _tool():
    spec = importlib.util.spec_from_file_location("bench_pipeline", ROOT / "tools" / "bench_pipeline.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_thread_cpu_names_a_busy_thread_and_keeps_it_after_it_ends():
    bench = _tool()
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
