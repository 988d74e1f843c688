"""Collect's memory: peak RSS growth of the real Collect handler, by result kind and size.

Cases (issue 17): PNG results by URL of 5, 50 and 200 MB and the largest the catalogue allows
(picflow.core.images.MAX_PIXELS, 40 MP, as 16-bit RGBA stored deflate: 320 MB); the same 200 MB
PNG written as one IDAT chunk (some encoders write one); JPEG results by URL of about 5 and 50 MB
and at the pixel cap, baseline and progressive; and Tencent's base64 answer at its 4000 px cap
(PNG and JPEG), streamed through picflow.providers.tencent's answer parser.

The parent writes the files to a temporary directory, serves them from a stdlib HTTP server on
loopback (the URL results and the Tencent answers, a JSON body with the image inline as base64),
and runs moto (S3 and the three DynamoDB tables) on loopback. A fresh child per case imports
``functions/collect/app.py`` as Lambda would, and calls its ``lambda_handler`` with a Collect event
(Check's poll state naming the result URL) for a job record it created: the slot release, the
streamed download, sha256, magic sniff, image check, the managed multipart upload, the manifest,
the record's update, the duration and result-cache entries. Tencent's answers come from its sync
Submit, not Collect: the child runs what that Submit runs, ``TencentClient.replace_background``
against the answer server, then ``store_recovering`` (the call Collect makes too).

Each child measures itself: the kernel's peak-RSS mark (VmHWM, reset through
/proc/self/clear_refs just before the call) minus the RSS just before it, after a warm-up call
of the same kind with a small result so imports, clients and pools are not counted; RSS sampled
from /proc/self/statm every 2 ms is printed next to it as a cross-check. (ru_maxrss is no use:
Linux carries the parent's high-water mark across fork + exec, and the parent holds moto's data.)

Goal: growth <= 24 MB in every case (issue 17). Exits non-zero when missed.
``--only png`` (a substring of the case names) runs some cases.
"""

from __future__ import annotations

import base64
import functools
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
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

ROOT = Path(__file__).resolve().parents[1]
GOAL_MB = 24.0  # issue 17
MAX_PIXELS = 40_000_000  # picflow.core.images.MAX_PIXELS
WIDTH = 4000  # 16-bit RGBA: 8 bytes a pixel
TENCENT_PX = 4000  # Tencent's largest side
BUCKET = "picflow-bench-out"
TABLES = {"jobs": "job_id", "slots": "name", "cache": "cache_key"}


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def write_png(path: Path, *, width: int, height: int, depth: int = 16, one_chunk: bool = False) -> int:
    """A valid RGBA PNG of noise, stored deflate (the file is as big as its pixels), in IDAT chunks
    of 64 KiB as most encoders write them, or one IDAT chunk; returns its size."""
    row = 1 + width * (8 if depth == 16 else 4)
    noise = os.urandom(row * 16)
    packer = zlib.compressobj(0)
    with tempfile.TemporaryFile() as data:
        pending = bytearray()
        for y in range(height):
            start = (y % 16) * row
            pending += b"\x00" + noise[start + 1 : start + row]
            if len(pending) >= 1 << 20:
                data.write(packer.compress(bytes(pending)))
                pending.clear()
        data.write(packer.compress(bytes(pending)) + packer.flush())
        total = data.tell()
        data.seek(0)
        with path.open("wb") as out:
            out.write(b"\x89PNG\r\n\x1a\n")
            out.write(_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, 6, 0, 0, 0)))
            step = total if one_chunk else 65536
            left = total
            while left:
                length = min(step, left)
                out.write(struct.pack(">I", length) + b"IDAT")
                crc = zlib.crc32(b"IDAT")
                todo = length
                while todo:
                    piece = data.read(min(todo, 1 << 20))
                    crc = zlib.crc32(piece, crc)
                    out.write(piece)
                    todo -= len(piece)
                out.write(struct.pack(">I", crc & 0xFFFFFFFF))
                left -= length
            out.write(_chunk(b"IEND", b""))
    return path.stat().st_size


