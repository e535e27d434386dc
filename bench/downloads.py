"""Benchmark: 200 operators downloading a 10-minute program at once, ours against a static server.

Seeds a temporary data folder (one outlet, one 10-minute program in the house format, a
private link), starts ``dalaba serve`` (waitress) on a free loopback port, and serves the
same file with nginx from Debian (or, without nginx, Python's threading ``http.server``,
with a note). The same asyncio client (keep-alive off, one request per connection, like
cheap loudspeaker boxes) runs against both in this run.

    python bench/downloads.py [--clients 200] [--requests 3] [--seconds 30] [--rounds 2]

Target (issue 11): ours at least half the static server's downloads per second, and a time
to first byte under 500 ms at the 99th percentile. The last line is

    RESULT rps=<ours> rps_static=<static> ratio=<ours/static> ttfb_p99_ms=<ours>
           ttfb_p99_ms_static=<static> failed=<ours> target=<met|missed>

(on one line).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from datetime import time as clock_time
from pathlib import Path

from imageio_ffmpeg import get_ffmpeg_exe

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.load import free_port, percentile_ms  # noqa: E402

PROGRAM_SECONDS = 600
READ_SIZE = 256 * 1024
TARGET_RATIO = 0.5
TARGET_TTFB_P99_MS = 500


@dataclass
class Run:
    name: str
    ttfb: list[float] = field(default_factory=list)
    completed: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    wall: float = 0.0
    bytes: int = 0

    @property
    def rps(self) -> float:
        return self.completed / self.wall if self.wall else 0.0

    def percentile(self, q: float) -> float:
        return percentile_ms(self.ttfb, q)


def wait_ready(port: int, path: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(f"HEAD {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
                if s.recv(64).startswith(b"HTTP/1."):
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"server on port {port} not ready after {timeout} s")


def encode_program(path: Path) -> None:
    """Ten minutes of tone in the house format (44.1 kHz mono 64 kbit/s CBR MP3)."""
    subprocess.run(
        [
            get_ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", f"sine=frequency=440:duration={PROGRAM_SECONDS}",
            "-ac", "1", "-ar", "44100", "-c:a", "libmp3lame", "-b:a", "64k",
            "-write_xing", "0", str(path),
        ],
        check=True,
    )  # fmt: skip


def seed(data_dir: Path) -> tuple[str, Path]:
    """A township, an outlet, today's program and its private link; returns (URL path, file)."""
    from cms.db import make_engine, make_session_factory, transaction
    from cms.migrate import upgrade
    from cms.models import AreaKind, JobState, Outlet, OutletKind, Program, Slot
    from cms.services import areas
    from cms.services import operators as svc
    from cms.settings import Settings

    settings = Settings.from_env({}, data_dir=data_dir, secret_key="bench")
    engine = make_engine(settings.database_url, data_dir=settings.data_dir)
    upgrade(engine)
    day = datetime.now(settings.tz).date()
    program_path = data_dir / "programs" / day.isoformat() / "1-0730.mp3"
    program_path.parent.mkdir(parents=True, exist_ok=True)
    encode_program(program_path)
    with transaction(make_session_factory(engine)) as session:
        town = areas.create_area(
            session, None, name="清水镇", kind=AreaKind.TOWNSHIP, parent_id=None
        )
        village = areas.create_area(
            session, None, name="石桥村", kind=AreaKind.VILLAGE, parent_id=town.id
        )
        outlet = Outlet(name="石桥村大喇叭", kind=OutletKind.LOUDSPEAKER, area_id=village.id)
        outlet.slots = [Slot(at=clock_time(7, 30), minutes=15)]
        session.add(outlet)
        session.flush()
        session.add(
            Program(
                outlet_id=outlet.id,
                day=day,
                slot_id=outlet.slots[0].id,
                state=JobState.DONE,
                path=str(program_path),
                duration=float(PROGRAM_SECONDS),
                manifest={"announcements": [{"title": "基准测试"}]},
                built_at=datetime.now(UTC),
            )
        )
        token = svc.issue_outlet_token(session, None, outlet)
    engine.dispose()
    return f"/o/{token}/{day.isoformat()}/0730.mp3", program_path


def start_ours(
    data_dir: Path, port: int, log: Path, accel_prefix: str = ""
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DALABA_ACCEL_REDIRECT": accel_prefix,
        "DALABA_DATA_DIR": str(data_dir),
        "DALABA_SECRET_KEY": "bench-secret",
        # The benchmark measures serving; the scheduler would only compete for the CPU.
        "DALABA_SCHEDULER": "false",
        "DALABA_BASE_URL": f"http://127.0.0.1:{port}",
    }
    exe = shutil.which("dalaba", path=str(Path(sys.executable).parent)) or shutil.which("dalaba")
    command = [exe] if exe else [sys.executable, "-m", "cms.cli"]
    return subprocess.Popen(
        [*command, "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        # A file, not a pipe: nobody reads a pipe here, and a full one would stall the server.
        stderr=log.open("wb"),
        start_new_session=True,
    )


def find_nginx() -> str | None:
    return shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )


