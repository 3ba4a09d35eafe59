"""Scrape cost with many network namespaces: N named namespaces with S sockets each, the exporter collecting all.

    sudo .venv/bin/python -m bench --namespaces 100 --per-namespace 1000 [--child-ehash 4096]

Every namespace's TCP dump walks the kernel's established hash; unless net.ipv4.tcp_child_ehash_entries was set
before the namespace was made, that hash is the host's, holding every namespace's sockets, so N namespaces cost
N walks of all of them. --child-ehash sets that sysctl for the run (and restores it) to show the difference.
"""

import os
import statistics
import subprocess
import sys
import time
import urllib.request

from .population import ROOT, SYSCTLS

PORT = 19967
PER_WORKER = 18  # namespaces per worker process: 18 x 1000 sockets under the 20,000 fd limit


def scrape(url: str) -> tuple:
    started = time.perf_counter()
    body = urllib.request.urlopen(url, timeout=300).read()
    return time.perf_counter() - started, body


def series(body: bytes) -> int:
    return sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))


def measure(count: int, per_namespace: int, repeat: int, child_ehash: int = -1, baseline: str = "") -> dict:
    """baseline: another checkout of the exporter, measured with the same namespaces in the same rounds."""
    prefix = f"sdbenchns-{os.getpid()}"
    names = [f"{prefix}-{i:03d}" for i in range(count)]
    workers, daemons = [], []
    sysctl = "/proc/sys/net/ipv4/tcp_child_ehash_entries"
    saved = open(sysctl).read().strip() if os.path.exists(sysctl) else None
    try:
        if child_ehash >= 0 and saved is not None:
            with open(sysctl, "w") as f:
                f.write(str(child_ehash))
        for name in names:
            subprocess.run(["ip", "netns", "add", name], check=True)
            subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
            for key, value in SYSCTLS.items():
                subprocess.run(["ip", "netns", "exec", name, "sysctl", "-q", "-w", f"{key}={value}"], check=True)
        for start in range(0, count, PER_WORKER):
            workers.append(subprocess.Popen(
                [sys.executable, "-m", "bench.worker", "namespaces", str(per_namespace), "21000",
                 ",".join(names[start:start + PER_WORKER])], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                text=True))
        for w in workers:
            if w.stdout.readline().strip() != "ready":
                raise RuntimeError("a namespace worker failed")
        config = os.path.join(ROOT, "bench", "results", "namespaces.yml")
        os.makedirs(os.path.dirname(config), exist_ok=True)
        with open(config, "w") as f:
            f.write(f"namespaces: {{named: true, include: ['{prefix}-*'], max_namespaces: {count + 1}}}\n")
        variants = [("own namespace only", [], ROOT), (f"{count} namespaces", [f"--config.file={config}"], ROOT)]
        if baseline:
            variants.append((f"{count} namespaces, baseline", [f"--config.file={config}"], baseline))
        urls = {}
        fresh_after = {label: 0.0 for label, _, _ in variants}
        for index, (label, args, tree) in enumerate(variants):  # all started first, then measured round by round
            port = PORT + index
            daemons.append(subprocess.Popen(
                [sys.executable, "-m", "sockdiag_exporter", f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn",
                 *args], cwd=tree, env=dict(os.environ, PYTHONPATH=os.path.join(tree, "exporter"))))
            urls[label] = f"http://127.0.0.1:{port}/metrics"
            for _ in range(300):
                try:
                    started = time.monotonic()
                    scrape(urls[label])
                    fresh_after[label] = time.monotonic() + (time.monotonic() - started)
                    break
                except OSError:
                    time.sleep(0.1)
        times = {label: [] for label in urls}
        bodies = {}
        for _ in range(repeat):
            for label, url in urls.items():
                # a scrape sooner than a collection's duration after it ended would be served it again
                time.sleep(max(0.0, fresh_after[label] - time.monotonic()))
                elapsed, bodies[label] = scrape(url)
                times[label].append(elapsed)
                fresh_after[label] = time.monotonic() + elapsed
        results = {}
        for (label, _, _), daemon in zip(variants, daemons):
            fields = dict(line.split(":", 1) for line in open(f"/proc/{daemon.pid}/status"))
            durations = {}
            for line in bodies[label].decode().splitlines():
                if line.startswith("sockdiag_scrape_collector_duration_seconds{"):
                    durations[line.split('"')[1]] = float(line.split()[-1])
            results[label] = {"median": statistics.median(times[label]), "min": min(times[label]),
                              "max": max(times[label]), "series": series(bodies[label]),
                              "rss_kb": int(fields["VmRSS"].split()[0]),
                              "collectors_s": round(sum(durations.values()), 3),
                              "slowest_collectors": sorted(durations.items(), key=lambda kv: -kv[1])[:4]}
        return {"namespaces": count, "per_namespace": per_namespace, "child_ehash": child_ehash,
                "results": results}
    finally:
        if saved is not None:
            with open(sysctl, "w") as f:
                f.write(saved)
        for d in daemons:
            d.terminate()
            d.wait()
        for w in workers:
            try:
                w.stdin.close()
            except OSError:
                pass
            w.wait()
        for name in names:
            subprocess.run(["ip", "netns", "del", name], check=False)


def report(result: dict) -> str:
    ehash = result["child_ehash"]
    lines = [f"\n{result['namespaces']} namespaces x {result['per_namespace']} sockets, "
             f"{'the host' + chr(39) + 's shared' if ehash < 0 else str(ehash) + '-entry per-namespace'} TCP hash"]
    results = result["results"]
    for label, r in results.items():
        lines.append(f"{label:24s} full scrape median {r['median']:.3f}s [{r['min']:.3f}-{r['max']:.3f}]  "
                     f"{r['series']} series  RSS {r['rss_kb'] / 1024:.1f} MB  collectors {r['collectors_s']}s "
                     f"(slowest: {', '.join(f'{n} {t:.3f}s' for n, t in r['slowest_collectors'])})")
    ours = results.get(f"{result['namespaces']} namespaces")
    theirs = results.get(f"{result['namespaces']} namespaces, baseline")
    if ours and theirs:
        lines.append(f"this tree / baseline: {ours['median'] / theirs['median']:.2f}")
    return "\n".join(lines)