def write_jpeg(path: Path, *, width: int, height: int, progressive: bool = False, quality: int = 95) -> int:
    """A JPEG of noise (4:4:4), baseline or progressive; returns its size."""
    from PIL import Image, ImageFile

    ImageFile.MAXBLOCK = max(ImageFile.MAXBLOCK, width * height * 4)  # progressive: one buffer
    image = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
    image.save(path, "JPEG", quality=quality, subsampling=0, progressive=progressive)
    return path.stat().st_size


def jpeg_side(target_bytes: int, *, aspect: float = 1.0) -> tuple[int, int]:
    """Width and height of a noise JPEG of about ``target_bytes`` (bytes a pixel measured once)."""
    sample = Path(tempfile.mkstemp(suffix=".jpg")[1])
    try:
        per_pixel = write_jpeg(sample, width=400, height=400) / 160_000
    finally:
        sample.unlink()
    pixels = min(MAX_PIXELS, int(target_bytes / per_pixel))
    width = int((pixels * aspect) ** 0.5)
    return width, pixels // width


def write_tencent_answer(path: Path, image: Path) -> int:
    """Tencent's ReplaceBackground answer with ``image`` inline as base64 (its default RspImgType)."""
    with path.open("wb") as out, image.open("rb") as src:
        out.write(b'{"Response":{"ResultImage":"')
        while chunk := src.read(3 * (1 << 20)):
            out.write(base64.b64encode(chunk))
        out.write(b'","RequestId":"bench-request"}}')
    return image.stat().st_size


class FileHandler(http.server.BaseHTTPRequestHandler):
    directory = Path(".")
    types: ClassVar[dict[str, str]] = {".png": "image/png", ".jpg": "image/jpeg", ".json": "application/json"}

    def _serve(self, path: Path) -> None:
        if not path.is_file():
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", self.types.get(path.suffix, "application/octet-stream"))
        self.send_header("Content-Length", str(path.stat().st_size))
        self.end_headers()
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                self.wfile.write(chunk)

    def do_GET(self) -> None:
        self._serve(self.directory / self.path.lstrip("/"))

    def do_POST(self) -> None:
        # Tencent's endpoint: the answer named by the path prefix (/answer-<name>/...).
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._serve(self.directory / (self.path.strip("/").split("/")[0] + ".json"))

    def log_message(self, format: str, *args: object) -> None:
        pass


# The child: one case through the real handler (or Tencent's sync Submit path), measured in itself.
CHILD = r"""
import json, os, sys, tempfile, threading, time, types, uuid
mode, url, warm_url = sys.argv[1:4]
page = os.sysconf("SC_PAGE_SIZE")

def rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * page

def hwm() -> int:
    with open("/proc/self/status") as fh:
        line = next(l for l in fh if l.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024

import app  # functions/collect/app.py, as Lambda's bootstrap imports it
from picflow.aws.services import services
svc = services()
context = types.SimpleNamespace(function_name="picflow-collect", memory_limit_in_mb=512,
    invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:picflow-collect",
    aws_request_id="bench", log_group_name="-", log_stream_name="-")

def state_for(job_id):
    svc.store.create({"job_id": job_id, "operation": OPERATION, "input": {}, "status": "RUNNING",
                      "submitted_epoch": time.time() - 30})
    return {"job_id": job_id, "operation": OPERATION, "out_prefix": f"jobs/{job_id}/",
            "job": {"provider": PROVIDER, "style": STYLE, "cost_units": 1, "cost_unit": "bench"}}

if mode == "url":
    OPERATION, PROVIDER, STYLE = "segmentation", "taskpic", "poll"
    def run(u):
        state = state_for("bench-" + uuid.uuid4().hex)
        state["poll"] = {"task_id": "t", "polls": 3, "results": [{"kind": "image", "url": u, "index": 0}]}
        out = app.lambda_handler({"state": state}, context)
        return out, svc.store.get(state["job_id"])
else:
    OPERATION, PROVIDER, STYLE = "replace_background", "tencent", "sync"
    from picflow.core.catalogue import get_operation
    from picflow.job.collect import store_recovering
    from picflow.net.http import build_client
    from picflow.providers.base import Secret
    from picflow.providers.tencent import TencentClient
    workdir = tempfile.mkdtemp(prefix="tencent-bench-")
    def run(u):
        # What Submit runs for a sync Tencent job: the paid call's streamed answer, then store_recovering.
        client = TencentClient(build_client(u), Secret("id"), Secret("key"), host=None)
        submission = client.replace_background(
            {"prompt": "a beach"}, "https://example.com/p.png", workdir=workdir
        )
        state = state_for("bench-" + uuid.uuid4().hex)
        out = store_recovering(get_operation(OPERATION), state, submission.status.results, svc)
        assert not os.listdir(workdir), os.listdir(workdir)
        return out, svc.store.get(state["job_id"])

run(warm_url)  # imports, clients, pools, transfer threads: not what is measured
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
out, record = run(url)
elapsed = time.perf_counter() - started
stop.set()
sampler.join()
output = record["manifest"]["outputs"][0]
fields = ("sha256", "size", "width", "height", "content_type")
print(json.dumps({"before": before, "peak": hwm(), "sampled": max(peak[0], rss()), "seconds": elapsed,
                  "status": record["status"], "output": {k: output[k] for k in fields}}))
"""


