"""Collect's memory: peak RSS growth of ``picflow.job.results.collect_results`` for 5, 50 and 200 MB results.

The parent process writes a real, valid PNG of each size (16-bit RGBA, stored deflate, 64 KiB
IDAT chunks, as encoders write them) to a temporary directory, serves it from a stdlib HTTP
server on loopback and runs moto's S3 (``ThreadedMotoServer``) on loopback. A fresh child
process per size then runs the real Collect path (stream to /tmp, sha256, magic sniff, Pillow
verify, boto3 managed multipart upload) against them, and measures itself: the kernel's peak-RSS
mark (VmHWM, reset through /proc/self/clear_refs just before the call) minus the RSS just before
it, after a small warm-up collect so imports and client pools are not counted; RSS sampled from
/proc/self/statm every 2 ms is printed next to it as a cross-check. (ru_maxrss is no use here:
Linux carries the parent's high-water mark across fork + exec, and the parent holds moto's data.)

Goal: growth <= 24 MB at every size (issue 17), and flat: the 200 MB growth within 16 MB of the 50 MB one
(both multipart; the step from 5 MB, a single PUT, to 50 MB is the transfer threads' part
buffers, bounded by Collect's TransferConfig (2 threads x 8 MB parts), not by the size).
Also prints MB/s (loopback download + checks + upload into moto). Exits non-zero when missed.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import struct
import subprocess
import sys
import tempfile
import threading
import zlib
from pathlib import Path

SIZES_MB = (5, 50, 200)
GOAL_MB = 24.0  # issue 17
FLAT_MB = 16.0
WIDTH = 4000  # 16-bit RGBA: 8 bytes a pixel; 200 MB stays under picflow's 40 MP cap
BUCKET = "picflow-bench-out"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def write_png(path: Path, target_bytes: int) -> int:
    """A valid PNG of about ``target_bytes``; returns its size."""
    row = 1 + WIDTH * 8
    height = max(1, target_bytes // row)
    noise = os.urandom(row * 16)
    packer = zlib.compressobj(0)  # stored blocks: the file is as big as the pixels
    with path.open("wb") as out:
        out.write(b"\x89PNG\r\n\x1a\n")
        out.write(_chunk(b"IHDR", struct.pack(">IIBBBBB", WIDTH, height, 16, 6, 0, 0, 0)))
        pending = b""
        for y in range(height):
            start = (y % 16) * row
            pending += b"\x00" + noise[start + 1 : start + row]
            if len(pending) >= 1 << 20:
                data = packer.compress(pending)
                pending = b""
                for i in range(0, len(data), 65536):
                    out.write(_chunk(b"IDAT", data[i : i + 65536]))
        data = packer.compress(pending) + packer.flush()
        for i in range(0, len(data), 65536):
            out.write(_chunk(b"IDAT", data[i : i + 65536]))
        out.write(_chunk(b"IEND", b""))
    return path.stat().st_size


class FileHandler(http.server.BaseHTTPRequestHandler):
    directory = Path(".")

    def do_GET(self) -> None:
        path = self.directory / self.path.lstrip("/")
        if not path.is_file():
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(path.stat().st_size))
        self.end_headers()
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                self.wfile.write(chunk)

    def log_message(self, format: str, *args: object) -> None:
        pass


CHILD = r"""
import json, os, sys, tempfile, threading, time
from picflow.core.catalogue import ResultKind
from picflow.job.results import collect_results
from picflow.net.http import build_client
from picflow.core.tasks import ResultRef
import boto3

url, warm_url, moto, bucket, size = sys.argv[1:6]
page = os.sysconf("SC_PAGE_SIZE")

def rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * page

s3 = boto3.client("s3", endpoint_url=moto, region_name="us-east-1")
http = build_client("")
job = {"job_id": "bench", "operation": "segmentation"}
work = tempfile.mkdtemp(prefix="collect-bench-")

def run(u, prefix):
    ref = ResultRef(kind=ResultKind.IMAGE, url=u)
    return collect_results([ref], http=http, s3=s3, bucket=bucket, prefix=prefix, provider="taskpic",
                           job=job, workdir=work)

