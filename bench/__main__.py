"""Scrape cost from 10k to 1M sockets, side by side with ss and node_exporter, measured in the same run.

    sudo .venv/bin/python -m bench [--sizes 10k,100k,1m] [--repeat 5] [--config FILE] [--out FILE]
    sudo .venv/bin/python -m bench --churn 5k,10k,20k [--seconds 10] [--unprivileged] [--receive-buffer BYTES]

For each size: build the population in a fresh namespace (bench/population.py), start sockdiag_exporter (default
configuration) and node_exporter (tcpstat only) in it, then measure in rounds, each alternating every
measurement (A B C ... A B C ...): the kernel floor, every collector alone (the tcp collector also with its
ephemeral-port analysis due, which it does once a minute by default), a full /metrics scrape over HTTP,
`ss -tan`, `ss -xan`, node_exporter's scrape; before and after the rounds, how many cores the idle host keeps busy
(the population's churning worker and whatever else the host runs: a scrape on every core competes with it, a
one-thread measurement mostly does not). Then 50 concurrent scrapes (how many collections they cost) and the
exporter's peak RSS. Prints one table per size with medians, spreads and ratios, and writes everything as JSON.
Everything the run creates is removed at the end, also on Ctrl-C.
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time

from .population import ROOT, Population

EXPORTER_PORT = 19965
NODE_EXPORTER_PORT = 19100
BASELINE_PORT = 19966
COLLECTORS = ("tcp", "udp", "unix", "netlink", "packet", "mptcp", "raw", "udplite", "netstat")


def parse_size(text: str) -> int:
    text = text.strip().lower()
    factor = {"k": 1000, "m": 1000000}.get(text[-1], 1)
    return int(float(text.rstrip("km")) * factor)


class Agent:
    """bench.agent running inside the namespace, one JSON answer per command."""

    def __init__(self, ns: str, config: str):
        self.proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-m", "bench.agent"], cwd=ROOT,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env=dict(os.environ, SOCKDIAG_BENCH_CONFIG=config))

    def ask(self, *words):
        self.proc.stdin.write(" ".join(str(w) for w in words) + "\n")
        self.proc.stdin.flush()
        answer = json.loads(self.proc.stdout.readline())
        if isinstance(answer, dict) and "error" in answer:
            raise RuntimeError(answer["error"])
        return answer

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def start(ns: str, argv: list, tree: str = ROOT) -> subprocess.Popen:
    """A daemon inside the namespace, running the exporter of tree; `ip netns exec` execs it, so the pid is the
    daemon's."""
    return subprocess.Popen(["ip", "netns", "exec", ns, *argv], cwd=tree, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=dict(os.environ, PYTHONPATH=os.path.join(tree, "exporter")))


def wait_http(agent: Agent, url: str) -> None:
    for _ in range(300):
        try:
            agent.ask("get", url)
            return
        except RuntimeError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} never answered")


