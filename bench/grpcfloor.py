"""G1: the Python gRPC floor on this machine. A grpc.aio server process with one empty unary
method (bytes in, bytes out: no protobuf, no work), called as M1 calls the master: the same
load generators' pattern, secure as M1 (the master's certificate, mutual TLS, a worker
certificate per channel) (one channel per simulated worker, each calling every 5 s on a fixed
schedule with a random phase). Its CPU time per call is what any Python gRPC server pays per
heartbeat; M1's "CPU per heartbeat" row is the master's cost against it."""

from __future__ import annotations

import asyncio
import multiprocessing
import pathlib
import time
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection
from typing import Any

import grpc

from bench.fleet import INTERVAL, Window, loadgen_note, run_load
from bench.model import Measure
from bench.plan import Sizes
from bench.procs import Procs
from bench.secure import Peer, master_channel
from bench.simworkers import beat_on_schedule
from bench.ui import Step, Ui
from cloudai.rpc.server import CHANNEL_OPTIONS
from cloudai.security.pki import Pki
from cloudai.security.tls import Tls

__all__ = ["compare_to_floor", "run_grpc_floor"]

METHOD = "/bench.Floor/Empty"
STREAM = "/bench.Floor/Stream"  # one long-lived bidi stream per caller: a message each way
_TLS = "mutual TLS, a certificate each"
BASELINE_S = 5.0  # the idle server's CPU, subtracted from its CPU per call


def _empty(request: bytes, context: Any) -> bytes:
    return b""


async def _echo(requests: Any, context: Any) -> Any:
    async for _ in requests:
        yield b""


def server_main(pki_dir: str | None, conn: Connection) -> None:
    asyncio.run(_serve(pki_dir, conn))


async def _serve(pki_dir: str | None, conn: Connection) -> None:
    server = grpc.aio.server(options=CHANNEL_OPTIONS)
    handler = grpc.method_handlers_generic_handler(
        "bench.Floor",
        {
            "Empty": grpc.unary_unary_rpc_method_handler(_empty),
            "Stream": grpc.stream_stream_rpc_method_handler(_echo),
        },
    )
    server.add_generic_rpc_handlers((handler,))
    if pki_dir is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:  # as the master's worker port: its certificate, mutual TLS
        tls = Tls.for_master(Pki(pathlib.Path(pki_dir)))
        port = server.add_secure_port("127.0.0.1:0", tls.server_credentials(True))
    await server.start()
    conn.send(("port", port))
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, conn.recv)  # "stop"
    await server.stop(1.0)


def floor_loadgen_main(peer: Peer, ids: list[str], interval: float, conn: Connection) -> None:
    asyncio.run(_floor_loadgen(peer, ids, interval, conn, stream=False))


def stream_loadgen_main(peer: Peer, ids: list[str], interval: float, conn: Connection) -> None:
    asyncio.run(_floor_loadgen(peer, ids, interval, conn, stream=True))


async def _floor_loadgen(
    peer: Peer, ids: list[str], interval: float, conn: Connection, stream: bool
) -> None:
    channels = [master_channel(peer, w) for w in ids]  # each with its own certificate
    sends: list[Callable[[], Awaitable[None]]] = []
    try:
        took: list[float] = []
        for channel in channels:  # connect each channel, as registration does for M1
            p = time.perf_counter()
            await channel.unary_unary(METHOD)(b"", timeout=60, wait_for_ready=True)
            took.append((time.perf_counter() - p) * 1000)
            sends.append(_on_stream(channel) if stream else _unary(channel))
        conn.send(("ready", {"register_ms": took}))
        loop = asyncio.get_running_loop()
        _, start, end = await loop.run_in_executor(None, conn.recv)
        beats: list[tuple[float, float]] = []
        errors: list[str] = []
        await asyncio.gather(
            *(beat_on_schedule(send, interval, start, end, beats, errors) for send in sends)
        )
        conn.send(("done", {"beats": beats, "errors": errors[:20], "error_count": len(errors)}))
    finally:
        for c in channels:
            await c.close()


def _unary(channel: grpc.aio.Channel) -> Callable[[], Awaitable[None]]:
    call = channel.unary_unary(METHOD)

    async def send() -> None:
        await call(b"", timeout=60)

    return send


def _on_stream(channel: grpc.aio.Channel) -> Callable[[], Awaitable[None]]:
    call = channel.stream_stream(STREAM)()

    async def send() -> None:
        await call.write(b"")
        await call.read()

    return send


def m2_call_rate(sizes: Sizes) -> float:
    """The calls per second M1 with M2 on top makes the master serve: heartbeats, submits,
    and per cancel the call and the worker's two stop update calls (signalled; exited and
    removed together)."""
    busy = max(sizes.m_window - sizes.m_idle, 1.0)
    return sizes.m_workers / INTERVAL + sizes.m_submit / busy + 3 * sizes.m_cancel / busy


