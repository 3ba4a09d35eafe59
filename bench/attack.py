"""Attacks on the HTTP server with tools nobody here wrote, each against the real daemon while a legitimate client
scrapes every 0.5 s.

    sudo .venv/bin/python -m bench.attack [--short] [--only slowloris,brute_force,...] [--json FILE]

The run makes two network namespaces joined by a veth pair: the daemon's (entered by this process; the legitimate
client scrapes it over loopback) and the attackers' (10.199.0.0/16 on the veth, where attackers and their sockets,
TIME_WAITs included, live, as on another host: not counted by the daemon's own collection). It starts a daemon per
attack and, for each: measures the legitimate client idle (same run, same daemon), runs the attack, and measures
the client under it. An attack passes when every legitimate scrape succeeds with p95 latency within 2x idle, the
daemon lives, and its RSS and open fds come back to within 2 MB and 5 of the baseline afterwards (plus the
attack's own criteria). The legitimate client comes from 127.0.0.2; attackers from 10.199.0.2 and, where an attack
spreads over addresses, 10.199.1-4.x. Attackers run in processes of their own (`--attacker`), so that their CPU is
not the harness's GIL. `--short` is the form CI runs (tests/daemon/test_attacks.py): smaller numbers, and a p95
bound loose enough for a busy machine (4x idle, at least idle + 0.25 s).
"""

import argparse
import base64
import ctypes
import http.client
import json
import multiprocessing
import os
import random
import re
import resource
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PORT = 19966
LEGIT = "127.0.0.2"
SERVER = "10.199.0.1"  # the daemon, seen from the attackers' namespace
ATTACKER = "10.199.0.2"
SPREAD = 1000  # attacker addresses 10.199.1-4.x, for attacks from many addresses


def spread(i: int) -> str:
    return f"10.199.{1 + i // 250 % 4}.{1 + i % 250}"
CLONE_NEWNET = 0x40000000
SCRAPE_EVERY = 0.5
ATTACKER_NICE = 10
STALL = 0.040  # Nagle + delayed ACK: a response in two writes waits this long for the ACK of the first


# -- the daemon and how it is doing

