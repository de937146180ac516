#!/usr/bin/env python3
"""End-to-end benchmark: hopstage vs rclone on the same Azurite, side by side.

For each case a fresh Azurite starts on 127.0.0.1 (it slows as it fills), the
download source is seeded once, and the tools run alternately (A B, then B A)
for --rounds rounds, uploading into fresh prefixes and downloading into fresh
directories. Each run is measured with wait4 rusage (client user+sys CPU, peak
RSS) and /proc (Azurite's CPU over the same interval). Medians and the
hopstage/rclone ratios go to a Markdown table and an SVG chart.

Usage: benches/e2e.py [--rounds 3] [--cases big,medium,small,latency] [--out docs/benchmarks.md]
Needs: target/release/hopstage, azurite-blob, rclone, python azure-storage-blob.
"""
import argparse
import asyncio
import datetime
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOP = os.environ.get("HOPSTAGE_BIN", os.path.join(ROOT, "target", "release", "hopstage"))
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
ACCOUNT = "devstoreaccount1"
CONTAINER = "bench"

CASES = {
    "big": {"desc": "1 file of 2 GiB", "files": [("f2g", 2 << 30)]},
    "medium": {"desc": "200 files of 8 MiB", "files": [(f"m/{i:03}.bin", 8 << 20) for i in range(200)]},
    "small": {"desc": "5,000 files of 4 KiB, nested",
              "files": [(f"d{i // 500}/e{(i // 50) % 10}/f{i:04}", 4096) for i in range(5000)]},
    "latency": {"desc": "5,000 files of 4 KiB, +2 ms per request", "files": None, "delay_ms": 1.0},
}


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return int(parts[11]) + int(parts[12])


def wait_port(port, timeout=60):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listening on {port}")