def run_grpc_floor(sizes: Sizes, ui: Ui, secure: bool = True) -> list[Measure]:
    step = ui.step("G1     gRPC floor", int(3 * sizes.g1_window))
    with Procs(secure=secure) as procs:  # only for its PKI: certs init in a temporary home
        try:
            pki = str(procs.pki_dir) if procs.pki_dir else None
            out = _run(sizes, step, pki, INTERVAL, "")
            # The same, at the rate of calls M1 with M2 puts on the master.
            busy = sizes.g1_workers / m2_call_rate(sizes)
            out += _run(sizes, step, pki, busy, " at M1+M2's rate")
            # M1's rate as messages on one long-lived stream per caller (a heartbeat stream).
            return out + _run(sizes, step, pki, INTERVAL, " on a stream", stream_loadgen_main)
        finally:
            step.done()


def _run(
    sizes: Sizes,
    step: Step,
    pki_dir: str | None,
    interval: float,
    suffix: str,
    loadgen: Callable[..., None] = floor_loadgen_main,
) -> list[Measure]:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    server = ctx.Process(target=server_main, args=(pki_dir, child), name="bench-g1-server")
    server.start()
    try:
        if not parent.poll(60):
            raise TimeoutError("the G1 server did not start in 60 s")
        _, port = parent.recv()
        step.say(f"{sizes.g1_workers} callers, every {interval:.2g} s")
        ids = [f"g1-{i:04d}" for i in range(sizes.g1_workers)]
        if server.pid is None:
            raise RuntimeError("the G1 server process has no pid")
        w = run_load(
            Peer(f"127.0.0.1:{port}", pki_dir),
            server.pid,
            ids,
            2,
            sizes.g1_window,
            0.0,
            step,
            target=loadgen,
            baseline=min(BASELINE_S, sizes.g1_window / 2),
            interval=interval,
        )
        parent.send("stop")
    finally:
        server.join(10)
        if server.is_alive():
            server.kill()
            server.join(5)
    return _measures(
        w, sizes, pki_dir is not None, interval, suffix, loadgen is not floor_loadgen_main
    )


def _measures(
    w: Window, sizes: Sizes, secure: bool, interval: float, suffix: str, stream: bool
) -> list[Measure]:
    calls = w.beats_in(w.start, w.end)
    per_call = w.cpu_us_per_call(w.start, w.end)
    gross = w.cpu_us_per_call(w.start, w.end, net=False) or 0.0
    gens, _ = loadgen_note(w)
    how = "one empty message each way on its bidi stream" if stream else "one empty unary call"
    what = (
        f"{sizes.g1_workers} channels ({_TLS if secure else 'plaintext'}), {how} "
        f"each every {interval:.3g} s ({sizes.g1_workers / interval:.0f}/s), {sizes.g1_window:g} s"
    )
    errors = f"; {w.hb_error_count} calls failed ({w.hb_errors[:2]})" if w.hb_errors else ""
    return [
        Measure(
            "G1",
            f"G1 gRPC floor call{suffix}",
            f"{'a stream message' if stream else 'an empty unary call'} (grpc.aio), {what}",
            "ms",
            calls,
            headline="p99",
            note=f"{gens}{errors}",
        ),
        Measure(
            "G1",
            f"G1 gRPC floor CPU per call{suffix}",
            f"the empty server's CPU time per call, {what}, less its idle CPU",
            "µs",
            value=per_call,
            headline="value",
            extra={"n": len(calls), "rate": sizes.g1_workers / interval},
            note="mean server CPU "
            f"{sum(w.cpu_in(w.start, w.end)) / max(len(w.cpu), 1):.1f}% of a core, idle "
            f"{w.idle_pct:.1f}%; {gross:.0f} µs per call with the idle CPU included",
        ),
    ]


def compare_to_floor(measures: list[Measure]) -> None:
    """M1's CPU per heartbeat row names the floor's CPU per call of the same run."""
    rows = {m.label: m for m in measures}
    m1, g1 = rows.get("M1 CPU per heartbeat"), rows.get("G1 gRPC floor CPU per call")
    if m1 is None or m1.value is None or g1 is None or g1.value is None or g1.value <= 0:
        return
    m1.note += (
        f"; the master's cost per heartbeat is {m1.value:.0f} µs against a Python gRPC floor of "
        f"{g1.value:.0f} µs per empty call (G1, both less their idle CPU): "
        f"{m1.value / g1.value:.1f}×"
    )
    busy, floor = (
        rows.get("M1 master CPU with M2"),
        rows.get("G1 gRPC floor CPU per call at M1+M2's rate"),
    )
    if busy is None or floor is None or floor.value is None or "rate" not in floor.extra:
        return
    rate = float(floor.extra["rate"])
    busy.note += (
        f"; the gRPC floor alone, {rate:.0f} empty calls/s (the calls M1+M2 makes the master "
        f"serve), is {floor.value * rate / 1e4:.0f}% of a core (G1 at M1+M2's rate: "
        f"{floor.value:.0f} µs per call)"
    )