Case = tuple[str, str, Path, str, Callable[[], object]]


def cases(files: Path) -> list[Case]:
    """(name, mode, the file stored, what is served, how to write it) for every case."""
    out: list[Case] = []
    row = 1 + WIDTH * 8
    for mb in (5, 50, 200):
        path = files / f"png{mb}.png"
        write = functools.partial(write_png, path, width=WIDTH, height=mb * 2**20 // row)
        out.append((f"PNG {mb} MB by URL", "url", path, path.name, write))
    path = files / "pngmax.png"
    write = functools.partial(write_png, path, width=WIDTH, height=MAX_PIXELS // WIDTH)
    out.append(("PNG 40 MP (pixel cap) by URL", "url", path, path.name, write))
    path = files / "png200one.png"
    write = functools.partial(write_png, path, width=WIDTH, height=200 * 2**20 // row, one_chunk=True)
    out.append(("PNG 200 MB, one IDAT chunk", "url", path, path.name, write))
    for mb in (5, 50):
        path = files / f"jpeg{mb}.jpg"
        out.append((f"JPEG {mb} MB by URL", "url", path, path.name, functools.partial(_jpeg_of, path, mb)))
    for progressive in (False, True):
        kind = "progressive" if progressive else "baseline"
        path = files / f"jpegmax-{kind}.jpg"
        write = functools.partial(
            write_jpeg, path, width=8000, height=MAX_PIXELS // 8000, progressive=progressive
        )
        out.append((f"JPEG 40 MP (pixel cap) {kind} by URL", "url", path, path.name, write))
    png = files / "tencent.png"
    write = functools.partial(
        _answer_of, png, "png", lambda: write_png(png, width=TENCENT_PX, height=TENCENT_PX, depth=8)
    )
    out.append(("Tencent base64 PNG 4000 px", "tencent", png, "answer-png", write))
    jpeg = files / "tencent.jpg"
    write = functools.partial(
        _answer_of, jpeg, "jpeg", lambda: write_jpeg(jpeg, width=TENCENT_PX, height=TENCENT_PX)
    )
    out.append(("Tencent base64 JPEG 4000 px", "tencent", jpeg, "answer-jpeg", write))
    return out


def _jpeg_of(path: Path, mb: int) -> int:
    width, height = jpeg_side(mb * 2**20)
    return write_jpeg(path, width=width, height=height)


def _answer_of(image: Path, name: str, write: Callable[[], object]) -> int:
    write()
    return write_tencent_answer(image.parent / f"answer-{name}.json", image)


def main() -> int:
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    only = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else ""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per S3 request otherwise
    results = []
    with tempfile.TemporaryDirectory(prefix="collect-bench-files-") as tmp:
        files = Path(tmp)
        todo = [case for case in cases(files) if only.lower() in case[0].lower()]
        for case in todo:
            case[4]()
        write_png(files / "warm.png", width=64, height=64)
        write_tencent_answer(files / "answer-warm.json", files / "warm.png")
        FileHandler.directory = files
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FileHandler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        host = f"127.0.0.1:{server.server_address[1]}"
        base = f"http://{host}"
        moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        moto.start()
        moto_url = f"http://127.0.0.1:{moto._server.server_port}"
        keys = {
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
            "region_name": "us-east-1",
        }
        boto3.client("s3", endpoint_url=moto_url, **keys).create_bucket(Bucket=BUCKET)
        ddb = boto3.client("dynamodb", endpoint_url=moto_url, **keys)
        for table, key in TABLES.items():
            ddb.create_table(
                TableName=f"bench-{table}",
                KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
        code = ROOT / "functions" / "collect"
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(code), str(ROOT / "layers" / "picflow")]),
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": moto_url,
            "NO_PROXY": "127.0.0.1,localhost",
            "POWERTOOLS_SERVICE_NAME": "picflow",
            "POWERTOOLS_METRICS_NAMESPACE": "picflow",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_LOG_LEVEL": "WARNING",
            "PICFLOW_JOBS_TABLE": "bench-jobs",
            "PICFLOW_SEMAPHORE_TABLE": "bench-slots",
            "PICFLOW_RESULT_CACHE_TABLE": "bench-cache",
            "PICFLOW_OUTPUT_BUCKET": BUCKET,
            # The results server is on loopback: task/pic's result host, allowed (net.urls guard).
            "PICFLOW_RESULT_HOSTS": f"taskpic={host}",
            "PICFLOW_URL_ALLOWLIST": host,
        }
        try:
            for name, mode, stored, served, _ in todo:
                warm = f"{base}/warm.png" if mode == "url" else f"{base}/answer-warm/"
                url = f"{base}/{served}" if mode == "url" else f"{base}/{served}/"
                out = subprocess.run(
                    [sys.executable, "-c", CHILD, mode, url, warm],
                    env=env,
                    cwd=code,
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if out.returncode != 0:
                    raise RuntimeError(f"{name}: {out.stderr[-3000:]}")
                data = json.loads(out.stdout.splitlines()[-1])
                digest = hashlib.sha256(stored.read_bytes()).hexdigest()
                assert data["status"] == "SUCCEEDED", data
                assert data["output"]["sha256"] == digest, f"{name}: stored sha256 differs from the file's"
                assert data["output"]["size"] == stored.stat().st_size
                results.append((name, stored.stat().st_size, data))
                print(f"  {name}: {(data['peak'] - data['before']) / 2**20:.1f} MB", file=sys.stderr)
        finally:
            moto.stop()
            server.shutdown()

    print(
        f"{'case':40} {'bytes':>12} {'pixels':>11} {'RSS before':>10} {'peak':>8} {'growth':>8}"
        f" {'sampled':>8} {'s':>6} {'MB/s':>6}"
    )
    growths = []
    for name, size, d in results:
        growth = (d["peak"] - d["before"]) / 2**20
        growths.append((growth, name))
        pixels = f"{d['output']['width']}x{d['output']['height']}"
        print(
            f"{name:40} {size:>12,} {pixels:>11} {d['before'] / 2**20:>8.1f}MB {d['peak'] / 2**20:>6.1f}MB"
            f" {growth:>6.1f}MB {d['sampled'] / 2**20:>6.1f}MB {d['seconds']:>6.2f}"
            f" {size / 2**20 / d['seconds']:>6.1f}"
        )
    worst = max(growths)
    missed = [name for growth, name in growths if growth > GOAL_MB]
    verdict = "OK" if not missed else f"MISSED ({', '.join(missed)})"
    print(
        f"summary: peak RSS growth of the Collect handler {min(growths)[0]:.1f}-{worst[0]:.1f} MB over"
        f" {len(growths)} cases (worst: {worst[1]}), goal <= {GOAL_MB:.0f} MB {verdict}"
    )
    return 0 if not missed else 1


if __name__ == "__main__":
    sys.exit(main())