class Azurite:
    def __init__(self, workdir):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="azurite-", dir=workdir)
        self.proc = subprocess.Popen(
            ["azurite-blob", "--blobHost", "127.0.0.1", "--blobPort", str(self.port),
             "--location", self.dir, "--silent", "--skipApiVersionCheck", "--disableTelemetry"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)

    def endpoint(self, port=None):
        return f"http://127.0.0.1:{port or self.port}/{ACCOUNT}"

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class LatencyProxy:
    """Loopback TCP proxy adding `delay` seconds in each direction whenever
    the conversation turns (once per request, once per response)."""

    def __init__(self, upstream, delay):
        self.upstream, self.delay, self.port = upstream, delay, free_port()
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.ready.wait(10)

    def _run(self):
        asyncio.set_event_loop(self.loop)

        async def pipe(reader, writer, state, me, other):
            try:
                while True:
                    data = await reader.read(65536)
                    if not data:
                        break
                    if state["last"] != me:
                        state["last"] = me
                        await asyncio.sleep(self.delay)
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                writer.close()

        async def handle(cr, cw):
            try:
                ur, uw = await asyncio.open_connection("127.0.0.1", self.upstream)
            except OSError:
                cw.close()
                return
            state = {"last": None}
            await asyncio.gather(pipe(cr, uw, state, "c", "s"), pipe(ur, cw, state, "s", "c"))

        async def main():
            server = await asyncio.start_server(handle, "127.0.0.1", self.port)
            self.ready.set()
            async with server:
                await server.serve_forever()

        try:
            self.loop.run_until_complete(main())
        except RuntimeError:
            pass

    def stop(self):
        self.loop.call_soon_threadsafe(self.loop.stop)


def gen_files(root, files, seed=0):
    rnd = __import__("random").Random(seed)
    chunk = bytes(rnd.getrandbits(8) for _ in range(1 << 16))
    for i, (rel, size) in enumerate(files):
        p = os.path.join(root, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            left, k = size, i
            while left > 0:
                n = min(left, len(chunk))
                # Vary content per file and offset cheaply but deterministically.
                f.write(bytes([k & 0xFF]) + chunk[1:n] if n > 1 else chunk[:n])
                left -= n
                k += 1
    return root


def drop_caches():
    """Flush dirty pages and drop the page cache, so that no run pays for the
    previous run's writeback or reclaim (root only; skipped otherwise)."""
    subprocess.run(["sync"], check=False)
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError:
        pass


def run_measured(cmd, env, azurite_pid):
    drop_caches()
    a0 = cpu_ticks(azurite_pid)
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    a1 = cpu_ticks(azurite_pid)
    err = p.stderr.read().decode(errors="replace")
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{cmd[0]} failed ({code}): {err[-2000:]}")
    hz = os.sysconf("SC_CLK_TCK")
    return {"wall": wall, "cpu": ru.ru_utime + ru.ru_stime, "rss_mib": ru.ru_maxrss / 1024,
            "azurite_cpu": (a1 - a0) / hz}


def container_sas(conn):
    from azure.storage.blob import BlobServiceClient, ContainerSasPermissions, generate_container_sas
    BlobServiceClient.from_connection_string(conn).create_container(CONTAINER)
    return generate_container_sas(
        ACCOUNT, CONTAINER, account_key=KEY,
        permission=ContainerSasPermissions(read=True, write=True, delete=True, list=True, add=True,
                                           create=True),
        expiry=datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=6))


def tool_cmds(tool, direction, src_dir, prefix, dst_dir):
    if tool == "hopstage":
        if direction == "up":
            return [HOP, "push", src_dir, f"{CONTAINER}:/{prefix}", "-q"]
        return [HOP, "pull", f"{CONTAINER}:/{prefix}", dst_dir, "-q"]
    if direction == "up":
        return ["rclone", "copy", src_dir, f":azureblob:{CONTAINER}/{prefix}"]
    return ["rclone", "copy", f":azureblob:{CONTAINER}/{prefix}", dst_dir]


def bench_case(name, spec, rounds, workdir, data_dir):
    files = spec["files"] or CASES["small"]["files"]
    src = os.path.join(data_dir, "small" if spec["files"] is None else name)
    if not os.path.isdir(src):
        print(f"[{name}] generating data", flush=True)
        gen_files(src + ".tmp", files)
        os.rename(src + ".tmp", src)
    total_bytes = sum(s for _, s in files)
    results = {t: {"up": [], "down": []} for t in ("hopstage", "rclone")}
    for r in range(rounds):
        az = Azurite(workdir)
        proxy = None
        try:
            port = az.port
            if spec.get("delay_ms"):
                proxy = LatencyProxy(az.port, spec["delay_ms"] / 1000)
                port = proxy.port
            conn = (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
                    f"BlobEndpoint={az.endpoint(port)};")
            sas = container_sas(conn)
            env = dict(os.environ)
            env.update({"AZURE_STORAGE_CONNECTION_STRING": conn, "HOME": workdir,
                        "RCLONE_CONFIG": "/dev/null",
                        "RCLONE_AZUREBLOB_SAS_URL": f"{az.endpoint(port)}/{CONTAINER}?{sas}"})
            # Seed the download source (not measured).
            subprocess.run([HOP, "push", src, f"{CONTAINER}:/seed", "-q", "--no-dir-stubs"],
                           env=env, check=True)
            order = ["hopstage", "rclone"] if r % 2 == 0 else ["rclone", "hopstage"]
            # Downloads first, while Azurite holds only the seed.
            for direction in ("down", "up"):
                for tool in order:
                    dst = tempfile.mkdtemp(prefix=f"{tool}-", dir=workdir)
                    prefix = "seed" if direction == "down" else f"up-{tool}-{r}"
                    cmd = tool_cmds(tool, direction, src, prefix, dst)
                    m = run_measured(cmd, env, az.proc.pid)
                    results[tool][direction].append(m)
                    print(f"[{name}] round {r + 1} {direction:4} {tool:8} wall {m['wall']:7.2f} s  "
                          f"cpu {m['cpu']:6.2f} s  rss {m['rss_mib']:7.1f} MiB  azurite {m['azurite_cpu']:6.2f} s",
                          flush=True)
                    shutil.rmtree(dst, ignore_errors=True)
        finally:
            if proxy:
                proxy.stop()
            az.stop()
    return {"desc": spec["desc"], "files": len(files), "bytes": total_bytes, "results": results}


def med(xs, key):
    return statistics.median(x[key] for x in xs)


def summarize(all_cases):
    rows = []
    for name, c in all_cases.items():
        gib = c["bytes"] / (1 << 30)
        kfiles = c["files"] / 1000
        for d in ("down", "up"):
            row = {"case": name, "desc": c["desc"], "dir": d}
            for t in ("hopstage", "rclone"):
                xs = c["results"][t][d]
                row[t] = {"wall": med(xs, "wall"), "cpu": med(xs, "cpu"), "rss": med(xs, "rss_mib"),
                          "azurite": med(xs, "azurite_cpu"),
                          "cpu_per_gib": med(xs, "cpu") / gib, "cpu_per_kfile": med(xs, "cpu") / kfiles}
            row["ratio_wall"] = row["hopstage"]["wall"] / row["rclone"]["wall"]
            row["ratio_cpu"] = row["hopstage"]["cpu"] / row["rclone"]["cpu"]
            row["ratio_rss"] = row["hopstage"]["rss"] / row["rclone"]["rss"]
            rows.append(row)
    return rows


def svg_chart(rows, path):
    w, bar, gap = 760, 14, 10
    h = 40 + len(rows) * (3 * bar + gap) + 30
    scale = 300  # pixels for ratio 1.0
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">',
           f'<text x="10" y="18" font-size="13">hopstage / rclone, medians (shorter is better; line = parity)</text>']
    y = 34
    colors = {"ratio_wall": "#4c72b0", "ratio_cpu": "#dd8452", "ratio_rss": "#55a868"}
    for r in rows:
        out.append(f'<text x="10" y="{y + bar * 1.5 + 4}">{r["case"]} {r["dir"]}</text>')
        for i, k in enumerate(("ratio_wall", "ratio_cpu", "ratio_rss")):
            v = r[k]
            bw = min(v, 2.0) * scale
            out.append(f'<rect x="130" y="{y + i * bar}" width="{bw:.1f}" height="{bar - 2}" fill="{colors[k]}"/>')
            out.append(f'<text x="{135 + bw:.1f}" y="{y + i * bar + bar - 4}">{v:.2f}</text>')
        y += 3 * bar + gap
    out.append(f'<line x1="{130 + scale}" y1="28" x2="{130 + scale}" y2="{y}" stroke="#333" stroke-dasharray="4,3"/>')
    for i, (k, label) in enumerate((("ratio_wall", "wall time"), ("ratio_cpu", "client CPU"), ("ratio_rss", "peak RSS"))):
        out.append(f'<rect x="{130 + i * 120}" y="{y + 6}" width="12" height="12" fill="{colors[k]}"/>'
                   f'<text x="{146 + i * 120}" y="{y + 16}">{label}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out))


def machine():
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1 << 30)
    ver = lambda c: subprocess.run(c, capture_output=True, text=True).stdout.strip().splitlines()[0]
    return (f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, {platform.platform()}; "
            f"hopstage {ver([HOP, '--version'])}, {ver(['rclone', 'version'])}, "
            f"Azurite {ver(['azurite-blob', '--version'])}")


