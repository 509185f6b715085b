"""Splitting py-spy's raw stacks into parts (bench/_pyspy.py)."""

from __future__ import annotations

from bench._pyspy import parts
from bench.bench_gateway import SERVER_PARTS

UVICORN = "RequestResponseCycle.run_asgi (uvicorn/protocols/http/httptools_impl.py:420)"
ROUTE = "infer (control/server/routes/inference.py:49)"
POOL = "Thread.run (threading.py:982)"
STACKS = [
    ([UVICORN, ROUTE, "decode (engine/codecs.py:87)", "decode (engine/_arrow_ipc.py:31)"], 12),
    ([UVICORN, ROUTE, "Gateway.infer (control/gateway.py:194)"], 8),
    ([UVICORN, "Router.__call__ (starlette/routing.py:683)"], 30),
    (["Sender._send_produce_req (aiokafka/producer/sender.py:288)"], 19),
    ([POOL, "LogAgent._write (streams/log_agent.py:266)"], 7),
    ([POOL, "_worker (concurrent/futures/thread.py:81)"], 50),
    (["Runner.run (asyncio/runners.py:118)"], 40),
]
RAW = "\n".join(f"{';'.join(frames)} {count}" for frames, count in STACKS)
"""py-spy's raw format: a thread's stack, outermost frame first, and its sample count."""


def test_each_stack_goes_to_the_first_part_it_holds_and_waiting_ones_to_none() -> None:
    assert parts(RAW, SERVER_PARTS) == {
        "request decode (Arrow)": 12,  # beneath the HTTP frames: the first rule that matches
        "gateway (admission, request record, produce)": 8,
        "HTTP (uvicorn, starlette, fastapi, weir's middlewares, route)": 30,
        "Kafka client tasks (aiokafka)": 19,
        "log agent (result rows, Parquet)": 7,
    }  # an idle pool thread and uvloop's C loop count nothing