def hwm() -> int:
    with open("/proc/self/status") as fh:
        line = next(l for l in fh if l.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024

run(warm_url, "warm/")  # imports, pools, transfer threads: not what is measured
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")  # reset the kernel's peak-RSS mark (VmHWM) to the current RSS
before = rss()
peak = [before]
stop = threading.Event()

def sample():
    while not stop.is_set():
        peak[0] = max(peak[0], rss())
        time.sleep(0.002)

sampler = threading.Thread(target=sample, daemon=True)
sampler.start()
started = time.perf_counter()
manifest = run(url, f"size-{size}/")
elapsed = time.perf_counter() - started
stop.set()
sampler.join()
print(json.dumps({"before": before, "peak": hwm(), "sampled": max(peak[0], rss()), "seconds": elapsed,
                  "output": manifest["outputs"][0], "tmp_left": os.listdir(work)}))
"""


def main() -> int:
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per S3 request otherwise
    results = []
    with tempfile.TemporaryDirectory(prefix="collect-bench-files-") as tmp:
        files = Path(tmp)
        sizes = {mb: write_png(files / f"r{mb}.png", mb * 1024 * 1024) for mb in SIZES_MB}
        write_png(files / "warm.png", 256 * 1024)
        FileHandler.directory = files
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FileHandler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{server.server_address[1]}"
        moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        moto.start()
        moto_url = f"http://127.0.0.1:{moto._server.server_port}"
        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "NO_PROXY": "127.0.0.1,localhost",
            # The results server is on loopback: task/pic's result host, allowed (net.urls guard).
            "PICFLOW_RESULT_HOSTS": f"taskpic={base.split('//', 1)[1]}",
            "PICFLOW_URL_ALLOWLIST": base.split("//", 1)[1],
        }
        import boto3

        boto3.client(
            "s3",
            endpoint_url=moto_url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        ).create_bucket(Bucket=BUCKET)
        try:
            for mb in SIZES_MB:
                out = subprocess.run(
                    [
                        sys.executable,
                        "-c",
                        CHILD,
                        f"{base}/r{mb}.png",
                        f"{base}/warm.png",
                        moto_url,
                        BUCKET,
                        str(mb),
                    ],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if out.returncode != 0:
                    raise RuntimeError(out.stderr[-3000:])
                data = json.loads(out.stdout.splitlines()[-1])
                digest = hashlib.sha256((files / f"r{mb}.png").read_bytes()).hexdigest()
                assert data["output"]["sha256"] == digest, "stored sha256 differs from the file's"
                assert data["output"]["size"] == sizes[mb]
                assert not data["tmp_left"], f"temporary files left: {data['tmp_left']}"
                results.append((mb, sizes[mb], data))
        finally:
            moto.stop()
            server.shutdown()

    print(
        f"{'result':>8} {'bytes':>12} {'RSS before':>10} {'peak':>8} {'growth':>8} {'sampled':>8}"
        f" {'s':>6} {'MB/s':>7}"
    )
    growths = []
    for mb, size, d in results:
        growth = (d["peak"] - d["before"]) / 2**20
        growths.append(growth)
        print(
            f"{mb:>6}MB {size:>12,} {d['before'] / 2**20:>8.1f}MB {d['peak'] / 2**20:>6.1f}MB"
            f" {growth:>6.1f}MB {d['sampled'] / 2**20:>6.1f}MB {d['seconds']:>6.2f}"
            f" {size / 2**20 / d['seconds']:>7.1f}"
        )
    worst = max(growths)
    flat = growths[-1] - growths[-2] <= FLAT_MB
    ok = worst <= GOAL_MB and flat
    rate = results[-1][1] / 2**20 / results[-1][2]["seconds"]
    verdict = "OK" if ok else "MISSED"
    print(
        f"summary: peak RSS growth {', '.join(f'{g:.1f}' for g in growths)} MB"
        f" for {', '.join(map(str, SIZES_MB))} MB"
        f" (worst {worst:.1f} MB), {rate:.0f} MB/s at 200 MB, goal <= {GOAL_MB:.0f} MB and flat {verdict}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