def start_static(
    folder: Path, port: int, work: Path, accel: tuple[int, int, Path] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """nginx when installed, else Python's threading http.server (the best one at hand).

    With ``accel`` (listen port, dalaba's port, data folder) nginx also fronts a dalaba
    started with DALABA_ACCEL_REDIRECT: the production setup from the README.
    """
    nginx = find_nginx()
    if nginx:
        proxy = ""
        if accel is not None:
            listen, upstream, data_dir = accel
            proxy = f"""
    server {{
        listen 127.0.0.1:{listen};
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_set_header Host $host;
        }}
        location /_dalaba_data/ {{
            internal;
            alias {data_dir}/;
        }}
    }}"""
        conf = work / "nginx.conf"
        user = "user root;" if os.geteuid() == 0 else ""
        conf.write_text(
            f"""{user}
worker_processes auto;
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    types {{ audio/mpeg mp3; }}
    access_log off;
    sendfile on;
    tcp_nopush on;
    client_body_temp_path {work}/body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {folder};
    }}{proxy}
}}
"""
        )
        proc = subprocess.Popen(
            [nginx, "-c", str(conf), "-p", str(work)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        return proc, "nginx " + _nginx_version(nginx)
    print("NOTE: nginx not found (apt-get install nginx-light); using python -m http.server")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "http.server",
            str(port),
            "--bind",
            "127.0.0.1",
            "--directory",
            str(folder),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    return proc, "python http.server (ThreadingHTTPServer)"


def _nginx_version(nginx: str) -> str:
    done = subprocess.run([nginx, "-v"], capture_output=True, text=True)
    return done.stderr.strip().rsplit("/", 1)[-1]


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


class Download(asyncio.BufferedProtocol):
    """One GET on a fresh connection, read straight into a shared buffer and counted.

    No StreamReader: its extra copies and pauses made the client, not the server, the
    bottleneck (it took more CPU per download than dalaba). The loop runs one callback at
    a time and every block is counted before the next is read, so one buffer serves all.
    """

    buffer = bytearray(READ_SIZE)

    def __init__(
        self, path: str, started: float, done: asyncio.Future[tuple[float, int, int]]
    ) -> None:
        self.request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        self.done = done
        self.started = started  # before connecting: the time to first byte includes the connect
        self.ttfb = 0.0
        self.head = bytearray()
        self.length = -1  # Content-Length, once the head is in
        self.received = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(self.request.encode())

    def get_buffer(self, sizehint: int) -> bytearray:
        return self.buffer

    def buffer_updated(self, nbytes: int) -> None:
        if not self.ttfb:
            self.ttfb = time.perf_counter() - self.started
        if self.length >= 0:
            self.received += nbytes
        else:
            self.head += self.buffer[:nbytes]
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = bytes(self.head[:end]).split(b"\r\n")
            status = lines[0].split(b" ", 2)[1]
            if status != b"200":
                self._finish(ConnectionError(f"status {status.decode()}"))
                return
            lengths = [
                int(x.split(b":", 1)[1]) for x in lines if x.lower().startswith(b"content-length:")
            ]
            if not lengths:
                self._finish(ConnectionError("no Content-Length"))
                return
            self.length = lengths[0]
            self.received = len(self.head) - end - 4
            self.head.clear()
        if self.received >= self.length:
            self._finish(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish(exc or ConnectionError(f"closed after {self.received} of {self.length}"))

    def _finish(self, error: Exception | None) -> None:
        if self.done.done():
            return
        if error is None:
            self.done.set_result((self.ttfb, self.received, self.length))
        else:
            self.done.set_exception(error)
        self.transport.close()


async def fetch(port: int, path: str, expected: int, run: Run) -> None:
    """One download; records time to first byte and checks the length."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[tuple[float, int, int]] = loop.create_future()
    started = time.perf_counter()
    transport, _ = await loop.create_connection(
        lambda: Download(path, started, done), "127.0.0.1", port
    )
    try:
        ttfb, received, length = await done
    finally:
        transport.close()  # also when the wait times out
    run.ttfb.append(ttfb)
    if received != length or length != expected:
        raise ConnectionError(f"got {received} of {length} bytes (file has {expected})")
    run.completed += 1
    run.bytes += received


async def load(
    port: int, path: str, expected: int, run: Run, clients: int, requests: int, seconds: float
) -> None:
    deadline = time.perf_counter() + seconds

    async def operator() -> None:
        for _ in range(requests):  # bounded: a fixed number of downloads per operator
            if time.perf_counter() > deadline:
                return
            try:
                await asyncio.wait_for(fetch(port, path, expected, run), timeout=seconds * 2)
            except (
                TimeoutError,
                OSError,
                ConnectionError,
                asyncio.IncompleteReadError,
                StopIteration,
            ) as exc:
                run.failed += 1
                if len(run.errors) < 5:
                    run.errors.append(repr(exc))

    started = time.perf_counter()
    await asyncio.gather(*(operator() for _ in range(clients)))
    run.wall = time.perf_counter() - started


def report(run: Run) -> None:
    print(
        f"{run.name:<48} {run.completed:>5} ok {run.failed:>3} failed  "
        f"{run.rps:8.1f} req/s  {run.bytes / run.wall / 1e6 if run.wall else 0:8.1f} MB/s  "
        f"TTFB p50 {run.percentile(0.5):8.1f} ms  p99 {run.percentile(0.99):8.1f} ms"
    )
    for error in run.errors:
        print(f"    e.g. {error}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--requests", type=int, default=3, help="downloads per operator")
    parser.add_argument("--seconds", type=float, default=30.0, help="stop starting downloads after")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per server")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="dalaba-bench-"))
    os.chmod(work, 0o755)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        data_dir = work / "data"
        url_path, program = seed(data_dir)
        static_root = work / "static"
        static_root.mkdir()
        shutil.copyfile(program, static_root / "program.mp3")
        for folder in (work, static_root):
            os.chmod(folder, 0o755)
        size = program.stat().st_size
        print(
            f"program: {PROGRAM_SECONDS // 60} min, {size / 1e6:.1f} MB; {args.clients} operators, "
            f"up to {args.requests} downloads each, {os.cpu_count()} CPUs"
        )

        ours_port, static_port = free_port(), free_port()
        ours = start_ours(data_dir, ours_port, work / "dalaba-serve.log")
        procs.append(ours)
        wait_ready(ours_port, url_path, ours)
        accel = None
        if find_nginx():
            accel_upstream, accel_port = free_port(), free_port()
            behind = start_ours(
                data_dir, accel_upstream, work / "dalaba-accel.log", "/_dalaba_data/"
            )
            procs.append(behind)
            wait_ready(accel_upstream, url_path, behind)
            accel = (accel_port, accel_upstream, data_dir)
        static, static_name = start_static(static_root, static_port, work, accel)
        procs.append(static)
        wait_ready(static_port, "/program.mp3", static)

        from cms.web.server import WAITRESS

        runs = [
            (f"dalaba serve (waitress, {WAITRESS['threads']} threads)", ours_port, url_path),
            (static_name, static_port, "/program.mp3"),
        ]
        if accel is not None:
            # Not part of RESULT: shows what the production setup does to the gap.
            runs.append(("nginx -> dalaba serve, X-Accel-Redirect", accel[0], url_path))
        # Rounds alternate between the servers so that a noisy neighbour on the machine
        # hits both alike; each server's rounds are pooled.
        results = {port: Run(name) for name, port, _ in runs}
        for _ in range(args.rounds):
            for name, port, path in runs:
                one = Run(name)
                asyncio.run(load(port, path, size, one, args.clients, args.requests, args.seconds))
                pooled = results[port]
                pooled.ttfb += one.ttfb
                pooled.completed += one.completed
                pooled.failed += one.failed
                pooled.errors += one.errors[: 5 - len(pooled.errors)]
                pooled.wall += one.wall
                pooled.bytes += one.bytes
        for run in results.values():
            report(run)
        ours_run, static_run = results[ours_port], results[static_port]
        if ours_run.completed == 0 or static_run.completed == 0:
            print("no download completed; see the errors above")
            return 1
        ratio = ours_run.rps / static_run.rps
        p99, p99_static = ours_run.percentile(0.99), static_run.percentile(0.99)
        met = ratio >= TARGET_RATIO and p99 < TARGET_TTFB_P99_MS and ours_run.failed == 0
        print(f"static server: {static_name}")
        print(
            f"dalaba against {static_name}: {ratio:.2f}x the downloads per second "
            f"(target >= {TARGET_RATIO}), time to first byte p99 {p99:.0f} ms against "
            f"{p99_static:.0f} ms (target < {TARGET_TTFB_P99_MS} ms): "
            + ("target met" if met else "target missed")
        )
        print(
            f"RESULT rps={ours_run.rps:.1f} rps_static={static_run.rps:.1f} "
            f"ratio={ratio:.2f} ttfb_p99_ms={p99:.1f} ttfb_p99_ms_static={p99_static:.1f} "
            f"failed={ours_run.failed} target={'met' if met else 'missed'}"
        )
        return 0
    finally:
        for proc in procs:
            stop(proc)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
