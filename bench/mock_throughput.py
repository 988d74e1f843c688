"""Mock upstream status checks: throughput, and latency with a heavy render in flight.

The mock runs as its own process (`python -m mock_upstream`, render workers: cores - 1); the load
comes from other processes over loopback keep-alive connections (raw HTTP/1.1, so the client
costs little next to the server). Each status check alternates between an HD redraw
`check_task_status` (multipart POST, its 3 s cache off so every check does the work) and a
task/pic poll (GET) of finished tasks.

1. Without renders: closed loop, every connection sends its next check as soon as the last is
   answered, for `--seconds` after a warm-up. Goal: >= 2,000 checks/s.
2. With one heavy render in flight all along (an HD seamless task of a 1000x1000 PNG with every
   expansion, the issue's example, submitted again as soon as one finishes): open loop at 200
   checks/s, each latency measured from its scheduled send time. Goal: p99 <= 50 ms.

Prints the machine's load with the numbers; the last line is the summary; the exit code is
non-zero when a goal is missed. Measure from an otherwise idle machine for stable numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import multiprocessing
import os
import subprocess
import sys
import threading
import time

import httpx
from PIL import Image, ImageDraw

GOAL_CHECKS_PER_S = 2000.0
GOAL_P99_MS = 50.0
RENDER_RATE = 200.0


def small_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 40, 40)).save(buffer, "PNG")
    return buffer.getvalue()


def heavy_png() -> bytes:
    """1000x1000, photo-like (noise over shapes: PNG cannot squeeze it, so every encode is slow)."""
    image = Image.new("RGB", (1000, 1000), (230, 230, 230))
    draw = ImageDraw.Draw(image)
    for i in range(0, 1000, 40):
        draw.ellipse((i, (i * 7) % 1000, i + 300, (i * 7) % 1000 + 200), fill=(i % 255, 90, 200 - i % 200))
    noise = Image.effect_noise((1000, 1000), 40).convert("RGB")
    image = Image.blend(image, noise, 0.3)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def requests(host: str, hd_task: str, pic_task: str) -> list[bytes]:
    boundary = "benchboundary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="user_key"\r\n\r\ntest-key\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="task_id"\r\n\r\n{hd_task}\r\n'
        f"--{boundary}--\r\n"
    ).encode()
    hd = (
        f"POST /api/check_task_status HTTP/1.1\r\nHost: {host}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    pic = f"GET /task/{pic_task} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer sk-xxxx\r\n\r\n".encode()
    return [hd, pic]


# ---- the load (runs in other processes) ------------------------------------------------------
class _Client(asyncio.Protocol):
    """One keep-alive connection: sends a check, parses the answer, sends the next (or waits
    for its scheduled time). A protocol, not streams: the client must cost little."""

    def __init__(
        self, reqs: list[bytes], start: float, stop: float, interval: float | None, offset: float
    ) -> None:
        self.reqs, self.start, self.stop, self.interval = reqs, start, stop, interval
        self.due = start + offset
        self.buffer = b""
        self.sent = 0
        self.began = 0.0
        self.latencies: list[float] = []
        self.errors = 0
        self.done = asyncio.get_running_loop().create_future()
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.next()

    def next(self) -> None:
        now = time.perf_counter()
        if self.interval is not None:
            if self.due >= self.stop:
                self.finish()
                return
            if self.due > now:
                self.loop.call_later(self.due - now, self.send, self.due)
            else:
                self.send(self.due)
            self.due += self.interval
        elif now >= self.stop:
            self.finish()
        else:
            self.send(now)

    def send(self, began: float) -> None:
        self.began = began
        self.transport.write(self.reqs[self.sent % len(self.reqs)])  # type: ignore[attr-defined]
        self.sent += 1

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buffer[:end].lower()
        at = head.find(b"content-length:")
        length = (
            int(head[at + 15 : head.find(b"\r\n", at) if head.find(b"\r\n", at) > 0 else None])
            if at >= 0
            else 0
        )
        if len(self.buffer) < end + 4 + length:
            return
        self.buffer = self.buffer[end + 4 + length :]
        if not head.startswith(b"http/1.1 200"):
            self.errors += 1
        if self.began >= self.start:
            self.latencies.append(time.perf_counter() - self.began)
        self.next()

    def finish(self) -> None:
        self.transport.close()
        if not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


def load_process(
    args: tuple[str, int, list[bytes], int, float, float, float | None, int], out: object
) -> None:
    host, port, reqs, connections, start, stop, rate, _index = args

    async def run() -> list[tuple[int, list[float], int]]:
        interval = None if rate is None else connections / rate
        loop = asyncio.get_running_loop()
        clients = []
        for i in range(connections):
            offset = (interval or 0) * i / connections
            _, client = await loop.create_connection(
                lambda offset=offset: _Client(reqs, start, stop, interval, offset), host, port
            )
            clients.append(client)
        await asyncio.gather(*(c.done for c in clients))
        return [(len(c.latencies), c.latencies, c.errors) for c in clients]

    results = asyncio.run(run())
    out.send(  # type: ignore[attr-defined]
        (sum(r[0] for r in results), [x for r in results for x in r[1]], sum(r[2] for r in results))
    )


def run_load(
    host: str, port: int, reqs: list[bytes], *, processes: int, connections: int, seconds: float,
    warmup: float, rate: float | None,
) -> tuple[float, list[float], int]:  # fmt: skip
    """Checks/s, latencies (s) and errors over `seconds` after `warmup`, from `processes` processes."""
    context = multiprocessing.get_context("spawn")
    start = time.perf_counter() + warmup + 1.0  # the processes start first
    stop = start + seconds
    pipes, procs = [], []
    for index in range(processes):
        parent, child = context.Pipe(duplex=False)
        share = None if rate is None else rate / processes
        proc = context.Process(
            target=load_process, args=((host, port, reqs, connections, start, stop, share, index), child)
        )
        proc.start()
        pipes.append(parent)
        procs.append(proc)
    results = [pipe.recv() for pipe in pipes]
    for proc in procs:
        proc.join()
    count = sum(r[0] for r in results)
    return count / seconds, [x for r in results for x in r[1]], sum(r[2] for r in results)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


# ---- the heavy render kept in flight --------------------------------------------------------
class HeavyRenders:
    """Submits the heavy seamless task again whenever the last one has been rendered."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.image = heavy_png()
        self.stop = threading.Event()
        self.done = 0
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=300, trust_env=False) as client:
            while not self.stop.is_set():
                client.post(
                    "/api/submit_seamless_task",
                    data={"user_key": "test-key", "fit": "0.3", "direction": "0", "expand_top": "0.3",
                          "expand_bottom": "0.3", "expand_left": "0.3", "expand_right": "0.3"},
                    files={"input_image": ("big.png", self.image, "image/png")},
                ).raise_for_status()  # fmt: skip
                client.get("/__mock/renders", params={"wait_idle": 1, "timeout": 60}).raise_for_status()
                self.done += 1

    def running(self, client: httpx.Client) -> int:
        return int(client.get("/__mock/renders").json()["started"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=15.0, help="measured seconds per phase")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--processes", type=int, default=1, help="load processes")
    parser.add_argument("--connections", type=int, default=8, help="connections per load process")
    args = parser.parse_args()

    server = subprocess.Popen(
        [sys.executable, "-m", "mock_upstream", "--port", "0", "--frozen-clock", "--log-level", "warning"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        base_url = server.stdout.readline().split()[-1]
        host_port = base_url.removeprefix("http://")
        host, port = host_port.split(":")
        with httpx.Client(base_url=base_url, timeout=60, trust_env=False) as client:
            client.post("/__mock/config", json={"hd_status_cache_seconds": 0}).raise_for_status()
            client.post(
                "/__mock/accounts",
                json={"name": "default", "hd_remaining_count": 10**9, "taskpic_balance": 10**9},
            ).raise_for_status()
            image = small_png()
            hd_task = client.post(
                "/api/submit_face_enhance_task",
                data={"user_key": "test-key"},
                files={"input_image": ("b.png", image, "image/png")},
            ).json()["task_id"]
            pic_task = client.post(
                "/task/pic/segmentation",
                headers={"Authorization": "Bearer sk-xxxx"},
                data={"sync": "1"},
                files={"image_file": ("b.png", image, "image/png")},
            ).json()["data"]["task_id"]
            status = {"user_key": "test-key", "task_id": hd_task}
            assert client.post("/api/check_task_status", data=status).json()["status"] == "Completed"
            workers = client.get("/__mock/renders").json()["workers"]
        reqs = requests(host_port, hd_task, pic_task)
        cores = len(os.sched_getaffinity(0))
        load_before = os.getloadavg()
        print(
            f"machine: {cores} cores, load average "
            f"{load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}"
        )
        print(f"server: one process, {workers} render worker(s); load: {args.processes} process(es) x "
              f"{args.connections} connections")  # fmt: skip

        rate, lat, errors = run_load(
            host, int(port), reqs, processes=args.processes, connections=args.connections,
            seconds=args.seconds, warmup=args.warmup, rate=None,
        )  # fmt: skip
        p50, p99 = percentile(lat, 0.5) * 1000, percentile(lat, 0.99) * 1000
        print(f"no render:    {rate:,.0f} checks/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms, {errors} errors")

        heavy = HeavyRenders(base_url)
        heavy.thread.start()
        with httpx.Client(base_url=base_url, timeout=60, trust_env=False) as client:
            client.get("/__mock/renders", params={"wait_started": 3, "timeout": 60}).raise_for_status()
            in_flight = heavy.running(client)
            r_rate, r_lat, r_errors = run_load(
                host, int(port), reqs, processes=1, connections=4, seconds=args.seconds,
                warmup=args.warmup, rate=RENDER_RATE,
            )  # fmt: skip
            in_flight_after = heavy.running(client)
        heavy.stop.set()
        r_p50, r_p99 = percentile(r_lat, 0.5) * 1000, percentile(r_lat, 0.99) * 1000
        print(
            f"heavy render: {r_rate:,.0f} checks/s offered {RENDER_RATE:.0f}/s, p50 {r_p50:.1f} ms, "
            f"p99 {r_p99:.1f} ms, {r_errors} errors; renders in flight at start/end "
            f"{in_flight}/{in_flight_after}, "
            f"{heavy.done} heavy renders finished meanwhile"
        )
        load_after = os.getloadavg()
        print(f"load average after: {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
    finally:
        server.terminate()
        server.wait(30)
    ok_rate = rate >= GOAL_CHECKS_PER_S and errors == 0
    ok_p99 = r_p99 <= GOAL_P99_MS and r_errors == 0 and in_flight >= 1
    verdict = "OK" if ok_rate and ok_p99 else "MISSED"
    print(
        f"summary: {rate:,.0f} status checks/s without renders (goal {GOAL_CHECKS_PER_S:,.0f}: "
        f"{'OK' if ok_rate else 'MISSED'}), p50 {r_p50:.1f} / p99 {r_p99:.1f} ms "
        f"at {RENDER_RATE:.0f}/s with a "
        f"heavy render in flight (goal p99 {GOAL_P99_MS:.0f} ms: {'OK' if ok_p99 else 'MISSED'}); "
        f"load average {load_before[0]:.1f} on {cores} cores: {verdict}"
    )
    return 0 if verdict == "OK" else 1


if __name__ == "__main__":
    sys.exit(main())