def write_markdown(rows, out, rounds, raw):
    chart = os.path.join(os.path.dirname(out), "benchmarks.svg")
    svg_chart(rows, chart)
    lines = [
        "# Benchmarks", "",
        f"Generated by `benches/e2e.py` on {datetime.date.today()} — {machine()}.", "",
        f"Each case: a fresh Azurite on 127.0.0.1 (disk persistence), {rounds} rounds, tools alternating "
        "(A B, then B A). Client CPU is user+sys from wait4; RSS is the client's peak; Azurite CPU is "
        "the server's CPU over the same run (when it is close to the wall time, Azurite is the bottleneck). "
        "Before every run the page cache is synced and dropped, so no run pays for another's writeback. "
        "Both tools run with their defaults (hopstage: 32 files in flight, 8 MiB blocks, 256 MiB budget; "
        "rclone 1.60: --transfers 4, 4 MiB chunks, upload concurrency 16). Medians.", "",
        "![ratios](benchmarks.svg)", "",
        "| case | dir | tool | wall s | client CPU s | CPU s/GiB | CPU s/1k files | peak RSS MiB | Azurite CPU s |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        many_files = r["case"] in ("small", "latency")
        for t in ("hopstage", "rclone"):
            x = r[t]
            per_gib = "—" if many_files else f"{x['cpu_per_gib']:.2f}"
            per_k = f"{x['cpu_per_kfile']:.3f}" if many_files else "—"
            lines.append(f"| {r['case']} ({r['desc']}) | {r['dir']} | {t} | {x['wall']:.2f} | {x['cpu']:.2f} | "
                         f"{per_gib} | {per_k} | {x['rss']:.0f} | {x['azurite']:.2f} |")
    lines += ["", "| case | dir | wall ratio | CPU ratio | RSS ratio |", "|---|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['dir']} | {r['ratio_wall']:.2f} | {r['ratio_cpu']:.2f} | {r['ratio_rss']:.2f} |")
    lines += ["", "Raw runs are in `docs/benchmarks.json`.", ""]
    with open(out, "w") as f:
        f.write("\n".join(lines))
    with open(os.path.join(os.path.dirname(out), "benchmarks.json"), "w") as f:
        json.dump(raw, f, indent=1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cases", default="big,medium,small,latency")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "benchmarks.md"))
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--render", metavar="JSON", help="only re-render the report from a saved benchmarks.json")
    a = ap.parse_args()
    if a.render:
        with open(a.render) as f:
            raw = json.load(f)
        rounds = max(len(c["results"]["hopstage"]["up"]) for c in raw.values())
        write_markdown(summarize(raw), a.out, rounds, raw)
        return
    if not os.path.exists(HOP):
        sys.exit("build first: cargo build --release")
    workdir = a.workdir or tempfile.mkdtemp(prefix="hopstage-bench-")
    data_dir = os.path.join(workdir, "data")
    os.makedirs(data_dir, exist_ok=True)
    all_cases = {}
    try:
        for name in a.cases.split(","):
            all_cases[name] = bench_case(name, CASES[name], a.rounds, workdir, data_dir)
    finally:
        if not a.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    rows = summarize(all_cases)
    write_markdown(rows, a.out, a.rounds, all_cases)
    for r in rows:
        print(f"{r['case']:8} {r['dir']:4} wall x{r['ratio_wall']:.2f} cpu x{r['ratio_cpu']:.2f} rss x{r['ratio_rss']:.2f}")


if __name__ == "__main__":
    main()
