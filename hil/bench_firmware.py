"""Firmware download throughput and memory for ``python -m hil.bench`` (part ``firmware``).

A 200 MB sparse file (zeros, never held in memory) is served by ``http.server`` on
127.0.0.1 from a thread of this process. ``firmware_update.download.download`` and a
plain ``urllib`` read-to-file (``shutil.copyfileobj``) fetch it alternately, five times
each; the medians are compared. About 10 s.

Keys:
    firmware_download_ratio: median download() time / median urllib time (target <= 1.2).
        Neither fsyncs: download() leaves the image in the page cache like urllib does
        (the firmware manager journals the image's SHA-256 with Downloaded and checks it
        after a restart instead; that hashing pass is not part of this figure).
    firmware_download_ratio_durable: the same against urllib followed by an fsync (the
        cost a durable download would have on this disk).
    firmware_download_mb_per_s: download() throughput (median run).
    firmware_download_peak_rss_mb: peak RSS of the process during the first download()
        (VmHWM after resetting it through /proc/self/clear_refs, else VmRSS sampled every
        2 ms); target: within 10 MB of the idle RSS.
    firmware_idle_rss_mb: RSS right before that download.
"""

from __future__ import annotations

import asyncio
import functools
import http.server
import os
import shutil
import statistics
import tempfile
import threading
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from firmware_update.download import download

SIZE_BYTES = 200 * 1024 * 1024
ROUNDS = 5


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class _RssSampler:
    """Samples VmRSS every 2 ms from a thread (the download runs in another thread)."""

    def __init__(self) -> None:
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.002):
            self.peak_kb = max(self.peak_kb, _status_kb("VmRSS"))

    def __enter__(self) -> _RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_kb = max(self.peak_kb, _status_kb("VmRSS"))


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return


def _urllib_fetch(url: str, dest: Path) -> None:
    with urllib.request.urlopen(url, timeout=30) as response, dest.open("wb") as f:
        shutil.copyfileobj(response, f)


def _urllib_fetch_fsync(url: str, dest: Path) -> None:
    with urllib.request.urlopen(url, timeout=30) as response, dest.open("wb") as f:
        shutil.copyfileobj(response, f)
        f.flush()
        os.fsync(f.fileno())


async def _timed(fn: Callable[[], Awaitable[object]]) -> float:
    t0 = time.perf_counter()
    await fn()
    return time.perf_counter() - t0


async def bench_firmware_download() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="evse-bench-fw-") as tmp_name:
        tmp = Path(tmp_name)
        served = tmp / "served"
        served.mkdir()
        with (served / "fw.bin").open("wb") as f:
            f.truncate(SIZE_BYTES)  # sparse: no disk space, no memory
        handler = functools.partial(_QuietHandler, directory=str(served))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{server.server_address[1]}/fw.bin"
        try:
            await asyncio.to_thread(_urllib_fetch, url, tmp / "warmup.bin")  # page cache
            (tmp / "warmup.bin").unlink()
            idle_kb = _status_kb("VmRSS")
            hwm_reset = _reset_peak_rss()
            with _RssSampler() as sampler:
                first = await _timed(lambda: download(url, tmp / "agent.bin", max_bytes=SIZE_BYTES))
            peak_kb = max(sampler.peak_kb, _status_kb("VmHWM") if hwm_reset else 0)
            assert (tmp / "agent.bin").stat().st_size == SIZE_BYTES
            agent_s: list[float] = [first]
            plain_s: list[float] = []
            durable_s: list[float] = []
            agent_run = functools.partial(download, url, tmp / "agent.bin", max_bytes=SIZE_BYTES)
            plain_run = functools.partial(asyncio.to_thread, _urllib_fetch, url, tmp / "p.bin")
            durable_run = functools.partial(
                asyncio.to_thread, _urllib_fetch_fsync, url, tmp / "p.bin"
            )
            for i in range(ROUNDS):  # alternate the order: drift hits both sides alike
                runs: list[tuple[list[float], Callable[[], Awaitable[object]]]] = [
                    (plain_s, plain_run),
                    (durable_s, durable_run),
                ]
                if i < ROUNDS - 1:
                    runs.insert(0 if i % 2 else 2, (agent_s, agent_run))
                for times, run in runs:
                    for name in ("agent.bin", "p.bin"):
                        (tmp / name).unlink(missing_ok=True)
                    times.append(await _timed(run))
        finally:
            server.shutdown()
            server.server_close()
            thread.join()
    agent = statistics.median(agent_s)
    plain = statistics.median(plain_s)
    durable = statistics.median(durable_s)
    return {
        "firmware_download_ratio": round(agent / plain, 3),
        "firmware_download_ratio_durable": round(agent / durable, 3),
        "firmware_download_mb_per_s": round(SIZE_BYTES / 1e6 / agent, 1),
        "firmware_download_peak_rss_mb": round(peak_kb / 1024, 1),
        "firmware_idle_rss_mb": round(idle_kb / 1024, 1),
    }