class Daemon:
    def __init__(self, workdir: str, config: str = "", web: str = "", nofile: int = 0, tls: bool = False):
        self.tls = tls
        args = [sys.executable, "-m", "sockdiag_exporter", f"--web.listen-address=0.0.0.0:{PORT}",
                "--log.level=info", "--collector.disable-defaults", "--collector.tcp", "--collector.udp",
                "--collector.unix", "--collector.netstat"]
        path = os.path.join(workdir, f"config-{uuid.uuid4().hex[:6]}.yml")
        with open(path, "w") as f:
            f.write(config or "{}\n")
        args.append(f"--config.file={path}")
        if web:
            with open(path.replace(".yml", "-web.yml"), "w") as f:
                f.write(web)
            args.append(f"--web.config.file={path.replace('.yml', '-web.yml')}")
        self.stderr = open(os.path.join(workdir, "daemon.log"), "w+")

        def limit():
            if nofile:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.stderr,
                                     preexec_fn=limit, env=dict(os.environ, PYTHONPATH=os.path.join(ROOT, "exporter")))
        self.context = None
        if tls:
            self.context = ssl.create_default_context(cafile=os.path.join(workdir, "ca.crt"))
        deadline = time.monotonic() + 20
        while not self.answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"daemon did not start: {self.log()[-2000:]}")
            time.sleep(0.05)

    def answers(self) -> bool:
        try:
            return scrape(self.context, "/", source=LEGIT, timeout=2)[0] in (200, 401, 429)
        except (OSError, http.client.HTTPException):
            return False

    def alive(self) -> bool:
        return self.proc.poll() is None

    def usage(self) -> dict:
        fields = dict(line.split(":", 1) for line in open(f"/proc/{self.proc.pid}/status"))
        stat = open(f"/proc/{self.proc.pid}/stat").read().rsplit(")", 1)[1].split()
        return {"rss_kb": int(fields["VmRSS"].split()[0]), "fds": len(os.listdir(f"/proc/{self.proc.pid}/fd")),
                "cpu_s": (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")}

    def log(self) -> str:
        self.stderr.flush()
        self.stderr.seek(0)
        return self.stderr.read()

    def stop(self) -> None:
        end(self.proc, signal.SIGTERM)


def end(proc: subprocess.Popen, sig) -> None:
    """sig, then SIGKILL if the process is still there 10 s later."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def scrape(context, path="/metrics", source=LEGIT, headers=None, timeout=10.0):
    """(status, headers, body) of one request on a fresh connection from source."""
    conn = (http.client.HTTPSConnection("127.0.0.1", PORT, timeout=timeout, context=context,
                                        source_address=(source, 0)) if context else
            http.client.HTTPConnection("127.0.0.1", PORT, timeout=timeout, source_address=(source, 0)))
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


class Legit(threading.Thread):
    """Prometheus: a scrape every 0.5 s (each on a new connection), every outcome recorded."""

    def __init__(self, daemon: Daemon, headers=None, every: float = SCRAPE_EVERY):
        super().__init__(daemon=True)
        self.d, self.headers, self.every = daemon, headers or {}, every
        self.latencies, self.failures = [], []
        self.stop = threading.Event()

    def one(self):
        started = time.perf_counter()
        try:
            status, _, body = scrape(self.d.context, headers=self.headers)
            if status != 200 or b"sockdiag_sockets" not in body:
                self.failures.append(f"HTTP {status}")
        except (OSError, http.client.HTTPException) as e:
            self.failures.append(repr(e))
        self.latencies.append(time.perf_counter() - started)

    def run(self):
        while not self.stop.is_set():
            started = time.monotonic()
            self.one()
            self.stop.wait(max(0.0, self.every - (time.monotonic() - started)))


def pct(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))] if ordered else float("nan")


def idle_baseline(daemon: Daemon, headers, n: int, gap: float) -> dict:
    legit = Legit(daemon, headers)
    for _ in range(5):  # warm-up: first collections, imports, buffers
        legit.one()
        time.sleep(gap)
    legit.latencies, legit.failures = [], []
    for _ in range(n):
        legit.one()
        time.sleep(gap)
    return {"p50": pct(legit.latencies, 50), "p95": pct(legit.latencies, 95), "failures": legit.failures}


def settle(daemon: Daemon, before: dict, seconds: float) -> dict:
    """Usage once fds and RSS are back within bounds, or as they are when seconds have passed."""
    deadline = time.monotonic() + seconds
    while True:
        now = daemon.usage()
        if (now["fds"] <= before["fds"] + 5 and now["rss_kb"] <= before["rss_kb"] + 2048) or \
                time.monotonic() > deadline:
            return now
        time.sleep(0.25)


def under_attack(name, daemon: Daemon, start_attack, duration: float, short: bool, headers=None, idle_n=20,
                 extra_check=None, idle_gap=0.05) -> dict:
    """Idle baseline, then the attack with the legitimate client running; figures and a verdict."""
    idle = idle_baseline(daemon, headers, idle_n, idle_gap)
    before = daemon.usage()
    legit = Legit(daemon, headers)
    peak = dict(before)
    attack = start_attack()
    legit.start()
    cpu0, t0 = daemon.usage()["cpu_s"], time.monotonic()
    done = getattr(duration, "done", lambda: False)
    try:
        end = time.monotonic() + duration
        while time.monotonic() < end and daemon.alive() and not done():
            time.sleep(0.25)
            if daemon.alive():
                now = daemon.usage()
                peak = {k: max(peak[k], now[k]) for k in ("rss_kb", "fds")}
        elapsed = time.monotonic() - t0
        cpu = (daemon.usage()["cpu_s"] - cpu0) / elapsed if daemon.alive() else float("nan")
    finally:
        legit.stop.set()
        legit.join(15)
        figures = attack.finish() if hasattr(attack, "finish") else {}
    alive = daemon.alive()
    after = settle(daemon, before, 20) if alive else {}
    result = {
        "attack": name, "seconds": round(elapsed, 1),
        "idle_p50_ms": ms(idle["p50"]), "idle_p95_ms": ms(idle["p95"]),
        "attack_p50_ms": ms(pct(legit.latencies, 50)), "attack_p95_ms": ms(pct(legit.latencies, 95)),
        "legit_scrapes": len(legit.latencies), "legit_failures": legit.failures[:5] + idle["failures"][:5],
        "cpu_percent": round(100 * cpu, 1), "alive": alive,
        "rss_kb": [before["rss_kb"], peak["rss_kb"], after.get("rss_kb")],
        "fds": [before["fds"], peak["fds"], after.get("fds")],
        **figures,
    }
    bound = max(4 * idle["p95"], idle["p95"] + 0.25) if short else 2 * idle["p95"]
    problems = []
    if not alive:
        problems.append("the daemon died")
    if legit.failures or idle["failures"]:
        problems.append(f"{len(legit.failures)} legitimate scrapes failed")
    if len(legit.latencies) < elapsed / SCRAPE_EVERY / 2:
        problems.append(f"only {len(legit.latencies)} legitimate scrapes")
    if pct(legit.latencies, 95) > bound:
        problems.append(f"p95 {ms(pct(legit.latencies, 95))} ms above {ms(bound)} ms")
    if alive and after["rss_kb"] > before["rss_kb"] + 2048:
        problems.append(f"RSS {after['rss_kb'] - before['rss_kb']} KB above baseline")
    if alive and after["fds"] > before["fds"] + 5:
        problems.append(f"{after['fds'] - before['fds']} fds above baseline")
    log = daemon.log()
    if "Traceback" in log or re.search(r"level=error", log):
        problems.append("traceback or error line in the daemon's log: " +
                        next(line for line in log.splitlines() if "Traceback" in line or "level=error" in line))
    if extra_check:
        problems += extra_check(result)
    result["problems"] = problems
    result["passed"] = not problems
    return result


def ms(seconds) -> float:
    return round(seconds * 1000, 1)


# -- attackers: processes of their own

class Attacker:
    """`python -m bench.attack --attacker KIND ARGS`: a process in this namespace printing JSON figures at the end."""

    def __init__(self, kind: str, **args):
        self.proc = subprocess.Popen([*IN_ATTACKERS, sys.executable, "-m", "bench.attack", "--attacker", kind,
                                      json.dumps(args)],
                                     cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=dict(os.environ, PYTHONPATH=os.path.join(ROOT, "exporter")),
                                     preexec_fn=attacker_priority)
        if kind in PREPARING:  # the legitimate client starts when the attack does
            line = self.proc.stdout.readline().strip()
            if line != "ready":
                raise RuntimeError(f"attacker {kind} did not start: {line or self.proc.stderr.read()[-500:]}")

    def finish(self) -> dict:
        try:
            out, err = self.proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        try:
            return json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return {"attacker_error": (err or out)[-500:]}


class Tool:
    """An attack tool's process, ended after the attack if still running."""

    def __init__(self, argv, parse=None):
        self.parse = parse
        self.out = tempfile.TemporaryFile("w+")
        self.proc = subprocess.Popen([*IN_ATTACKERS, *argv], stdin=subprocess.DEVNULL, stdout=self.out,
                                     stderr=subprocess.STDOUT,
                                     cwd=tempfile.gettempdir(), preexec_fn=attacker_priority)

    def finish(self) -> dict:
        end(self.proc, signal.SIGINT)
        self.out.seek(0)
        text = self.out.read()
        return self.parse(text) if self.parse else {}


def attacker_priority():
    """Attackers run niced: on a real network their CPU is another machine's, here it is the daemon's two cores.
    They still get every cycle the daemon leaves, so their rate is what the daemon sustains."""
    os.nice(ATTACKER_NICE)


def raw(payload: bytes, source="127.0.0.1", timeout=0.5, half_close=False, host="127.0.0.1") -> bytes:
    """Send payload on a new connection (then shut down writing, if half_close) and read what comes back until
    close or a pause of timeout."""
    with socket.create_connection((host, PORT), timeout=timeout, source_address=(source, 0)) as conn:
        conn.sendall(payload)
        if half_close:
            conn.shutdown(socket.SHUT_WR)
        chunks = []
        try:
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except (socket.timeout, ConnectionResetError):
            pass
        return b"".join(chunks)


def statuses(data: bytes) -> list:
    return [int(m) for m in re.findall(rb"HTTP/1\.1 (\d{3}) ", data)]


def _threads(n, fn, *args):
    threads = [threading.Thread(target=fn, args=(i, *args)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def attacker_accept(args) -> dict:
    """Requests with made-up Accept values (versions, junk, huge q lists) on keep-alive connections."""
    total, seen = args["requests"], {"types": set(), "statuses": {}, "sent": 0}
    rnd = random.Random(1)
    lock = threading.Lock()

    def worker(i):
        conn = http.client.HTTPConnection(SERVER, PORT, timeout=30, source_address=(spread(i), 0))
        for n in range(i, total, args["threads"]):
            accept = rnd.choice([
                f"application/openmetrics-text; version={n}.{n % 7}.{n % 3}",
                f"text/plain; version=abc{n}",
                f"application/openmetrics-text; version=1.0.0; q={n}",
                f"*/*;q=0.{n % 10}, application/openmetrics-text;version=0.0.{n}",
                "x" * (n % 500) + f"/{n}",
            ])
            method = "GET" if n % 100 == 0 else "HEAD"
            try:
                conn.request(method, "/metrics", headers={"Accept": accept})
                r = conn.getresponse()
                r.read()
                with lock:
                    seen["types"].add(r.getheader("Content-Type"))
                    seen["statuses"][r.status] = seen["statuses"].get(r.status, 0) + 1
                    seen["sent"] += 1
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection(SERVER, PORT, timeout=30, source_address=(spread(i), 0))

    _threads(args["threads"], worker)
    return {"requests": seen["sent"], "content_types": sorted(seen["types"]),
            "statuses": {str(k): v for k, v in seen["statuses"].items()}}


def attacker_radamsa(args) -> dict:
    """pyradamsa mutations of valid requests (with and without auth), each on its own connection."""
    good = base64.b64encode(b"alice:s3cret").decode()
    corpus = [
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: application/openmetrics-text; version=1.0.0\r\n\r\n",
        b"GET /metrics?name[]=sockdiag_sockets HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip;q=0.5, *;q=0\r\n\r\n",
        f"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {good}\r\n\r\n".encode(),
        b"GET / HTTP/1.1\r\nHost: x\r\nAuthorization: basic bWFsbG9yeTpub3Bl\r\nConnection: close\r\n\r\n",
        b"HEAD http://x/metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nabcd",
        b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    ]
    counts = {"sent": 0, "statuses": {}, "errors": 0}
    lock = threading.Lock()
    # Made before the attack starts (a process per core; pyradamsa is not thread-safe): made while sending, they
    # took 150 s of the attacker's core and the "attack" measured 200,000 requests over 280 s, 72% of it quiet
    with multiprocessing.get_context("fork").Pool(len(os.sched_getaffinity(0))) as pool:
        mutations = pool.map(_mutation, [(corpus, n) for n in range(args["requests"])], chunksize=2000)
    ready()

    def worker(i):
        for n in range(i, args["requests"], args["threads"]):
            payload = mutations[n]
            try:
                got = statuses(raw(payload, source=spread(i), timeout=2, half_close=True, host=SERVER))
            except OSError:
                got = []
                with lock:
                    counts["errors"] += 1
            with lock:
                counts["sent"] += 1
                for status in got:
                    counts["statuses"][str(status)] = counts["statuses"].get(str(status), 0) + 1

    _threads(args["threads"], worker)
    return {"requests": counts["sent"], "statuses": counts["statuses"], "connection_errors": counts["errors"]}


def _mutation(job) -> bytes:
    corpus, n = job
    global _RADAMSA
    if _RADAMSA is None:
        import pyradamsa

        _RADAMSA = pyradamsa.Radamsa()
    seed = corpus[n % len(corpus)]
    return _RADAMSA.fuzz(seed, seed=n, max_mut=2 * len(seed))


_RADAMSA = None


def ready() -> None:
    """Tell the harness the attack starts now: what an attacker prepares is not part of the attack."""
    print("ready", flush=True)


def attacker_brute(args) -> dict:
    """Wrong passwords in parallel, known and unknown users, for a while."""
    counts, lock = {}, threading.Lock()
    stop = time.monotonic() + args["seconds"]

    def worker(i):
        source = spread(i % 50)
        conn = None
        n = 0
        while time.monotonic() < stop:
            n += 1
            user = "alice" if n % 2 else f"user{i}"
            token = base64.b64encode(f"{user}:guess-{i}-{n}".encode()).decode()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(SERVER, PORT, timeout=30, source_address=(source, 0))
                conn.request("GET", "/metrics", headers={"Authorization": f"Basic {token}"})
                r = conn.getresponse()
                r.read()
                status = r.status
                if r.getheader("Connection") == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException):
                status = "error"
                if conn is not None:
                    conn.close()
                conn = None
            with lock:
                counts[str(status)] = counts.get(str(status), 0) + 1

    _threads(args["threads"], worker)
    return {"attempts": sum(counts.values()), "statuses": counts}


def attacker_flood(args) -> dict:
    """One address asking as fast as it can on keep-alive connections."""
    counts, lock = {}, threading.Lock()
    stop = time.monotonic() + args["seconds"]

    def worker(i):
        conn = http.client.HTTPConnection(SERVER, PORT, timeout=30, source_address=(ATTACKER, 0))
        while time.monotonic() < stop:
            try:
                conn.request("GET", "/metrics")
                r = conn.getresponse()
                r.read()
                status = r.status
            except (OSError, http.client.HTTPException):
                status = "error"
                conn.close()
                conn = http.client.HTTPConnection(SERVER, PORT, timeout=30, source_address=(ATTACKER, 0))
            with lock:
                counts[str(status)] = counts.get(str(status), 0) + 1

    _threads(args["threads"], worker)
    return {"requests": sum(counts.values()), "statuses": counts}


def attacker_hold(args) -> dict:
    """Connections that never send a byte (to a TLS port: no ClientHello), from many addresses, held for a while;
    with trickle, one more every trickle seconds while holding (a limit stays pressed: without newcomers, every
    legitimate scrape that pushed one out leaves a descriptor free when it ends)."""
    held, refused = [], 0

    def connect(i):
        nonlocal refused
        try:
            s = socket.socket()
            s.setblocking(False)
            s.bind((spread(i) if args["spread"] else ATTACKER, 0))
            try:
                s.connect((SERVER, PORT))
            except BlockingIOError:
                pass
            held.append(s)
        except OSError:
            refused += 1

    for i in range(args["connections"]):
        connect(i)
        if i % 50 == 49:
            time.sleep(0.01)
    end, trickle = time.monotonic() + args["seconds"], args.get("trickle", 0)
    while trickle and time.monotonic() < end:  # bounded: seconds / trickle connections more
        time.sleep(trickle)
        connect(len(held))
    time.sleep(max(0.0, end - time.monotonic()))
    closed = 0
    for s in held:
        try:
            if s.recv(1) == b"":
                closed += 1
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
        s.close()
    return {"connections": len(held), "closed_by_server": closed, "failed_to_open": refused}


PREPARING = {"radamsa"}  # attackers that say "ready" once prepared
ATTACKERS = {"accept": attacker_accept, "radamsa": attacker_radamsa, "brute": attacker_brute,
             "flood": attacker_flood, "hold": attacker_hold}


# -- the attacks

def slowhttptest(mode: str, connections: int, seconds: float):
    flags = {"slowloris": ["-H", "-i", "5"], "slow_body": ["-B", "-i", "5", "-s", "8192"],
             "slow_read": ["-X", "-w", "1", "-y", "64", "-n", "5", "-z", "16", "-k", "3"]}[mode]

    def parse(text):
        states = re.findall(r"(closed|pending|connected|error|service available):\s+(\S+)",
                            re.sub(r"\x1b\[[0-9;]*m", "", text))
        last = {}
        for key, value in states:
            last[key] = value
        return {"slowhttptest": last}

    return Tool(["slowhttptest", *flags, "-c", str(connections), "-r", str(max(connections // 4, 50)),
                 "-l", str(int(seconds)), "-u", f"http://{SERVER}:{PORT}/metrics", "-p", "3"], parse)


def run_slow(mode):
    def attack(ctx):
        d = Daemon(ctx.workdir)
        try:
            n = ctx.pick(1000, 1000)
            return under_attack(mode, d, lambda: slowhttptest(mode, n, ctx.seconds + 2), ctx.seconds, ctx.short)
        finally:
            d.stop()
    return attack


def attack_tls_no_hello(ctx):
    d = Daemon(ctx.workdir, web=ctx.tls_web(), tls=True)
    try:
        n = ctx.pick(1000, 1000)

        def check(result):
            return [] if result.get("connections") == n else [f"opened {result.get('connections')} of {n}"]

        return under_attack("tls_no_client_hello", d,
                            lambda: Attacker("hold", connections=n, seconds=ctx.seconds, spread=True), ctx.seconds,
                            ctx.short, extra_check=check)
    finally:
        d.stop()


def attack_accept_values(ctx):
    d = Daemon(ctx.workdir)
    n = ctx.pick(100000, 5000)

    def check(result):
        problems = []
        if set(result.get("content_types", ())) - {"text/plain; version=0.0.4; charset=utf-8",
                                                    "application/openmetrics-text; version=1.0.0; charset=utf-8"}:
            problems.append(f"content types {result['content_types']}")
        if set(result.get("statuses", {})) != {"200"}:
            problems.append(f"statuses {result.get('statuses')}")
        if result.get("requests") != n:
            problems.append(f"{result.get('requests')} of {n} requests answered")
        return problems

    try:
        holder = []
        return under_attack("accept_values", d, lambda: holder.append(Attacker("accept", requests=n, threads=4))
                            or holder[0], ctx.until(holder), ctx.short, extra_check=check)
    finally:
        d.stop()


EMBED = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"  # a 404 from it would be a response made from body bytes
N = str(len(EMBED)).encode()
CHUNK = f"{len(EMBED):x}".encode()
SMUGGLING = {
    "CL body holds a request": b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: " + N + b"\r\n\r\n" + EMBED,
    "HEAD with a CL body": b"HEAD / HTTP/1.1\r\nHost: x\r\nContent-Length: " + N + b"\r\n\r\n" + EMBED,
    "chunked body holds a request": b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + CHUNK +
                                    b"\r\n" + EMBED + b"\r\n0\r\n\r\n",
    "CL + TE": b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + EMBED,
    "TE + CL": b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: " + N +
               b"\r\n\r\n0\r\n\r\n" + EMBED,
    "duplicate CL": b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: " + N + b"\r\nContent-Length: " + N +
                    b"\r\n\r\n" + EMBED,
    "conflicting CL": b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: " + N + b"\r\n\r\n" + EMBED,
    "CL list": b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0, " + N + b"\r\n\r\n" + EMBED,
    "obs-fold TE": b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\nContent-Length: " + N +
                   b"\r\n\r\n0\r\n\r\n" + EMBED,
    "obs-fold CL": b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n " + N + b"\r\n\r\n" + EMBED,
    "bare LF": b"GET / HTTP/1.1\nHost: x\nContent-Length: " + N + b"\n\n" + EMBED,
    "bare LF in chunk size": b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + CHUNK + b"\n" +
                             EMBED + b"\r\n0\r\n\r\n",
    "invalid chunk size": b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n" + EMBED,
    "negative chunk size": b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-" + CHUNK + b"\r\n" + EMBED,
    "huge chunk size": b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n" + EMBED,
    "TE gzip, chunked": b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n" + EMBED,
    "TE with space in name": b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\nContent-Length: " + N +
                             b"\r\n\r\n" + EMBED,
    "CL with plus": b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: +" + N + b"\r\n\r\n" + EMBED,
    "HTTP/1.0 CL body": b"GET / HTTP/1.0\r\nContent-Length: " + N + b"\r\nConnection: keep-alive\r\n\r\n" + EMBED,
    "0.9 line then request": b"GET /smuggled\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
}


def attack_smuggling(ctx):
    d = Daemon(ctx.workdir)
    answers = {}

    class Corpus:
        def __init__(self):
            self.thread = threading.Thread(target=self.run)
            self.thread.start()

        def run(self):
            for name, payload in SMUGGLING.items():
                answers[name] = statuses(raw(payload, timeout=1.0))

        def finish(self):
            self.thread.join()
            return {"answers": answers}

    def check(result):
        return [f"{name}: {got}" for name, got in answers.items() if len(got) > 1 or 404 in got]

    try:
        return under_attack("smuggling", d, Corpus, ctx.pick(10, 8), ctx.short, extra_check=check)
    finally:
        d.stop()


def attack_radamsa(ctx):
    d = Daemon(ctx.workdir, web=f"basic_auth_users:\n  alice: {ctx.hash(4)}\nbasic_auth_excluded_paths: [/]\n")
    headers = {"Authorization": "Basic " + base64.b64encode(b"alice:s3cret").decode()}
    n = ctx.pick(200000, 5000)

    def check(result):
        problems = [] if "500" not in result.get("statuses", {}) else ["HTTP 500"]
        return problems + ([] if result.get("requests") == n else [f"{result.get('requests')} of {n} sent"])

    try:
        holder = []
        return under_attack("radamsa", d, lambda: holder.append(Attacker("radamsa", requests=n, threads=6))
                            or holder[0], ctx.until(holder), ctx.short, headers=headers, extra_check=check)
    finally:
        d.stop()


def attack_brute_force(ctx):
    d = Daemon(ctx.workdir, web=f"basic_auth_users:\n  alice: {ctx.hash(10)}\n")
    headers = {"Authorization": "Basic " + base64.b64encode(b"alice:s3cret").decode()}
    try:
        timing = user_timing(ctx.pick(40, 12))
        seconds = ctx.pick(30, 8)

        def check(result):
            spread = abs(timing["known_ms"] - timing["unknown_ms"]) / max(timing["known_ms"], timing["unknown_ms"])
            return [] if spread <= 0.10 else [f"known/unknown user medians differ by {100 * spread:.0f}%"]

        result = under_attack("brute_force", d, lambda: Attacker("brute", threads=ctx.pick(200, 100),
                                                                   seconds=seconds), seconds, ctx.short,
                              headers=headers, extra_check=check)
        result.update(timing)
        return result
    finally:
        d.stop()


def user_timing(n: int) -> dict:
    """Medians of wrong passwords for a known and an unknown user, alternating, each a bcrypt check."""
    times = {"alice": [], "mallory": []}
    for i in range(n):
        for user in times:
            token = base64.b64encode(f"{user}:wrong-{i}".encode()).decode()
            started = time.perf_counter()
            status = scrape(None, headers={"Authorization": f"Basic {token}"})[0]
            times[user].append(time.perf_counter() - started)
            assert status == 401, status
    return {"known_ms": ms(statistics.median(times["alice"])), "unknown_ms": ms(statistics.median(times["mallory"]))}


def attack_rate_flood(ctx):
    d = Daemon(ctx.workdir, web="rate_limit:\n  interval: 100ms\n  burst: 10\n")

    def check(result):
        return [] if result.get("statuses", {}).get("429") else ["the flood was never refused"]

    try:
        seconds = ctx.pick(20, 8)
        return under_attack("rate_limit_flood", d, lambda: Attacker("flood", threads=4, seconds=seconds), seconds,
                            ctx.short, extra_check=check, idle_gap=0.15)  # within the client's own 10/s
    finally:
        d.stop()


def attack_fd_limit(ctx):
    """The fd limit below the connection caps (a misconfiguration the unit's LimitNOFILE avoids): idle
    connections take every descriptor; the daemon must not spin, and must serve again when they go."""
    limit = 256
    d = Daemon(ctx.workdir, config="web: {max_connections: 2000, max_connections_per_client: 2000}\n", nofile=limit)
    seconds = ctx.pick(15, 8)
    at_limit = {}

    def check(result):
        problems = []
        if at_limit.get("fds", 0) < limit - 8:  # a few are always between close and accept
            problems.append(f"never at the limit: {at_limit}")
        if at_limit.get("cpu_percent", 100) >= 5:
            problems.append(f"CPU {at_limit.get('cpu_percent')}% at the limit")
        return problems

    class Hold:
        def __init__(self):
            self.attacker = Attacker("hold", connections=limit + 200, seconds=seconds, spread=False,
                                     trickle=0.05)
            self.thread = threading.Thread(target=self.watch)
            self.thread.start()

        def watch(self):  # between every descriptor taken and the read timeout (10 s) freeing them
            time.sleep(2)
            u0, t0 = d.usage(), time.monotonic()
            time.sleep(min(6, seconds / 2))
            u1 = d.usage()
            at_limit.update(fds=u1["fds"], cpu_percent=round(100 * (u1["cpu_s"] - u0["cpu_s"]) /
                                                              (time.monotonic() - t0), 1))

        def finish(self):
            self.thread.join()
            return {"at_limit": at_limit, **self.attacker.finish()}

    try:
        return under_attack("fd_limit", d, Hold, seconds, ctx.short, extra_check=check)
    finally:
        d.stop()


def attack_testssl(ctx):
    """The default TLS settings, a certificate as a CA would issue it (CRL URI, 200 days), and the response headers
    README's example sets (testssl -h rates a server without them MEDIUM; they are not TLS settings)."""
    d = Daemon(ctx.workdir, web=ctx.tls_web() + "http_server_config:\n  headers:\n"
               "    Strict-Transport-Security: max-age=31536000\n    X-Frame-Options: deny\n"
               "    X-Content-Type-Options: nosniff\n", tls=True)
    out = os.path.join(ctx.workdir, "testssl.json")
    findings = {}

    def parse(text):
        try:
            entries = json.load(open(out))
        except (OSError, ValueError):
            return {"testssl_error": text[-500:]}
        bad = [f"{e['id']}: {e['finding']}" for e in entries if e.get("severity") in ("MEDIUM", "HIGH", "CRITICAL")]
        cbc = [f"{e['id']}: {e['finding']}" for e in entries
               if e["id"].startswith("cipher") and "CBC" in e.get("finding", "") and "not offered" not in
               e.get("finding", "")]
        findings.update(bad=bad, cbc=cbc)
        offered = [e["finding"].split() for e in entries if e["id"].startswith("cipher-tls")]
        return {"testssl_checks": len(entries), "medium_or_worse": bad, "cbc_offered": cbc,
                "ciphers_offered": sorted({f"{words[0]} {words[1]} {words[3]}" for words in offered
                                           if len(words) > 3})}

    checks = ["-p", "-s", "-f", "-U", "-E", "-S", "-h"] if not ctx.short else ["-p", "-s", "-f", "-U", "-E"]
    tool = []

    def start():
        tool.append(Tool(["testssl", "--quiet", "--color", "0", "--warnings", "off", "--add-ca",
                          os.path.join(ctx.workdir, "ca.crt"), "--jsonfile", out, *checks,
                          f"https://{SERVER}:{PORT}/"], parse))
        return tool[0]

    def check(result):
        return [f"testssl: {x}" for x in findings.get("bad", []) + findings.get("cbc", [])] or \
            ([] if findings else [f"testssl gave no findings: {result.get('testssl_error')}"])

    try:
        return under_attack("testssl", d, start, ctx.until(tool), ctx.short, extra_check=check)
    finally:
        d.stop()


def keepalive_stalls(ctx) -> dict:
    """Sequential keep-alive requests for / on one connection: a response in two writes would stall 40 ms."""
    d = Daemon(ctx.workdir)
    try:
        n = 1000
        conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=10, source_address=(LEGIT, 0))
        times = []
        for _ in range(n):
            started = time.perf_counter()
            conn.request("GET", "/")
            r = conn.getresponse()
            r.read()
            times.append(time.perf_counter() - started)
        conn.close()
        stalls = sum(t >= STALL for t in times)
        result = {"attack": "keepalive_40ms", "requests": n, "p50_ms": ms(pct(times, 50)),
                  "p99_ms": ms(pct(times, 99)), "max_ms": ms(max(times)), "at_or_above_40ms": stalls}
        result["problems"] = [] if pct(times, 99) < STALL else [f"p99 {result['p99_ms']} ms"]
        result["passed"] = not result["problems"]
        return result
    finally:
        d.stop()


ATTACKS = {
    "slowloris": run_slow("slowloris"),
    "slow_body": run_slow("slow_body"),
    "slow_read": run_slow("slow_read"),
    "tls_no_client_hello": attack_tls_no_hello,
    "accept_values": attack_accept_values,
    "smuggling": attack_smuggling,
    "radamsa": attack_radamsa,
    "brute_force": attack_brute_force,
    "rate_limit_flood": attack_rate_flood,
    "fd_limit": attack_fd_limit,
    "testssl": attack_testssl,
    "keepalive_40ms": keepalive_stalls,
}


class Context:
    def __init__(self, workdir: str, short: bool):
        self.workdir, self.short = workdir, short
        self.seconds = 6 if short else 30
        self._pki = False

    def pick(self, full, short):
        return short if self.short else full

    def until(self, holder: list) -> float:
        """A duration that ends when the attacker or tool started into holder does (attacks counted in requests)."""
        return _Until(lambda: bool(holder) and holder[0].proc.poll() is not None)

    def hash(self, cost: int) -> str:
        import bcrypt

        return bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=cost)).decode().replace("$2b$", "$2y$", 1)

    def tls_web(self) -> str:
        if not self._pki:
            make_pki(self.workdir)
            self._pki = True
        return f"tls_server_config:\n  cert_file: {self.workdir}/server.crt\n  key_file: {self.workdir}/server.key\n"


class _Until(float):
    """A duration for under_attack that is really 'until done' (bounded by 600 s)."""

    def __new__(cls, done):
        obj = super().__new__(cls, 600.0)
        obj.done = done
        return obj


def make_pki(d: str) -> None:
    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "300",
            "-subj", "/CN=attack test CA", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj",
            "/CN=localhost")
    with open(os.path.join(d, "server.ext"), "w") as f:
        f.write(f"subjectAltName=IP:127.0.0.1,IP:{SERVER},DNS:localhost\nextendedKeyUsage=serverAuth\n"
                "crlDistributionPoints=URI:http://127.0.0.1/ca.crl\n"
                "keyUsage=critical,digitalSignature,keyEncipherment\nbasicConstraints=CA:FALSE\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out",
            "server.crt", "-days", "200", "-sha256", "-extfile", "server.ext")


IN_ATTACKERS = []  # ip netns exec <the attackers' namespace>


def namespace_names() -> list:
    """The daemon's, the attackers' and the parent both are made from."""
    return [f"sdattack-{os.getpid()}", f"sdattack-{os.getpid()}-a", f"sdattack-{os.getpid()}-p"]


def make_namespaces() -> None:
    """The daemon's namespace (entered by this process, before any thread starts) and the attackers', joined by a
    veth pair. Both are made inside a parent with net.ipv4.tcp_child_ehash_entries set, so that each has a TCP hash
    of its own: a TCP dump walks its namespace's hash, and with the host's shared one the daemon's collection walked
    the attackers' TIME_WAITs (radamsa leaves 30,000) and every other suite's sockets (p95 of scrapes 3x idle)."""
    server, attackers, parent = namespace_names()
    subprocess.run(["ip", "netns", "add", parent], check=True)
    subprocess.run(["ip", "netns", "exec", parent, "sysctl", "-qw", "net.ipv4.tcp_child_ehash_entries=16384"],
                   check=True)
    for name in (server, attackers):
        # ip netns exec and unshare exec in turn: once the pid runs sleep, it is in the new namespace
        holder = subprocess.Popen(["ip", "netns", "exec", parent, "unshare", "--net", "sleep", "60"])
        try:
            for _ in range(250):
                if open(f"/proc/{holder.pid}/comm").read().strip() == "sleep":
                    break
                time.sleep(0.02)
            subprocess.run(["ip", "netns", "attach", name, str(holder.pid)], check=True)
        finally:
            holder.kill()
            holder.wait()
    fd = os.open(f"/run/netns/{server}", os.O_RDONLY)
    try:
        if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns")
    finally:
        os.close(fd)
    veth = f"sda{os.getpid() % 100000}"
    here = [f"link add {veth} type veth peer name {veth}b netns {attackers}", f"addr add {SERVER}/16 dev {veth}",
            f"link set {veth} up", "link set lo up"]
    there = ["link set lo up", f"link set {veth}b up", f"addr add {ATTACKER}/16 dev {veth}b"]
    there += [f"addr add {spread(i)}/16 dev {veth}b" for i in range(SPREAD)]
    for prefix, commands in ((["ip"], here), (["ip", "-n", attackers], there)):
        subprocess.run([*prefix, "-batch", "-"], input="\n".join(commands) + "\n", text=True, check=True)
    IN_ATTACKERS[:] = ["ip", "netns", "exec", attackers]


def table(results) -> str:
    """README's table: legitimate scrapes idle vs under attack, the daemon's CPU, RSS and fds, the verdict."""
    rows = ["| attack | legit scrapes (failed) | p50 idle → attack (ms) | p95 idle → attack (ms) | daemon CPU | "
            "RSS before / peak / after (MB) | fds before / peak / after | passed |", "|" + "---|" * 8]
    for r in results:
        if "idle_p50_ms" not in r:
            rows.append(f"| {r['attack']} | {r['requests']} sequential on one connection | "
                        f"{r['p50_ms']} (p99 {r['p99_ms']}, max {r['max_ms']}) | | | | | "
                        f"{'yes' if r['passed'] else 'NO: ' + '; '.join(r['problems'])} |")
            continue
        mb = [f"{kb / 1024:.1f}" if kb else "-" for kb in r["rss_kb"]]
        rows.append(f"| {r['attack']} | {r['legit_scrapes']} ({len(r['legit_failures'])}) | "
                    f"{r['idle_p50_ms']} → {r['attack_p50_ms']} | {r['idle_p95_ms']} → {r['attack_p95_ms']} | "
                    f"{r['cpu_percent']}% | {' / '.join(mb)} | {' / '.join(str(f) for f in r['fds'])} | "
                    f"{'yes' if r['passed'] else 'NO: ' + '; '.join(r['problems'])} |")
    return "\n".join(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--short", action="store_true", help="the CI form: smaller numbers, a looser latency bound")
    ap.add_argument("--only", help="comma-separated attacks: " + ", ".join(ATTACKS))
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--attacker", help=argparse.SUPPRESS)
    ap.add_argument("args", nargs="?", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.attacker:
        print(json.dumps(ATTACKERS[args.attacker](json.loads(args.args))), flush=True)
        return 0
    names = args.only.split(",") if args.only else list(ATTACKS)
    unknown = set(names) - set(ATTACKS)
    if unknown:
        ap.error(f"unknown attacks: {', '.join(sorted(unknown))}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))  # slowhttptest's 1,000 connections and more
    namespaces = namespace_names()
    workdir = tempfile.mkdtemp(prefix="sdattack-")
    results = []
    try:
        make_namespaces()
        ctx = Context(workdir, args.short)
        for name in names:
            started = time.monotonic()
            result = ATTACKS[name](ctx)
            result["wall_seconds"] = round(time.monotonic() - started, 1)
            results.append(result)
            print(json.dumps(result), flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        for name in namespaces:
            subprocess.run(["ip", "netns", "del", name], check=False)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    print(table(results))
    failed = [r["attack"] for r in results if not r["passed"]]
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed" + (f": {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