def timed(argv: list) -> float:
    started = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far (clock ticks of /proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def background_cores(seconds: float = 3.0) -> float:
    """How many of the host's cores are busy while nothing is measured: the population's churning worker, the
    daemons' idle work, anything else the host runs. A scrape on every core shares them with it; a one-thread
    measurement (the kernel floor) mostly does not. From /proc/stat (all but idle and iowait), over seconds."""
    def busy_and_total():
        with open("/proc/stat") as f:
            ticks = [int(t) for t in f.readline().split()[1:]]
        return sum(ticks) - ticks[3] - ticks[4], sum(ticks)

    busy, total = busy_and_total()
    time.sleep(seconds)
    busy2, total2 = busy_and_total()
    return (busy2 - busy) / max(total2 - total, 1) * os.cpu_count()


def cpu_timed(pid: int, into: list, run) -> float:
    """run()'s result (seconds); the CPU seconds process pid spent meanwhile appended to into."""
    before = cpu_seconds(pid)
    seconds = run()
    into.append(cpu_seconds(pid) - before)
    return seconds


def rss_kb(pid: int) -> dict:
    fields = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status"))
    return {"rss_kb": int(fields["VmRSS"].split()[0]), "peak_kb": int(fields["VmHWM"].split()[0])}


def measure(size: int, repeat: int, config: str, baseline: str = "", baseline_config: str = "",
            destinations: int = 0) -> dict:
    ns = f"sdbench-{os.getpid()}"
    ours_url = f"http://127.0.0.1:{EXPORTER_PORT}/metrics"
    baseline_url = f"http://127.0.0.1:{BASELINE_PORT}/metrics"
    node_url = f"http://127.0.0.1:{NODE_EXPORTER_PORT}/metrics"
    print(f"\n== {size:,} sockets: building the population", flush=True)
    built = time.monotonic()
    with Population(size, ns, destinations) as population:
        summary = population.summary()
        print(f"   built in {time.monotonic() - built:.0f} s: {summary}", flush=True)
        daemon = start(ns, [sys.executable, "-m", "sockdiag_exporter", f"--web.listen-address=127.0.0.1:{EXPORTER_PORT}",
                            "--log.level=warn"] + ([f"--config.file={config}"] if config else []))
        node = start(ns, ["prometheus-node-exporter", "--collector.disable-defaults", "--collector.tcpstat",
                          f"--web.listen-address=127.0.0.1:{NODE_EXPORTER_PORT}"])
        other_config = baseline_config or config
        other = start(ns, [sys.executable, "-m", "sockdiag_exporter", f"--web.listen-address=127.0.0.1:{BASELINE_PORT}",
                           "--log.level=warn"] + ([f"--config.file={other_config}"] if other_config else []),
                      baseline) if baseline else None
        agent = Agent(ns, config)
        try:
            wait_http(agent, ours_url)
            wait_http(agent, node_url)
            if other:
                wait_http(agent, baseline_url)
            runs = {
                "kernel floor: tcp dumps": lambda: agent.ask("floor", "tcp"),
                "kernel floor: every dump of a collection": lambda: agent.ask("floor", "all"),
                "kernel floor: unix dump": lambda: agent.ask("floor", "unix"),
                **{f"collector {name}": (lambda n=name: agent.ask("collect", n)) for name in COLLECTORS},
                "collector tcp, port analysis due": lambda: agent.ask("analyze", "tcp"),
                "sockdiag_exporter full scrape (HTTP)": lambda: cpu_timed(daemon.pid, cpu["ours"],
                                                                          lambda: agent.ask("get", ours_url)),
                "ss -tan": lambda: timed(["ss", "-N", ns, "-tan"]),
                "ss -xan": lambda: timed(["ss", "-N", ns, "-xan"]),
                "node_exporter tcpstat scrape (HTTP)": lambda: agent.ask("get", node_url),
            }
            if health_on(config):
                runs["kernel floor: tcp_health dumps"] = lambda: agent.ask("floor", "tcp_health")
                runs["collector tcp_health"] = lambda: agent.ask("collect", "tcp_health")
            if other:
                runs["baseline full scrape (HTTP)"] = lambda: cpu_timed(other.pid, cpu["baseline"],
                                                                        lambda: agent.ask("get", baseline_url))
            background = [background_cores()]
            samples = {name: [] for name in runs}
            cpu = {"ours": [], "baseline": []}  # the daemon's CPU seconds per full scrape
            for _ in range(repeat):
                for name, run in runs.items():
                    samples[name].append(run())
            background.append(background_cores())
            concurrency = agent.ask("concurrent", ours_url, 50)
            memory = rss_kb(daemon.pid)
            node_memory = rss_kb(node.pid)
            baseline_memory = rss_kb(other.pid) if other else None
        finally:
            agent.close()
            for proc in (daemon, node, other):
                if proc:
                    proc.terminate()
                    proc.wait(timeout=30)
    return {"size": size, "population": summary, "repeat": repeat, "samples": samples,
            "concurrency": concurrency, "exporter_memory": memory, "node_exporter_memory": node_memory,
            "baseline": baseline, "baseline_memory": baseline_memory, "cpu_per_scrape": cpu,
            "background_cores": background}


def health_on(config: str) -> bool:
    """Whether the exporter's configuration file turns tcp_health on (then its dumps are measured too)."""
    from sockdiag_exporter.config import load

    return bool(config) and load(config).tcp_health.enabled


def med(result: dict, name: str) -> float:
    return statistics.median(result["samples"][name])


def report(result: dict) -> str:
    lines = [f"\n{result['size']:,} sockets — {result['population']}",
             f"{'measurement':42s} {'median':>9s} {'spread':>19s}"]
    for name, values in result["samples"].items():
        lines.append(f"{name:42s} {statistics.median(values):8.3f}s  [{min(values):.3f} - {max(values):.3f}]")
    tcp, full = med(result, "collector tcp"), med(result, "sockdiag_exporter full scrape (HTTP)")
    floor, node = med(result, "kernel floor: tcp dumps"), med(result, "node_exporter tcpstat scrape (HTTP)")
    ss = med(result, "ss -tan")
    c, m, nm = result["concurrency"], result["exporter_memory"], result["node_exporter_memory"]
    lines += [
        f"ratios: tcp collector / node_exporter tcpstat = {tcp / node:.2f}   full scrape / node_exporter = "
        f"{full / node:.2f}",
        f"        tcp collector / ss -tan = {tcp / ss:.2f}   tcp collector / kernel floor = {tcp / floor:.2f}   "
        f"full scrape / kernel floor = {full / floor:.2f}",
        f"50 concurrent scrapes: slowest {c['slowest']:.3f}s, {c['dumps']:.0f} dumps = {c['collections']:.2f} "
        f"collections of {c['dumps_per_collection']:.0f} dumps",
        f"exporter RSS {m['rss_kb'] / 1024:.1f} MB (peak {m['peak_kb'] / 1024:.1f} MB); node_exporter RSS "
        f"{nm['rss_kb'] / 1024:.1f} MB (peak {nm['peak_kb'] / 1024:.1f} MB)",
    ]
    every = med(result, "kernel floor: every dump of a collection")
    lines.append(f"        full scrape / every dump's kernel floor = {full / every:.2f}; exporter CPU per full scrape "
                 f"{statistics.median(result['cpu_per_scrape']['ours']):.3f}s")
    lines.append(f"        the idle host (before and after the rounds) kept {result['background_cores'][0]:.2f} and "
                 f"{result['background_cores'][1]:.2f} of its {os.cpu_count()} cores busy")
    if "collector tcp_health" in result["samples"]:
        hf, hc = med(result, "kernel floor: tcp_health dumps"), med(result, "collector tcp_health")
        lines.append(f"tcp_health: kernel floor {hf:.3f}s ({hf / floor:.2f}x the tcp dumps' floor), collector "
                     f"{hc:.3f}s ({hc / hf:.2f}x its floor); full scrape / (tcp + tcp_health floors) = "
                     f"{full / (floor + hf):.2f}")
    if result.get("baseline"):
        b, bm = med(result, "baseline full scrape (HTTP)"), result["baseline_memory"]
        pairs = [x / y for x, y in zip(result["samples"]["sockdiag_exporter full scrape (HTTP)"],
                                       result["samples"]["baseline full scrape (HTTP)"])]
        lines.append(f"baseline {result['baseline']}: full scrape {b:.3f}s; this tree / baseline = {full / b:.2f} "
                     f"(per round: {min(pairs):.2f} - {max(pairs):.2f}); baseline RSS {bm['rss_kb'] / 1024:.1f} MB, "
                     f"CPU per full scrape {statistics.median(result['cpu_per_scrape']['baseline']):.3f}s")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10k,100k,1m", help="comma-separated socket counts (default 10k,100k,1m)")
    ap.add_argument("--repeat", type=int, default=5, help="rounds of every measurement (default 5)")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "latest.json"), help="JSON output")
    ap.add_argument("--config", default="", help="exporter configuration file (e.g. bench/memory-tcp.yml)")
    ap.add_argument("--baseline", default="",
                    help="another checkout of the exporter (or this one): its full scrape is measured in the same rounds "
                         "(A/B)")
    ap.add_argument("--baseline-config", default="", help="the baseline's configuration file (default: --config's)")
    ap.add_argument("--destinations", type=int, default=0,
                    help="IPv4 client connections: half to one destination per worker, half spread over this many")
    ap.add_argument("--namespaces", type=int, default=0,
                    help="instead: scrape cost with this many named namespaces (see --per-namespace)")
    ap.add_argument("--per-namespace", type=int, default=1000, help="sockets in each of --namespaces")
    ap.add_argument("--child-ehash", type=int, default=-1,
                    help="with --namespaces: set net.ipv4.tcp_child_ehash_entries for the run (per-namespace TCP hash)")
    ap.add_argument("--churn", default="",
                    help="instead: connection churn at these comma-separated rates (connections/s) through a "
                         "namespace, and what the flows collector costs (see bench/churn.py)")
    ap.add_argument("--seconds", type=float, default=10.0, help="with --churn: seconds of churn per rate")
    ap.add_argument("--unprivileged", action="store_true", help="with --churn: the exporter runs as nobody")
    ap.add_argument("--receive-buffer", type=int, default=0, help="with --churn: flows.receive_buffer_bytes")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench: run as root (it creates a network namespace and raises sysctls in it)")
    if args.churn:
        from . import churn

        results = []
        for rate in [parse_size(r) for r in args.churn.split(",")]:
            print(f"== churn: {rate:,} connections/s for {args.seconds:g} s", flush=True)
            results.append(churn.measure(rate, args.seconds, args.unprivileged, args.receive_buffer))
        print(churn.report(results), flush=True)
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump({"kernel": os.uname().release, "churn": results}, f, indent=1)
        return
    if not shutil.which("prometheus-node-exporter"):
        print("bench: installing prometheus-node-exporter from Debian", flush=True)
        subprocess.run(["apt-get", "install", "-y", "-q", "prometheus-node-exporter"], check=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"), stdout=subprocess.DEVNULL)
        subprocess.run(["systemctl", "disable", "--now", "prometheus-node-exporter"], check=False,
                       stderr=subprocess.DEVNULL)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))  # unwinds through the cleanups
    if args.namespaces:
        from . import namespaces

        result = namespaces.measure(args.namespaces, args.per_namespace, args.repeat, args.child_ehash,
                                    os.path.abspath(args.baseline) if args.baseline else "")
        print(namespaces.report(result), flush=True)
        return
    results = []
    for size in [parse_size(s) for s in args.sizes.split(",")]:
        results.append(measure(size, args.repeat, os.path.abspath(args.config) if args.config else "",
                               os.path.abspath(args.baseline) if args.baseline else "",
                               os.path.abspath(args.baseline_config) if args.baseline_config else "",
                               args.destinations))
        print(report(results[-1]), flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"kernel": os.uname().release, "results": results}, f, indent=1)
    print(f"\nwritten: {args.out}")


if __name__ == "__main__":
    main()
