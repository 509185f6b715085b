"""Bench-only: where a weir process's main thread spends its time, sampled (not weir code).

Put this folder on PYTHONPATH with WEIR_BENCH_SAMPLE_DIR set: every Python process started
with it (the server, and the workers it starts) samples its main thread every ~0.5 ms and,
at exit, writes `<dir>/<pid>.json`: CPU seconds by (asyncio task's coroutine, innermost
package), each sample weighted by the CPU time the main thread used since the last.
With WEIR_BENCH_CPROFILE_DIR set instead, weir's workers (only) run under cProfile between
two SIGUSR2s and then write `<dir>/<pid>.prof`.
"""

import os

if os.environ.get("WEIR_BENCH_SAMPLE_DIR"):
    import sys

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from _sample_main import install  # noqa: E402  (bench/_sample_main.py)

    install(os.environ["WEIR_BENCH_SAMPLE_DIR"])
elif os.environ.get("WEIR_BENCH_CPROFILE_DIR"):
    import sys

    if "control.worker_main" in sys.orig_argv:
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        from _sample_main import profile  # noqa: E402

        profile(os.environ["WEIR_BENCH_CPROFILE_DIR"])
