#!/usr/bin/env python3
"""make bench: ladder measured side by side with what users would run instead, on this machine, in one run.

1. Ingest-to-playlist latency per chunk, by stage, from the Timing carried in the events (2 s and 1 s chunks).
2. Transcode efficiency: CPU seconds per media second, ladder (every process, ffmpeg children included)
   against one continuous ffmpeg encoding the same ladder from the same source.
3. Manifest throughput: wrk against a live media playlist, ladder against nginx serving the same bytes; 10,000
   blocking reloads held by one manifest at once. 3b. Glass to glass in chromium, hls.js LL-HLS and standard.
4. Segmenter throughput: `ladder chunk` against `ffmpeg -c copy -f segment` on the same long TS file.
5. Ingest capacity: N SRT publishers at 2 Mb/s into ingest + one segmenter, N doubled from 8 until chunks fall
   behind or arrive damaged once the segmenter owns every stream; the largest N that held is then held for
   60 s. Also judged cold (every chunk, all streams started at once). The publishers are one process for all
   streams, crates/srt/examples/srt_send.rs (built here), rather than one ffmpeg each.
6. Segmenter failover: two segmenters, the owner of a live stream killed with SIGKILL again and again; how long
   the live edge stalls, and how many chunks are lost or repeated per kill.

`python3 bench/run.py failover` runs one section alone (here: 6) and updates the reports with it; so does
`python3 bench/run.py ingest` (5).

Writes bench/RESULTS.md and bench/results.json. Needs a release build of ladder, ffmpeg, nats-server, wrk and
nginx (the Makefile installs them). Never part of `make test`.
"""
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LADDER = os.path.join(ROOT, "target", "release", "ladder")
SENDER = os.path.join(ROOT, "target", "release", "examples", "srt_send")
WORK = os.path.join(ROOT, "bench", "work")
COMMANDS = []  # every external command whose result is reported, for RESULTS.md


def now_ms():
    return int(time.time() * 1000)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log(*args):
    print("bench:", *args, file=sys.stderr, flush=True)


def portable(command):
    """A command as the report shows it: relative to the repository, temporary directories as $TMP."""
    command = command.replace(ROOT + os.sep, "")
    return re.sub(r"/tmp/ladder-bench-[^/ ]+", "$TMP", command)


def record(cmd):
    COMMANDS.append(portable(" ".join(cmd)))
    return cmd


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_measured(cmd):
    """Runs a command to completion: (wall seconds, CPU seconds of it and its children)."""
    cpu, start = children_cpu(), time.time()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.time() - start, children_cpu() - cpu


def proc_cpu(pid, children=True):
    """CPU seconds of a live process from /proc (its own, plus its waited-for children's)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    used = int(fields[11]) + int(fields[12])
    if children:
        used += int(fields[13]) + int(fields[14])
    return used / ticks


def percentiles(values):
    values = sorted(values)
    if not values:
        return {"p50": None, "p95": None, "max": None, "n": 0}
    pick = lambda q: values[min(len(values) - 1, int(round(q * (len(values) - 1))))]
    return {"p50": pick(0.5), "p95": pick(0.95), "max": values[-1], "n": len(values)}


def http_get(url, timeout=2):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode()


def ffmpeg(*args):
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args]
    subprocess.run(cmd, check=True)


def make_sources():
    os.makedirs(WORK, exist_ok=True)
    sources = {
        # 720p25 with keyframes every 2 s (and every 1 s), 4 Mb/s, AAC: what an encoder would publish.
        "source-2s.ts": ["-g", "50", "-keyint_min", "50"],
        "source-1s.ts": ["-g", "25", "-keyint_min", "25"],
    }
    for name, gop in sources.items():
        path = os.path.join(WORK, name)
        if not os.path.exists(path):
            log("making", name)
            ffmpeg("-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25", "-f", "lavfi", "-i",
                   "sine=frequency=440:sample_rate=48000", "-t", "60", "-c:v", "libx264", "-preset", "veryfast",
                   "-b:v", "4M", "-maxrate", "4M", "-bufsize", "4M", *gop, "-sc_threshold", "0", "-pix_fmt", "yuv420p",
                   "-c:a", "aac", "-b:a", "128k", "-f", "mpegts", path)
    # 2 Mb/s, 640x360: the failover publisher loops the short one, the ingest publishers must not loop.
    for name, seconds in (("stream-2m.ts", 75), ("stream-2m-300s.ts", 300)):
        path = os.path.join(WORK, name)
        if not os.path.exists(path):
            log("making", name)
            ffmpeg("-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25", "-f", "lavfi", "-i", "sine=sample_rate=48000",
                   "-t", str(seconds), "-c:v", "libx264", "-preset", "veryfast", "-b:v", "1900k", "-maxrate", "1900k",
                   "-bufsize", "1900k", "-g", "50", "-keyint_min", "50", "-sc_threshold", "0", "-c:a", "aac",
                   "-b:a", "96k", "-f", "mpegts", path)
    long = os.path.join(WORK, "long.ts")
    if not os.path.exists(long):
        log("making long.ts (10 x source-2s.ts)")
        listing = os.path.join(WORK, "concat.txt")
        with open(listing, "w") as f:
            f.write("file 'source-2s.ts'\n" * 10)
        ffmpeg("-f", "concat", "-safe", "0", "-i", listing, "-c", "copy", "-f", "mpegts", long)


class Nats:
    def __init__(self, directory):
        self.port = free_port()
        self.log = directory.rstrip("/") + ".log"  # beside the store: why it stopped, if it does
        self.proc = subprocess.Popen(["nats-server", "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", directory],
                                     stdout=subprocess.DEVNULL, stderr=open(self.log, "w"))
        self.url = f"nats://127.0.0.1:{self.port}"
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("nats-server did not start")

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


class Events:
    """`ladder events --json` in the background: every event of the stream, as it happens."""

    def __init__(self, nats_url):
        self.events = []
        self.arrivals = []  # (ms received, subject), in order
        self.proc = subprocess.Popen([LADDER, "events", "--nats", nats_url, "--json"], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            self.arrivals.append((now_ms(), event["subject"]))
            self.events.append(event)

    def of(self, prefix):
        return [e["event"] for e in self.events if e["subject"].startswith(prefix)]

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def publish(srt_port, stream, source, loop=False):
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-re"]
    if loop:
        cmd += ["-stream_loop", "-1"]
    cmd += ["-i", source, "-c", "copy", "-f", "mpegts",
            f"srt://127.0.0.1:{srt_port}?streamid={stream}&pkt_size=1316&latency=120000"]
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def latency_run(target):
    """One stream through the whole stack (ladder dev on its own nats-server) at `target` s chunks."""
    directory = tempfile.mkdtemp(prefix="ladder-bench-")
    nats = Nats(os.path.join(directory, "nats"))
    http, srt = free_port(), free_udp_port()
    dev_cmd = record([LADDER, "dev", "--nats", nats.url, "--data-dir", directory, "--http-listen", f"127.0.0.1:{http}",
                      "--srt-listen", f"127.0.0.1:{srt}", "--target-duration", str(target), "--workers", "2"])
    dev = subprocess.Popen(dev_cmd, stdout=subprocess.DEVNULL, stderr=open(os.path.join(directory, "dev.log"), "w"))
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", http), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    events = Events(nats.url)
    time.sleep(0.5)
    source = os.path.join(WORK, "source-2s.ts" if target >= 2 else "source-1s.ts")
    seen = {}  # (rendition, sequence) -> first ms listed
    stop = threading.Event()

    def poll():
        renditions = []
        while not stop.is_set():
            try:
                if not renditions:
                    master = http_get(f"http://127.0.0.1:{http}/live/bench/master.m3u8")
                    renditions = [l[:-5] for l in master.splitlines() if l.endswith(".m3u8")]
                for r in renditions:
                    body = http_get(f"http://127.0.0.1:{http}/live/bench/{r}.m3u8")
                    at = now_ms()
                    for uri in re.findall(r"/(\d{8})\.ts", body):
                        seen.setdefault((r, int(uri)), at)
            except Exception:
                pass
            time.sleep(0.05)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    parts_seen = {}  # part URI -> (ms listed, ms its last frame reached ingest)
    blocker = threading.Thread(target=follow_parts, args=(http, "720p", parts_seen, stop), daemon=True)
    blocker.start()
    publisher = publish(srt, "bench", source)
    publisher.wait()
    # Wait for the last chunks to be transcoded and listed.
    deadline = time.time() + 60
    while time.time() < deadline:
        uploaded = events.of("chunk.uploaded.bench")
        ready = events.of("rendition.ready.bench")
        renditions = {e["rendition"] for e in ready}
        if events.of("stream.ended.bench") and uploaded and len(ready) >= len(uploaded) * max(1, len(renditions)):
            if all((r, e["sequence"]) in seen for r in renditions for e in uploaded):
                break
        time.sleep(0.2)
    stop.set()
    poller.join()
    blocker.join(timeout=10)
    cpu = proc_cpu(dev.pid) + proc_cpu(nats.proc.pid, children=False)
    playlist = http_get(f"http://127.0.0.1:{http}/live/bench/720p.m3u8")
    result = {"target_duration_s": target, "command": " ".join(dev_cmd)}
    uploaded = {e["sequence"]: e for e in events.of("chunk.uploaded.bench")}
    ready = events.of("rendition.ready.bench")
    renditions = sorted({e["rendition"] for e in ready})
    stages = {k: [] for k in ["cut", "encode_tail", "store_index_visible", "total", "source_stored"]}
    for seq, chunk in sorted(uploaded.items()):
        t = chunk.get("timing") or {}
        per = [e for e in ready if e["sequence"] == seq]
        if len(per) < len(renditions) or any((r, seq) not in seen for r in renditions):
            continue
        # The rendition that came last: its worker saw the chunk end, ffmpeg finished, it was listed.
        rt = max((e.get("timing") or {} for e in per), key=lambda t: t.get("transcode_finished_ms", 0))
        visible = max(seen[(r, seq)] for r in renditions)
        stages["cut"].append(rt["segmented_ms"] - rt["ingest_last_packet_ms"])
        stages["encode_tail"].append(rt["transcode_finished_ms"] - rt["segmented_ms"])
        stages["store_index_visible"].append(visible - rt["transcode_finished_ms"])
        stages["total"].append(visible - rt["ingest_last_packet_ms"])
        stages["source_stored"].append(t["uploaded_ms"] - t["ingest_last_packet_ms"])
    result["stages_ms"] = {k: percentiles(v) for k, v in stages.items()}
    result["parts"] = part_latency(parts_seen)
    media_seconds = sum(c["duration"] for c in uploaded.values()) / 90000
    result["chunks"] = len(uploaded)
    result["renditions"] = renditions
    result["media_seconds"] = round(media_seconds, 3)
    result["cpu_seconds"] = round(cpu, 2)
    result["cpu_per_media_second"] = round(cpu / media_seconds, 3) if media_seconds else None
    result["http_port"] = http
    events.stop()
    return result, dev, nats, directory, playlist, http


def iso_ms(text):
    """Unix ms of an EXT-X-PROGRAM-DATE-TIME value (2026-12-01T20:02:43.803Z)."""
    from datetime import datetime
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def playlist_parts(body):
    """Every part a live playlist lists: (URI, ms its last frame reached ingest), from each segment's program date
    and the parts' durations; and the playlist's live edge (msn, last part index)."""
    parts, date, offset, msn, edge = [], None, 0.0, None, None
    sequence = int(re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", body).group(1))
    index = 0
    for line in body.splitlines():
        if line.startswith("#EXT-X-PROGRAM-DATE-TIME:"):
            date, offset = iso_ms(line.split(":", 1)[1]), 0.0
        elif line.startswith("#EXT-X-PART:"):
            duration = float(re.search(r"DURATION=([\d.]+)", line).group(1))
            offset += duration
            uri = re.search(r'URI="([^"]+)"', line).group(1)
            if date is not None:
                parts.append((uri, date + offset * 1000))
            part = int(uri.rsplit(".", 2)[-2])
            edge = (sequence + index, part)
        elif line and not line.startswith("#"):
            index += 1
    return parts, edge


def follow_parts(http, rendition, seen, stop):
    """Follows a live playlist with blocking reloads, as an LL-HLS player does: each answer comes the moment the
    next part is listed. Records when each part was first listed and when its last frame reached ingest."""
    url = f"http://127.0.0.1:{http}/live/bench/{rendition}.m3u8"
    edge = None
    while not stop.is_set():
        try:
            if edge is None:
                body = http_get(url)
            else:
                body = http_get(f"{url}?_HLS_msn={edge[0]}&_HLS_part={edge[1] + 1}", timeout=10)
        except Exception:
            edge = None
            time.sleep(0.1)
            continue
        at = now_ms()
        parts, new_edge = playlist_parts(body)
        for uri, ingest_ms in parts:
            # Parts already listed when the player (re)joined were not seen appear: left out.
            seen.setdefault(uri, (at, ingest_ms) if edge is not None else None)
        if new_edge is None or new_edge == edge:
            time.sleep(0.05)
        edge = new_edge


def part_latency(seen):
    """Ingest to playlist, per part: from when its last frame reached ingest to when it was listed."""
    delays = [part[0] - part[1] for part in seen.values() if part]
    return {"parts": len(delays), "ms": percentiles(delays)}


def baseline_ffmpeg():
    """One continuous ffmpeg encoding the default ladder from the same source with the transcoder's settings."""
    source = os.path.join(WORK, "source-2s.ts")
    out = tempfile.mkdtemp(prefix="ladder-bench-ffmpeg-")
    ladder = [("720p", 720, 3000), ("480p", 480, 1500), ("360p", 360, 800)]
    graph = "[0:v:0]split=3[s0][s1][s2]" + "".join(f";[s{i}]scale=-2:{h}[v{i}]" for i, (_, h, _) in enumerate(ladder))
    cmd = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-i", source, "-filter_complex", graph]
    for i, (name, _, kbps) in enumerate(ladder):
        cmd += ["-map", f"[v{i}]", "-map", "0:a?", "-c:v", "libx264", "-preset", "veryfast", "-profile:v", "high",
                "-pix_fmt", "yuv420p", "-b:v", f"{kbps}k", "-maxrate", f"{kbps * 11 // 10}k", "-bufsize", f"{kbps}k",
                "-x264-params", "vbv-init=0.5", "-g", "50", "-keyint_min", "50", "-sc_threshold", "0",
                "-c:a", "copy", "-f", "mpegts", os.path.join(out, f"{name}.ts")]
    wall, cpu = run_measured(record(cmd))
    shutil.rmtree(out, ignore_errors=True)
    return {"command": " ".join(cmd), "wall_seconds": round(wall, 2), "cpu_seconds": round(cpu, 2),
            "media_seconds": 60.0, "cpu_per_media_second": round(cpu / 60.0, 3)}


def wrk(url):
    cmd = record(["wrk", "-t2", "-c32", "-d10s", "--latency", url])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"requests_per_second": rps, "p99_ms": round(float(p99.group(1)) * scale, 3),
            "non_2xx": int(errors.group(1)) if errors else 0}


def manifest_throughput(http, playlist):
    ladder = wrk(f"http://127.0.0.1:{http}/live/bench/720p.m3u8")
    directory = tempfile.mkdtemp(prefix="ladder-bench-nginx-")
    os.chmod(directory, 0o755)  # nginx's workers run as an unprivileged user
    with open(os.path.join(directory, "720p.m3u8"), "w") as f:
        f.write(playlist)
    os.chmod(os.path.join(directory, "720p.m3u8"), 0o644)
    port = free_port()
    conf = os.path.join(directory, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""daemon off; worker_processes auto; pid {directory}/nginx.pid; error_log {directory}/error.log;
events {{ worker_connections 1024; }}
http {{ access_log off; types {{ application/vnd.apple.mpegurl m3u8; }}
  server {{ listen 127.0.0.1:{port}; root {directory}; location / {{ add_header Cache-Control "max-age=1"; }} }} }}
""")
    nginx = subprocess.Popen(record(["nginx", "-c", conf, "-p", directory]), stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    static = wrk(f"http://127.0.0.1:{port}/720p.m3u8")
    body = http_get(f"http://127.0.0.1:{port}/720p.m3u8")
    nginx.terminate()
    nginx.wait()
    shutil.rmtree(directory, ignore_errors=True)
    # A comparison is only worth reporting if both served the playlist, every time.
    if ladder["non_2xx"] or static["non_2xx"] or body != playlist:
        raise RuntimeError(f"a server answered with errors or other bytes: ladder {ladder}, nginx {static}")
    return {"ladder": ladder, "nginx": static,
            "ratio_rps": round(ladder["requests_per_second"] / static["requests_per_second"], 3),
            "playlist_bytes": len(playlist)}


def wait_for_playlist(url, ready, seconds):
    """Polls a playlist every 0.5 s until `ready(body)` holds, for at most `seconds`; a failed request is polled
    again."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            if ready(http_get(url)):
                return
        except Exception:
            pass
        time.sleep(0.5)


def has_parts(body):
    return "#EXT-X-PART:" in body


def second_manifest(nats_url, directory, log_name):
    """A `ladder manifest` of its own on the live stack of `live_section` (its CPU is its own), once it serves
    the live LL-HLS playlist: (process, HTTP port)."""
    http = free_port()
    cmd = [LADDER, "manifest", "--nats", nats_url, "--index", os.path.join(directory, "index.db"),
           "--storage", os.path.join(directory, "media"), "--http-listen", f"127.0.0.1:{http}"]
    record(cmd)
    manifest = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(os.path.join(directory, log_name), "w"))
    wait_for_playlist(f"http://127.0.0.1:{http}/live/bench/360p.m3u8", has_parts, 30)
    return manifest, http


async def _blocked_rounds(http, pid, n, rounds):
    import asyncio
    path = "/live/bench/360p.m3u8"

    async def get(reader, writer, query):
        writer.write(f"GET {path}{query} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
        return status, (await reader.readexactly(length)).decode()

    side = await asyncio.open_connection("127.0.0.1", http)
    connections = []
    for _ in range(0, n, 500):  # in batches, within the listen backlog
        connections += await asyncio.gather(*[asyncio.open_connection("127.0.0.1", http) for _ in range(500)])
    connections = connections[:n]
    idle_cpu, idle_at = proc_cpu(pid, False), time.time()
    await asyncio.sleep(4)
    idle_rate = (proc_cpu(pid, False) - idle_cpu) / (time.time() - idle_at)
    results = []
    for _ in range(rounds):
        # Wait, with a blocking reload of our own, for a segment to begin: the next one is then a whole
        # target duration away, time enough to send every request before it exists.
        _, body = await get(*side, "")
        msn = playlist_parts(body)[1][0]
        _, body = await get(*side, f"?_HLS_msn={msn + 1}&_HLS_part=0")
        msn = playlist_parts(body)[1][0]
        query = f"?_HLS_msn={msn + 1}&_HLS_part=0"
        firsts = []

        async def one(reader, writer):
            status, body = await get(reader, writer, query)
            if not firsts:
                firsts.append((time.time(), proc_cpu(pid, False)))
            return status, body

        tasks = [asyncio.ensure_future(one(*c)) for c in connections]
        await asyncio.sleep(0)  # every request written
        sent_at, sent_cpu = time.time(), proc_cpu(pid, False)
        answers = await asyncio.gather(*tasks)
        done_at, done_cpu = time.time(), proc_cpu(pid, False)
        first_at, first_cpu = firsts[0]
        # Identical answers are the one rendering they share: each distinct body is checked once.
        edges = {body: playlist_parts(body)[1] for body in {a[1] for a in answers if a[0] == 200}}
        ok = [a for a in answers if a[0] == 200 and edges[a[1]] >= (msn + 1, 0)]
        hold = max(first_at - sent_at, 0.001)
        results.append({
            "requests": n, "answered_200": len(ok), "held_s": round(hold, 3),
            "first_to_last_answer_ms": round((done_at - first_at) * 1000, 1),
            # While held, every other change of the 360p live edge (its parts) wakes every waiter to look.
            "cpu_while_holding_ms_per_s": round(max(first_cpu - sent_cpu - idle_rate * hold, 0) * 1000 / hold, 1),
            "cpu_us_per_answer": round(max(done_cpu - first_cpu - idle_rate * (done_at - first_at), 0) * 1e6 / n, 1),
            "distinct_answers": len(edges),
        })
    for _, writer in connections + [side]:
        writer.close()
    return {"idle_cpu_ms_per_s": round(idle_rate * 1000, 1), "rounds": results}


def blocked_requests(nats_url, directory, n=10000, rounds=3):
    """A second `ladder manifest` on the live stack, in its own process so that its CPU is its own, holding `n`
    blocking playlist requests at once, as n LL-HLS players at the live edge would: all ask for the first part of
    the next segment (`_HLS_msn=<next>&_HLS_part=0`), are held until it is announced, and are answered by that one
    change. Per round: how many were answered with the part, for how long they were held, the time from the first
    answer to the last (as one Python client reads them), and the manifest's CPU beyond its idle cost, per
    second of holding and per answer."""
    import asyncio
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, n + 1000)), hard))
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < n + 100:
        return {"failure": f"the open-file limit ({hard}) is below {n} connections"}
    manifest, http = second_manifest(nats_url, directory, "manifest-blocked.log")
    try:
        result = asyncio.run(_blocked_rounds(http, manifest.pid, n, rounds))
        result["connections"] = n
        return result
    except Exception as e:
        return {"failure": repr(e)}
    finally:
        manifest.terminate()
        manifest.wait()


def manifest_alone(nats_url, directory, dev, publisher):
    """The manifest against nginx as on a machine of its own: a second `ladder manifest` on the live stack
    (loaded from the index and the parts, as any new manifest instance is), measured while the rest of the stack
    and the publisher are stopped (SIGSTOP) so that x264 does not share the two cores. The stream stays live;
    its playlist is the one of that moment."""
    manifest, http = second_manifest(nats_url, directory, "manifest-alone.log")
    url = f"http://127.0.0.1:{http}/live/bench/720p.m3u8"
    stopped = []
    try:
        children = subprocess.run(["pgrep", "-P", str(dev.pid)], capture_output=True, text=True).stdout.split()
        for pid in [publisher.pid, dev.pid] + [int(c) for c in children]:
            os.kill(pid, signal.SIGSTOP)
            stopped.append(pid)
        time.sleep(1)
        return manifest_throughput(http, http_get(url))
    except Exception as e:
        return {"failure": repr(e)}
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
        manifest.terminate()
        manifest.wait()


def glass_to_glass(http, seconds, low_latency):
    """The player page in chromium (tests/browser/latency.mjs) for `seconds`: from each frame's arrival at ingest
    (its EXT-X-PROGRAM-DATE-TIME) to the screen, with hls.js in lowLatencyMode or as a standard HLS player."""
    browser_dir = os.path.join(ROOT, "tests", "browser")
    page = f"http://127.0.0.1:{http}/watch/bench" + ("" if low_latency else "?ll=0")
    watch = subprocess.run(record(["node", os.path.join(browser_dir, "latency.mjs"), page, str(seconds)]),
                           cwd=browser_dir, capture_output=True, text=True, timeout=seconds + 120)
    report = json.loads(watch.stdout.strip().splitlines()[-1]) if watch.stdout.strip() else {"failure": watch.stderr}
    latencies = [round(x * 1000) for x in report.get("latencies", [])]
    return {"ms": percentiles(latencies), "samples": len(latencies), "parts": report.get("parts"),
            "segments": report.get("segments"), "played_s": report.get("played"),
            "settled_after_s": report.get("settled_after_s"),
            "stalls": sum(1 for e in report.get("errors") or [] if "Stalled" in e),
            "errors": sorted(set(report.get("errors") or []))[:5], "failure": report.get("failure")}


def live_section(seconds=30):
    """A live stream through `ladder dev` (720p25 looped, 2 s chunks): the player page in chromium for `seconds`
    with hls.js in lowLatencyMode, then as a standard HLS player: glass to glass, from the frame's arrival at
    ingest (its EXT-X-PROGRAM-DATE-TIME) to the screen; the manifest under wrk on the live LL-HLS playlist against
    nginx serving the same bytes, while the stack transcodes and then alone; 10,000 blocking reloads held."""
    directory = tempfile.mkdtemp(prefix="ladder-bench-live-")
    nats = Nats(os.path.join(directory, "nats"))
    http, srt = free_port(), free_udp_port()
    dev_cmd = record([LADDER, "dev", "--nats", nats.url, "--data-dir", directory, "--http-listen", f"127.0.0.1:{http}",
                      "--srt-listen", f"127.0.0.1:{srt}", "--target-duration", "2", "--workers", "3"])
    dev = subprocess.Popen(dev_cmd, stdout=subprocess.DEVNULL, stderr=open(os.path.join(directory, "dev.log"), "w"))
    publisher = publish(srt, "bench", os.path.join(WORK, "source-2s.ts"), loop=True)
    playlist_url = f"http://127.0.0.1:{http}/live/bench/720p.m3u8"
    # A viewer joins a stream that has been live a while: wait for six segments (12 s) in the playlist. (hls.js
    # joining a playlist of one or two segments starts at its oldest, stalls, and keeps the raised latency.)
    wait_for_playlist(playlist_url, lambda body: has_parts(body) and body.count("#EXTINF:") >= 6, 90)
    result = {"glass": glass_to_glass(http, seconds, low_latency=True),
              "glass_standard": glass_to_glass(http, seconds, low_latency=False)}
    result["manifest"] = manifest_throughput(http, http_get(playlist_url))
    result["blocked"] = blocked_requests(nats.url, directory)
    result["manifest_alone"] = manifest_alone(nats.url, directory, dev, publisher)
    publisher.terminate()
    publisher.wait()
    dev.send_signal(signal.SIGINT)
    dev.wait()
    nats.stop()
    shutil.rmtree(directory, ignore_errors=True)
    return result


def segmenter_throughput():
    source = os.path.join(WORK, "long.ts")
    size = os.path.getsize(source)
    out = tempfile.mkdtemp(prefix="ladder-bench-chunk-")
    ours_wall, ours_cpu = run_measured(record([LADDER, "chunk", source, "--out", out, "--target-duration", "2"]))
    shutil.rmtree(out, ignore_errors=True)
    out = tempfile.mkdtemp(prefix="ladder-bench-segment-")
    theirs_wall, theirs_cpu = run_measured(record(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-i", source, "-map", "0", "-c", "copy", "-f", "segment",
         "-segment_time", "2", "-reset_timestamps", "0", os.path.join(out, "%08d.ts")]))
    shutil.rmtree(out, ignore_errors=True)
    mb = size / 1e6
    return {"file_mb": round(mb, 1),
            "ladder": {"mb_per_s": round(mb / ours_wall, 1), "cpu_seconds": round(ours_cpu, 3),
                       "wall_seconds": round(ours_wall, 3)},
            "ffmpeg_segment": {"mb_per_s": round(mb / theirs_wall, 1), "cpu_seconds": round(theirs_cpu, 3),
                               "wall_seconds": round(theirs_wall, 3)},
            "ratio_mb_per_s": round((mb / ours_wall) / (mb / theirs_wall), 2),
            "ratio_cpu": round(ours_cpu / theirs_cpu, 3) if theirs_cpu else None}


def sender_build():
    """Builds the publisher of section 5 (a no-op when it is up to date): one process, many SRT connections."""
    cmd = [os.environ.get("CARGO", "cargo"), "build", "--release", "-p", "ladder-srt", "--example", "srt_send"]
    log(portable(" ".join(cmd)))
    subprocess.run(cmd, check=True, cwd=ROOT)


def thread_cpu(pid):
    """CPU seconds of each thread of a live process: {tid: (name, seconds)}."""
    ticks, threads = os.sysconf("SC_CLK_TCK"), {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return threads
    for tid in tids:
        try:
            raw = open(f"/proc/{pid}/task/{tid}/stat").read()
        except OSError:
            continue
        name = raw[raw.index("(") + 1:raw.rindex(")")]
        fields = raw.rsplit(")", 1)[1].split()
        threads[tid] = (name, (int(fields[11]) + int(fields[12])) / ticks)
    return threads


def busiest_threads(before, after, window, top=3):
    """The threads that used the most CPU between two `thread_cpu` samples, as percent of one core; threads of
    one name are counted together (`tokio-rt-worker` x 2)."""
    by_name = {}
    for tid, (name, cpu) in after.items():
        used, count = by_name.get(name, (0.0, 0))
        by_name[name] = (used + cpu - before.get(tid, (name, 0.0))[1], count + 1)
    ranked = sorted(by_name.items(), key=lambda item: -item[1][0])[:top]
    return [{"thread": name, "threads": count, "core_percent": round(100 * used / window, 1)}
            for name, (used, count) in ranked]


def all_process_cpu():
    """CPU seconds of every process on the machine (its own threads, not its children): {pid: seconds}. Others'
    use is summed from the processes because /proc/stat's machine-wide counters, on the VM this was written on,
    said less than these processes alone had used."""
    ticks, cpu = os.sysconf("SC_CLK_TCK"), {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        cpu[int(pid)] = (int(fields[11]) + int(fields[12])) / ticks
    return cpu


def log_problems(path):
    """WARN and ERROR lines of a ladder log while it ran and after it was told to stop: how many, and the
    distinct messages (fields left out)."""
    counts, messages, stopping = {"running": 0, "stopping": 0}, {}, False
    for line in open(path, errors="replace"):
        if "shutting down" in line:
            stopping = True
        found = re.search(r"\s(WARN|ERROR)\s+(?:[\w:]+: )?(.*?)(?:\s+\w+=|$)", line)
        if found:
            when = "stopping" if stopping else "running"
            counts[when] += 1
            key = f"{found.group(1)} {found.group(2).strip()}" + (" (while stopping)" if stopping else "")
            messages[key] = messages.get(key, 0) + 1
    return {"lines": counts["running"], "lines_while_stopping": counts["stopping"],
            "messages": dict(sorted(messages.items(), key=lambda m: -m[1])[:5])}


def srt_totals(path):
    """What ingest's libsrt counted over the sessions that ended (its `stream ended` log lines)."""
    totals = {"sessions_ended": 0, "bytes_received": 0, "srt_lost": 0, "srt_retransmitted": 0, "srt_dropped": 0}
    for line in open(path, errors="replace"):
        if "stream ended" not in line:
            continue
        totals["sessions_ended"] += 1
        for key in ["bytes_received", "srt_lost", "srt_retransmitted", "srt_dropped"]:
            found = re.search(rf"\b{key}=(\d+)", line)
            if found:
                totals[key] += int(found.group(1))
    return totals


INGEST_SOURCE = "stream-2m-300s.ts"  # as stream-2m.ts, long enough that no publisher loops (timestamps would jump)
# A lone segmenter claims a new stream 400 ms per stream it already owns after first seeing it
# (CLAIM_DELAY_PER_OWNED in services/segmenter/src/lib.rs), on 250 ms ticks: about 0.46 s per stream measured.
CLAIM_SECONDS_PER_STREAM = 0.5
WARM_MARGIN = 4  # seconds after the last claim before chunks are judged in steady state


def alive(pid):
    """Whether a child is still running, without reaping it (its rusage is read with wait4 afterwards)."""
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def owned_streams(path):
    """Stream names a segmenter has logged as owned."""
    try:
        return set(re.findall(r"stream owned stream=(\S+)", open(path, errors="replace").read()))
    except OSError:
        return set()


def judge(chunks, names, seconds, refused, failed):
    """Today's criteria over some chunks: every stream gets its chunks (int(seconds / 2) - 2 at least), none
    damaged (a discontinuity after the first), none stored more than 2 s after its last packet."""
    per_stream, damaged, late, last = {}, 0, 0, {}
    for e in chunks:
        last[e["stream"]] = max(last.get(e["stream"], 0), e.get("sequence", 0))
    damaged_last = 0
    for e in chunks:
        per_stream[e["stream"]] = per_stream.get(e["stream"], 0) + 1
        if e.get("discontinuity") and e.get("sequence", 0) > 0:
            damaged += 1
            damaged_last += e.get("sequence", 0) == last[e["stream"]]
        t = e.get("timing") or {}
        if t and t["uploaded_ms"] - t["ingest_last_packet_ms"] > 2000:
            late += 1
    expected = int(seconds / 2) - 2
    short = [name for name in names if per_stream.get(name, 0) < expected]
    held = seconds >= 10 and not short and damaged == 0 and late == 0 and not refused and not failed
    return {"held": held, "seconds": round(seconds, 1), "chunks": len(chunks), "streams_short": len(short),
            "damaged_chunks": damaged, "damaged_last_chunks": damaged_last, "late_chunks": late}


def ingest_step(n, seconds):
    """n publishers (one srt_send process) into nats + ingest + segmenter, for as long as the lone segmenter
    needs to claim every stream plus `seconds`. Two verdicts with today's criteria (`judge`): `cold` over every
    chunk, as when all n streams start within 2 s; `warm` over the chunks whose last packet arrived once the
    segmenter owned every stream (WARM_MARGIN s after the last claim), which is when CPU is measured too."""
    directory = tempfile.mkdtemp(prefix="ladder-bench-ingest-")
    nats = Nats(os.path.join(directory, "nats"))
    srt = free_udp_port()
    env = dict(os.environ, LADDER_LOG="info,async_nats=warn", NO_COLOR="1")
    duration = int(CLAIM_SECONDS_PER_STREAM * n + WARM_MARGIN + 2) + seconds
    cmds = {
        "ingest": [LADDER, "ingest", "--nats", nats.url, "--srt-listen", f"127.0.0.1:{srt}", "--open-publish"],
        "segmenter": [LADDER, "segmenter", "--nats", nats.url, "--storage", os.path.join(directory, "media")],
        "sender": [SENDER, os.path.join(WORK, INGEST_SOURCE), f"srt://127.0.0.1:{srt}", "--count", str(n),
                   "--prefix", "s", "--duration", str(duration)],
    }
    logs = {name: os.path.join(directory, f"{name}.log") for name in cmds}
    procs = {name: subprocess.Popen(cmds[name], env=env, stdout=subprocess.DEVNULL, stderr=open(logs[name], "w"))
             for name in ["ingest", "segmenter"]}
    time.sleep(1.5)
    events = Events(nats.url)
    time.sleep(0.5)
    out = os.path.join(directory, "sender.out")
    started = time.time()
    sender = subprocess.Popen(cmds["sender"], stdout=open(out, "w"), stderr=open(logs["sender"], "w"))
    pids = {"ingest": procs["ingest"].pid, "segmenter": procs["segmenter"].pid, "nats-server": nats.proc.pid,
            "sender": sender.pid}
    names = [f"s-{i}" for i in range(n)]
    # Steady state: the segmenter owns every stream. Given up if less than half of `seconds` would be left.
    claimed = None
    while time.time() < started + duration - seconds / 2 and alive(sender.pid):
        if len(owned_streams(logs["segmenter"]) & set(names)) == n:
            claimed = time.time()
            break
        time.sleep(0.25)
    window_start = (claimed + WARM_MARGIN) if claimed else started
    while time.time() < window_start and alive(sender.pid):
        time.sleep(0.1)
    before = {name: proc_cpu(pid, children=False) for name, pid in pids.items()}
    threads_before = {name: thread_cpu(pid) for name, pid in pids.items()}
    everyone_before, window_started = all_process_cpu(), time.time()
    while time.time() < started + duration - 0.5 and alive(sender.pid):  # it ends after its spread start
        time.sleep(0.1)
    window = time.time() - window_started
    used = {name: proc_cpu(pid, children=False) - before[name] for name, pid in pids.items()}
    threads = {name: busiest_threads(threads_before[name], thread_cpu(pid), window) for name, pid in pids.items()}
    everyone = all_process_cpu()
    others = sum(cpu - everyone_before[pid] for pid, cpu in everyone.items()
                 if pid in everyone_before and pid not in pids.values())
    watchdog = threading.Timer(120, sender.kill)
    watchdog.start()
    _, status, usage = os.wait4(sender.pid, 0)
    sender.returncode = os.waitstatus_to_exitcode(status)
    watchdog.cancel()
    sender_ended = now_ms()
    time.sleep(3)
    sent = open(out).read()
    refused = re.findall(r"^(\S+) refused: (.*)$", sent, re.M)
    failed = re.findall(r"^(\S+) failed after \d+ bytes: (.*)$", sent, re.M)
    bytes_sent = sum(int(b) for b in re.findall(r"^\S+ (?:sent|failed after) (\d+) bytes", sent, re.M))
    uploaded = events.of("chunk.uploaded.")
    delays = [e["timing"]["uploaded_ms"] - e["timing"]["ingest_last_packet_ms"] for e in uploaded if e.get("timing")]

    def split(chunks):
        """Where the delay went: last packet at ingest -> cut by the segmenter (through NATS) -> stored."""
        timed = [e["timing"] for e in chunks if e.get("timing")]
        return {"to_segmented_ms": percentiles([t["segmented_ms"] - t["ingest_last_packet_ms"] for t in timed]),
                "to_uploaded_ms": percentiles([t["uploaded_ms"] - t["segmented_ms"] for t in timed])}

    cold = judge(uploaded, names, duration, refused, failed)
    if claimed:
        since = int((claimed + WARM_MARGIN) * 1000)
        steady = [e for e in uploaded if (e.get("timing") or {}).get("ingest_last_packet_ms", 0) >= since]
        warm = judge(steady, names, (sender_ended - since) / 1000, refused, failed)
        steady_delays = [e["timing"]["uploaded_ms"] - e["timing"]["ingest_last_packet_ms"] for e in steady]
        delay_split = split(steady)
    else:
        warm = dict(judge([], names, 0, refused, failed), held=False)
        steady_delays, delay_split = [], split(uploaded)
    events.stop()
    nats_exit = nats.proc.poll()
    for p in procs.values():
        p.send_signal(signal.SIGTERM)
    for p in procs.values():
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            log(f"{p.args[1]} still running 30 s after SIGTERM, killed")
            p.kill()
            p.wait()
    nats.stop()
    if nats_exit is not None:
        tail = open(nats.log, errors="replace").read().strip().splitlines()[-5:]
        raise RuntimeError(f"nats-server exited ({nats_exit}) during the step with {n} publishers: {tail}; "
                           f"logs kept in {directory}")
    problems = {name: log_problems(logs[name]) for name in ["ingest", "segmenter"]}
    srt_stats = srt_totals(logs["ingest"])
    sender_log = open(logs["sender"]).read().strip().splitlines()
    if not warm["held"]:  # kept for a look (bench/work is not in git)
        kept = os.path.join(WORK, f"ingest-{n}-logs")
        shutil.rmtree(kept, ignore_errors=True)
        os.makedirs(kept)
        for path in list(logs.values()) + [out, nats.log]:
            shutil.copy(path, kept)
    shutil.rmtree(directory, ignore_errors=True)
    total = sum(used.values())
    per_stream_percent = lambda cpu: round(100 * cpu / window / n, 3)
    return {"publishers": n, "seconds": duration, "held": warm["held"] and sender.returncode == 0,
            "cold": cold, "warm": warm,
            "last_claim_seconds": round(claimed - started, 1) if claimed else None,
            "cpu_window_seconds": round(window, 1), "chunk_delay_ms": percentiles(delays),
            "steady_chunk_delay_ms": percentiles(steady_delays), "delay_split": delay_split,
            "refused": len(refused), "failed": len(failed),
            "sender_errors": sorted({reason for _, reason in refused + failed})[:3],
            "sender_exit": sender.returncode, "bytes_sent": bytes_sent,
            "sender_cpu_seconds_whole_run": round(usage.ru_utime + usage.ru_stime, 2),
            "cpu_seconds": {name: round(cpu, 2) for name, cpu in used.items()},
            "cpu_per_stream_percent": {name: per_stream_percent(cpu) for name, cpu in used.items()},
            "cpu_percent_of_one_core": {name: round(100 * cpu / window, 1) for name, cpu in used.items()},
            "server_cpu_per_stream_percent": per_stream_percent(total - used["sender"]),
            "four_processes_percent_of_machine": round(100 * total / window / (os.cpu_count() or 1), 1),
            "other_processes_percent_of_one_core": round(100 * others / window, 1),
            "busiest_threads": threads, "srt": srt_stats, "log_problems": problems,
            "sender_summary": sender_log[:2],
            "commands": [portable(" ".join(cmds[name])) for name in ["sender", "ingest", "segmenter"]]}


def ladder_commit():
    """The commit the measured binaries were built from, `+changes` if the work tree differed (bench/ aside)."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    changed = subprocess.run(["git", "status", "--porcelain", "--", ".", ":!bench"], cwd=ROOT, capture_output=True,
                             text=True)
    return head.stdout.strip() + ("+changes" if changed.stdout.strip() else "")


def publisher_cost(n=16, seconds=10):
    """What a publisher costs: n ffmpeg publishers (the previous bench's) against one srt_send with n
    connections (40 ms bursts as in the steps, and 120 ms bursts, close to what `ffmpeg -re -c copy` sends), each
    into its own nats-server + ingest, measured over `seconds` once all are sending."""
    source = os.path.join(WORK, INGEST_SOURCE)
    result = {"publishers": n, "seconds": seconds}
    bursts = {"srt_send": "40", "srt_send_120ms": "120"}
    for kind in ["ffmpeg", "srt_send", "srt_send_120ms"]:
        directory = tempfile.mkdtemp(prefix="ladder-bench-publisher-")
        nats = Nats(os.path.join(directory, "nats"))
        srt = free_udp_port()
        ingest = subprocess.Popen([LADDER, "ingest", "--nats", nats.url, "--srt-listen", f"127.0.0.1:{srt}",
                                   "--open-publish"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.5)
        if kind == "ffmpeg":
            publishers = [publish(srt, f"f-{i}", source) for i in range(n)]
        else:
            publishers = [subprocess.Popen([SENDER, source, f"srt://127.0.0.1:{srt}", "--count", str(n), "--prefix",
                                            "f", "--duration", str(seconds + 10), "--burst-ms", bursts[kind]],
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
        time.sleep(4)
        before = [proc_cpu(p.pid) for p in publishers] + [proc_cpu(ingest.pid)]
        started = time.time()
        time.sleep(seconds)
        window = time.time() - started
        after = [proc_cpu(p.pid) for p in publishers] + [proc_cpu(ingest.pid)]
        alive = all(p.poll() is None for p in publishers)
        for p in publishers:
            p.terminate()
        for p in publishers:
            p.wait()
        ingest.send_signal(signal.SIGTERM)
        ingest.wait()
        nats.stop()
        shutil.rmtree(directory, ignore_errors=True)
        used = [a - b for a, b in zip(after, before)]
        result[kind] = {"publisher_percent_per_stream": round(100 * sum(used[:-1]) / window / n, 3),
                        "ingest_percent_per_stream": round(100 * used[-1] / window / n, 3),
                        "all_publishers_still_sending": alive}
    return result


def ingest_capacity(first=8, most=384):
    """N doubled from `first` while the steady-state verdict holds (at most `most`), then the midpoint between
    the last N that held and the first that did not; the largest N that held is then held for 60 s (stepping
    back to the previous one if it does not)."""
    sender_build()
    cost = publisher_cost()
    log("publisher cost", cost)
    steps, held = [], []

    def step(n, seconds):
        result = ingest_step(n, seconds)
        log("ingest", {"publishers": n, "seconds": result["seconds"], "held": result["held"],
                       "cold": result["cold"], "warm": result["warm"], "last_claim_s": result["last_claim_seconds"],
                       "refused": result["refused"], "failed": result["failed"],
                       "cpu_percent_of_one_core": result["cpu_percent_of_one_core"],
                       "four_processes_percent_of_machine": result["four_processes_percent_of_machine"],
                       "others": result["other_processes_percent_of_one_core"]})
        return result

    n, failed_at = first, None
    while True:
        steps.append(step(n, 20))
        if not steps[-1]["held"]:
            failed_at = n
            break
        held.append(n)
        if n >= most:
            break
        n = min(n * 2, most)
    if failed_at and held and failed_at - held[-1] > max(4, held[-1] // 4):
        middle = (held[-1] + failed_at) // 2
        steps.append(step(middle, 20))
        if steps[-1]["held"]:
            held.append(middle)
    holds = []
    for n in sorted(held, reverse=True)[:2]:
        holds.append(step(n, 60))
        if holds[-1]["held"]:
            break
    cold = [s["publishers"] for s in steps if s["cold"]["held"]]
    return {"steps": steps, "holds_60s": holds, "largest_held_20s": max(held, default=0), "publisher_cost": cost,
            "largest_held": max((h["publishers"] for h in holds if h["held"]), default=0),
            "largest_held_cold": max(cold, default=0),
            "first_failed": failed_at, "source": f"bench/work/{INGEST_SOURCE}",
            "publisher_command": f"target/release/examples/srt_send bench/work/{INGEST_SOURCE} srt://... --count N "
                                 "--prefix s --duration <claims + 20 s>",
            "publisher": "srt_send (crates/srt/examples/srt_send.rs): one process, one libsrt caller per stream, "
                         "paced from 2 threads by the file's PCR, payloads of 7 TS packets sent in 40 ms bursts "
                         "(a frame at 25 fps), starts spread over 2 s",
            "ingest_srt": "libsrt 1.5 (ladder-srt)",
            "previous": {"largest_held": 32, "ingest_srt": "srt-tokio",
                         "publisher_command": "ffmpeg -re -stream_loop -1 -i stream-2m.ts -c copy -f mpegts srt://...",
                         "note": "2026-11-24, before the segmenter's leases and claim delay; 64 failed with 17 "
                                 "damaged chunks; one ffmpeg per publisher"},
            "bitrate": "2 Mb/s (640x360 1.9 Mb/s video + 96 kb/s AAC)", "ladder_commit": ladder_commit(),
            "commands": holds[-1]["commands"] if holds else steps[-1]["commands"]}


def segmenter_owner(directory):
    """The pid of the segmenter that last took a stream, from the `stream owned ... instance=<host>-<pid>-<id>`
    lines of the segmenter logs."""
    newest = None
    for name in os.listdir(directory):
        if not name.startswith("segmenter-"):
            continue
        for line in open(os.path.join(directory, name), errors="replace"):
            found = re.search(r"^(\S+).*stream owned.*instance=(\S+)", line)
            if found and (newest is None or found.group(1) > newest[0]):
                newest = (found.group(1), int(found.group(2).rsplit("-", 2)[1]))
    return newest[1] if newest else None


def segmenter_failover(kills=10, every=9):
    """One live stream into ingest, two segmenters, a transcoder, indexer and manifest as separate processes.
    Every `every` s the segmenter that owns the stream is killed with SIGKILL and a new one started at once.
    The live edge is the 360p live playlist, polled every 50 ms: its stall is how much longer than the usual
    cadence the gap between two new segments around a kill lasted."""
    directory = tempfile.mkdtemp(prefix="ladder-bench-failover-")
    nats = Nats(os.path.join(directory, "nats"))
    srt, http = free_udp_port(), free_port()
    media, index = os.path.join(directory, "media"), os.path.join(directory, "index.db")
    env = dict(os.environ, LADDER_LOG="info", NO_COLOR="1")

    def spawn(name, *args):
        return subprocess.Popen([LADDER, *args], env=env, stdout=subprocess.DEVNULL,
                                stderr=open(os.path.join(directory, f"{name}.log"), "w"))

    cmds = {
        "ingest": ["ingest", "--nats", nats.url, "--srt-listen", f"127.0.0.1:{srt}", "--open-publish"],
        "transcoder": ["transcoder", "--nats", nats.url, "--storage", media, "--workers", "2", "--preset", "ultrafast"],
        "indexer": ["indexer", "--nats", nats.url, "--index", index],
        "manifest": ["manifest", "--nats", nats.url, "--index", index, "--storage", media,
                     "--http-listen", f"127.0.0.1:{http}"],
        "segmenter": ["segmenter", "--nats", nats.url, "--storage", media],
    }
    record([LADDER, *cmds["segmenter"]])
    procs = [spawn(name, *cmd) for name, cmd in cmds.items() if name != "segmenter"]
    segmenters = [spawn(f"segmenter-{i}", *cmds["segmenter"]) for i in range(2)]
    time.sleep(2)
    events = Events(nats.url)
    seen = {}  # sequence -> first ms listed in the live 360p playlist
    stop = threading.Event()

    def poll():
        while not stop.is_set():
            try:
                body = http_get(f"http://127.0.0.1:{http}/live/failover/360p.m3u8")
                at = now_ms()
                for uri in re.findall(r"/(\d{8})\.ts", body):
                    seen.setdefault(int(uri), at)
            except Exception:
                pass
            time.sleep(0.05)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    publisher = publish(srt, "failover", os.path.join(WORK, "stream-2m.ts"), loop=True)
    time.sleep(every + 3)
    kill_times = []
    for k in range(kills):
        owner = segmenter_owner(directory)
        victim = next((p for p in segmenters if p.pid == owner and p.poll() is None), None)
        if victim is None:
            log("failover: no live owner found in the segmenter logs")
            break
        victim.send_signal(signal.SIGKILL)
        kill_times.append(now_ms())
        victim.wait()
        segmenters.append(spawn(f"segmenter-{len(segmenters)}", *cmds["segmenter"]))
        time.sleep(every)
    publisher.terminate()
    publisher.wait()
    deadline = time.time() + 60
    while time.time() < deadline and not events.of("stream.ended.failover"):
        time.sleep(0.5)
    time.sleep(8)  # the last chunks through the transcoder
    stop.set()
    poller.join()
    ended = events.of("stream.ended.failover")
    count = ended[-1]["chunk_count"] if ended else None
    announced = [e["sequence"] for e in events.of("chunk.uploaded.failover")]
    dvr = http_get(f"http://127.0.0.1:{http}/dvr/failover/360p.m3u8")
    listed = [int(u) for u in re.findall(r"/(\d{8})\.ts", dvr)]
    appearances = sorted(seen.values())
    gaps = [b - a for a, b in zip(appearances, appearances[1:])]
    cadence = statistics.median(gaps) if gaps else 2000
    stalls, kill_to_next = [], []
    for t in kill_times:
        before = [a for a in appearances if a <= t]
        after = [a for a in appearances if a > t]
        if before and after:
            stalls.append(max(0, after[0] - before[-1] - cadence))
            kill_to_next.append(after[0] - t)
    lost = (count - len(set(listed))) if count is not None else None
    result = {
        "kills": len(kill_times), "seconds_between_kills": every, "chunk_count": count,
        "cadence_ms": cadence, "stall_ms": percentiles(stalls), "kill_to_next_segment_ms": percentiles(kill_to_next),
        "chunks_announced": len(announced), "chunks_announced_twice": len(announced) - len(set(announced)),
        "chunks_listed_dvr": len(listed), "chunks_listed_twice": len(listed) - len(set(listed)),
        "chunks_lost": lost, "chunks_lost_per_kill": round(lost / len(kill_times), 3) if lost is not None and kill_times else None,
        "gaps_in_dvr": sorted(set(range(count or 0)) - set(listed)),
    }
    events.stop()
    for p in procs + segmenters:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs + segmenters:
        p.wait()
    nats.stop()
    shutil.rmtree(directory, ignore_errors=True)
    return result


def machine():
    cpu = "unknown"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = int(open("/proc/meminfo").readline().split()[1]) // 1024
    versions = {}
    for tool, args in [("ffmpeg", ["-version"]), ("nats-server", ["--version"]), ("nginx", ["-v"]), ("wrk", ["-v"])]:
        out = subprocess.run([tool, *args], capture_output=True, text=True)
        versions[tool] = (out.stdout + out.stderr).strip().splitlines()[0] if (out.stdout + out.stderr).strip() else ""
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_mib": mem, "kernel": platform.release(), "tools": versions}


def main():
    started = time.time()
    only = sys.argv[1:]
    unknown = set(only) - {"ingest", "failover", "live"}
    if unknown:
        sys.exit(f"bench: unknown section {', '.join(sorted(unknown))}; one of: ingest, failover, live")
    make_sources()
    if only:
        # One section: measured now, the others kept from the last full run.
        results = json.load(open(os.path.join(ROOT, "bench", "results.json")))
        if "failover" in only:  # its one recorded command is replaced by this run's
            results["commands"] = [c for c in results.get("commands", []) if " segmenter " not in c]
        if "ingest" in only:
            log("ingest capacity")
            results["ingest"] = ingest_capacity()
            results["ingest_date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        if "live" in only:
            log("live: manifest throughput and glass to glass")
            live = live_section()
            results.update(live)
            results["live_date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        if "failover" in only:
            log("segmenter failover")
            results["failover"] = segmenter_failover()
            results["failover_date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        results["commands"] += COMMANDS
        write(results)
        return
    results = {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    log("latency at 2 s chunks")
    two, dev, nats, directory, playlist, http = latency_run(2)
    dev.send_signal(signal.SIGINT)
    dev.wait()
    nats.stop()
    shutil.rmtree(directory, ignore_errors=True)
    log("latency at 1 s chunks")
    one, dev, nats, directory, _, _ = latency_run(1)
    dev.send_signal(signal.SIGINT)
    dev.wait()
    nats.stop()
    shutil.rmtree(directory, ignore_errors=True)
    results["latency"] = [two, one]
    log("baseline ffmpeg ladder")
    base = baseline_ffmpeg()
    results["efficiency"] = {"ladder": {k: two[k] for k in ["cpu_seconds", "media_seconds", "cpu_per_media_second"]},
                             "ffmpeg": base,
                             "ratio": round(two["cpu_per_media_second"] / base["cpu_per_media_second"], 3)}
    log("live: manifest throughput and glass to glass")
    results.update(live_section())
    log("segmenter throughput")
    results["segmenter"] = segmenter_throughput()
    log("ingest capacity")
    results["ingest"] = ingest_capacity()
    log("segmenter failover")
    results["failover"] = segmenter_failover()
    results["duration_seconds"] = round(time.time() - started)
    results["commands"] = COMMANDS
    write(results)


def portable_all(value):
    if isinstance(value, str):
        return portable(value)
    if isinstance(value, list):
        return [portable_all(v) for v in value]
    if isinstance(value, dict):
        return {k: portable_all(v) for k, v in value.items()}
    return value


def write(results):
    results = portable_all(results)
    with open(os.path.join(ROOT, "bench", "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    with open(os.path.join(ROOT, "bench", "RESULTS.md"), "w") as f:
        f.write(report(results))
    log(f"done: bench/RESULTS.md, bench/results.json")


def ingest_report(r):
    i = r["ingest"]
    if "holds_60s" not in i or "cold" not in (i["steps"] or [{}])[0]:  # a report from before srt_send
        return ["## 5. Ingest capacity", "", f"Largest N held: **{i['largest_held']}** ({i['publisher_command']}).", ""]
    when = f" Measured on {r['ingest_date']}, the other sections on {r['date']}." if r.get("ingest_date") else ""
    prev = i["previous"]
    steps = i["steps"] + i["holds_60s"]
    lines = ["## 5. Ingest capacity", "",
             f"N publishers at {i['bitrate']}, from `{i['source']}`, into nats-server + `ladder ingest --open-publish` "
             f"+ one `ladder segmenter`, 2 s chunks; N doubled from 8 while the steady state holds, then the midpoint, "
             f"then the largest N that held is held for 60 s.{when}", "",
             f"Ingest receives SRT with {i['ingest_srt']}. The publishers are {i['publisher']} "
             "(`cargo build --release -p ladder-srt --example srt_send`): "
             f"`{i['publisher_command']}`. The previous figure, {prev['largest_held']} streams, was measured with "
             f"{prev['ingest_srt']} in ingest and one ffmpeg per publisher (`{prev['publisher_command']}`; "
             f"{prev['note']}). Binaries built from commit {i.get('ladder_commit')}.", "",
             "A verdict holds when every stream gets all its chunks, none damaged (a continuity gap or timestamp jump "
             "after the first), each stored within 2 s of its last packet, and no publisher is refused or cut off. "
             "It is given twice per step. **Cold**: over every chunk, all N streams having started within 2 s. A lone "
             "segmenter claims a new stream only 400 ms per stream it already owns after first seeing it "
             "(`CLAIM_DELAY_PER_OWNED`, services/segmenter/src/lib.rs), so the k-th stream of a burst waits about "
             "0.45 k s before it is cut, and its first chunks are late. **Steady**: over the chunks whose last packet "
             f"arrived {WARM_MARGIN} s after the segmenter owned every stream; each step runs until then plus its "
             "20 s (or 60 s), and CPU is measured over that steady part.", "",
             "| N | run s | last claim s | cold: held / short / damaged / late | steady s | steady: held / short / "
             "damaged / late | steady delay p95 ms | SRT lost / retransmitted / dropped |",
             "|---|---|---|---|---|---|---|---|"]
    for step in steps:
        c, w, srt = step["cold"], step["warm"], step["srt"]
        lines.append(f"| {step['publishers']} | {step['seconds']} | {step['last_claim_seconds']} | "
                     f"{c['held']} / {c['streams_short']} / {c['damaged_chunks']} / {c['late_chunks']} | "
                     f"{w['seconds']} | {w['held']} / {w['streams_short']} / {w['damaged_chunks']} / "
                     f"{w['late_chunks']} | {step['steady_chunk_delay_ms']['p95']} | "
                     f"{srt['srt_lost']} / {srt['srt_retransmitted']} / {srt['srt_dropped']} |")
    lines += ["", "CPU in the steady part, in percent of one core per stream; `server` is ingest + segmenter + "
              "nats-server; `4 procs` the four processes together in percent of all the machine's cores; `others` "
              "every other process (the bench and its event reader, anything else on this shared machine) in "
              "percent of one core:", "",
              "| N | ingest | segmenter | nats-server | sender | server | 4 procs % | others |",
              "|---|---|---|---|---|---|---|---|"]
    for step in steps:
        c = step["cpu_per_stream_percent"]
        lines.append(f"| {step['publishers']} | {c['ingest']} | {c['segmenter']} | {c['nats-server']} | "
                     f"{c['sender']} | {step['server_cpu_per_stream_percent']} | "
                     f"{step['four_processes_percent_of_machine']} | "
                     f"{step['other_processes_percent_of_one_core']} |")
    lines += ["", "Busiest threads per process in the steady part (percent of one core; a thread near 100 is "
              "saturated):", ""]
    for step in steps:
        parts = []
        for process, threads in step["busiest_threads"].items():
            parts.append(f"{process}: " + ", ".join(f"{t['thread']} x{t['threads']} {t['core_percent']}"
                                                    for t in threads))
        lines.append(f"- N={step['publishers']}, {step['seconds']} s: " + "; ".join(parts))
    cost = i.get("publisher_cost")
    if cost:
        lines += ["", f"What a publisher costs (a separate measurement: {cost['publishers']} publishers into nats-server + "
                  f"ingest, {cost['seconds']} s): one ffmpeg each (the previous bench's publisher) "
                  f"{cost['ffmpeg']['publisher_percent_per_stream']} % of a core per stream, srt_send "
                  f"{cost['srt_send']['publisher_percent_per_stream']} % in 40 ms bursts as in the steps above, "
                  f"{cost['srt_send_120ms']['publisher_percent_per_stream']} % in 120 ms bursts; ingest meanwhile "
                  f"{cost['ffmpeg']['ingest_percent_per_stream']}, {cost['srt_send']['ingest_percent_per_stream']} and "
                  f"{cost['srt_send_120ms']['ingest_percent_per_stream']} % per stream. Ingest wakes once per burst "
                  "of a connection: `ffmpeg -re -c copy` sends about 8 bursts a second, an encoder sending each "
                  "frame as it is encoded 25, which is what the steps use. srt_send's own cost is mostly libsrt's: "
                  "each caller has its own UDP socket, with a send and a receive thread (`SRT:SndQ`, `SRT:RcvQ`)."]
    lines += ["", f"Largest N held in steady state: **{i['largest_held_20s']}** for 20 s, **{i['largest_held']}** "
              f"for 60 s" + (f" (first failed step: {i['first_failed']})" if i.get("first_failed") else "")
              + f". Largest N held cold, all started at once: **{i['largest_held_cold']}**.", ""]
    failed = next((step for step in steps if not step["held"]), None)
    if failed:
        use = failed["cpu_percent_of_one_core"]
        top = {p: t[0] for p, t in failed["busiest_threads"].items() if t}
        w = failed["warm"]
        d = failed["delay_split"]
        lines += [f"Where the first failed step (N={failed['publishers']}) spent the CPU: the four processes "
                  f"{failed['four_processes_percent_of_machine']} % of {r['machine']['cores']} cores, others "
                  f"{failed['other_processes_percent_of_one_core']} % of a core; "
                  + "; ".join(f"{p} {use[p]} % of a core" + (f" (busiest thread {top[p]['thread']} "
                                                                f"{top[p]['core_percent']} %)" if p in top else "")
                              for p in ["ingest", "segmenter", "nats-server", "sender"])
                  + f". Chunk delay p50: {d['to_segmented_ms']['p50']} ms from ingest's last packet to the "
                  f"segmenter's cut (through JetStream), {d['to_uploaded_ms']['p50']} ms from the cut to stored"
                  + f". Steady state: {w['streams_short']} streams short, {w['damaged_chunks']} damaged ("
                  f"{w.get('damaged_last_chunks', '?')} of them the last chunk of their stream) and "
                  f"{w['late_chunks']} late chunks; {failed['refused']} publishers refused, {failed['failed']} cut off"
                  + (f" ({'; '.join(failed['sender_errors'])})" if failed["sender_errors"] else "")
                  + (f"; the segmenter had not claimed every stream {failed['seconds']} s in"
                     if failed["last_claim_seconds"] is None else "")
                  + ". Logged: " + "; ".join(f"{p}: {v['lines']} warnings/errors while running, "
                                             f"{v.get('lines_while_stopping', '?')} once told to stop"
                                             + (f" ({', '.join(f'{m} x{c}' for m, c in v['messages'].items())})"
                                                if v["messages"] else "")
                                             for p, v in failed["log_problems"].items()) + ".", ""]
    lines += ["Commands of the last 60 s step:", ""] + [f"- `{c}`" for c in i["commands"]] + [""]
    return lines


def report(r):
    m = r["machine"]
    lines = [f"# ladder benchmark results", "",
             f"Run on {r['date']} by `make bench` in {r['duration_seconds']} s, on {m['cores']} cores of "
             f"{m['cpu']}, {m['memory_mib']} MiB, Linux {m['kernel']}. Tools: "
             + "; ".join(f"{k}: {v}" for k, v in m["tools"].items()) + ".", "",
             "The raw figures are in [results.json](results.json); the commands are listed at the end.", ""]
    lines += ["## 1. Ingest-to-playlist latency", "",
              "One 720p25 stream, 60 s, default ladder (720p, 480p, 360p), 2 transcoder workers, x264 veryfast. "
              "Chunks are transcoded while they arrive, and cut into LL-HLS parts of 0.5 s.", "",
              "**Parts**: from ingest receiving a part's last frame (its segment's EXT-X-PROGRAM-DATE-TIME plus the "
              "durations of the parts up to it) to the part being listed in the 720p playlist, which a client "
              "follows with blocking reloads as an LL-HLS player does.", "",
              "| chunks | parts | p50 ms | p95 ms | max ms |", "|---|---|---|---|---|"]
    for run in (run for run in r["latency"] if "parts" in run):
        p = run["parts"]["ms"]
        lines.append(f"| {run['target_duration_s']} s | {run['parts']['parts']} | {p['p50']} | {p['p95']} | {p['max']} |")
    lines += ["", "**Segments**: from ingest receiving a chunk's last TS packet to the chunk being listed as a whole "
              "segment in every variant playlist (polled every 50 ms), from the Timing in the events.", ""]
    for run in r["latency"]:
        lines += [f"**{run['target_duration_s']} s chunks** ({run['chunks']} chunks):", "",
                  "| stage | p50 ms | p95 ms | max ms |", "|---|---|---|---|"]
        for stage, p in run["stages_ms"].items():
            lines.append(f"| {stage} | {p['p50']} | {p['p95']} | {p['max']} |")
        lines.append("")
    lines += ["`cut` is until the transcoder, reading the raw TS itself, sees the chunk end (the next IDR), "
              "`encode_tail` ffmpeg's last frames after its input ended, `store_index_visible` storing the "
              "segments, the events and the manifest listing them. `source_stored` is the segmenter storing the "
              "source chunk, off the path to the playlists.", ""]
    e = r["efficiency"]
    lines += ["## 2. Transcode efficiency", "",
              "| | CPU s | media s | CPU s per media s |", "|---|---|---|---|",
              f"| ladder (every process, ffmpeg children, nats-server) | {e['ladder']['cpu_seconds']} | "
              f"{e['ladder']['media_seconds']} | {e['ladder']['cpu_per_media_second']} |",
              f"| one continuous ffmpeg, same ladder and settings | {e['ffmpeg']['cpu_seconds']} | "
              f"{e['ffmpeg']['media_seconds']} | {e['ffmpeg']['cpu_per_media_second']} |", "",
              f"Ratio ladder / ffmpeg: **{e['ratio']}**.", ""]

    def manifest_table(m):
        return ["| server | requests/s | p99 ms | non-2xx |", "|---|---|---|---|",
                f"| ladder manifest | {m['ladder']['requests_per_second']} | {m['ladder']['p99_ms']} | "
                f"{m['ladder']['non_2xx']} |",
                f"| nginx, same bytes as a static file | {m['nginx']['requests_per_second']} | "
                f"{m['nginx']['p99_ms']} | {m['nginx']['non_2xx']} |", "",
                f"Ratio ladder / nginx: **{m['ratio_rps']}**.", ""]

    mt = r["manifest"]
    when = f" (measured on {r['live_date']})" if r.get("live_date") else ""
    lines += ["## 3. Manifest throughput", "",
              f"wrk, 2 threads, 32 connections, 10 s, on the 720p live LL-HLS playlist ({mt['playlist_bytes']} bytes) "
              f"of a stream being published and transcoded at the same time{when}; nginx serves a copy of the same "
              "bytes as a static file, on the same machine while the stack runs.", ""] + manifest_table(mt)
    ma = r.get("manifest_alone")
    if ma and not ma.get("failure"):
        lines += ["The same as on a manifest machine of its own: a second `ladder manifest` on the live stack (loaded "
                  "from the index and the parts, as any new instance is), measured while the rest of the stack and "
                  "the publisher are stopped with SIGSTOP, so that x264 does not share the two cores. The stream "
                  "stays live; its playlist is the one of that moment. Goal: at least 1.0x nginx, p99 under 2 ms.",
                  ""] + manifest_table(ma)
    b = r.get("blocked")
    if b and not b.get("failure"):
        lines += [f"**Blocked requests held at once**: a second `ladder manifest` on the same live stack (its own "
                  f"process, so its CPU is its own) holds {b['connections']} connections, each a blocking reload for "
                  "the first part of the next segment of the 360p playlist (`_HLS_msn=<next>&_HLS_part=0`), sent "
                  "together at the start of a segment; they are answered by the one change that lists that part. "
                  "While they are held, each other change of the 360p live edge (its parts) wakes every waiter to "
                  "look; \"CPU while holding\" includes taking the requests in. One Python asyncio client reads "
                  "the answers, so the first-to-last time is as much its speed as the manifest's. The manifest's "
                  f"idle cost (no requests) was {b['idle_cpu_ms_per_s']} ms of CPU per second and is subtracted.", "",
                  "| round | requests | answered 200 with the part | held s | first to last answer ms | "
                  "CPU while holding ms/s | CPU per answer µs | distinct answers |", "|---|---|---|---|---|---|---|---|"]
        for i, x in enumerate(b["rounds"], 1):
            lines.append(f"| {i} | {x['requests']} | {x['answered_200']} | {x['held_s']} | "
                         f"{x['first_to_last_answer_ms']} | {x['cpu_while_holding_ms_per_s']} | {x['cpu_us_per_answer']} |"
                         f" {x.get('distinct_answers', '')} |")
        lines.append("")
    elif b:
        lines += [f"Blocked requests held at once: not measured ({b['failure']}).", ""]
    glass = [(name, r.get(key)) for name, key in [("LL-HLS (`lowLatencyMode`)", "glass"),
                                                  ("standard HLS (`?ll=0`)", "glass_standard")] if r.get(key)]
    if glass:
        lines += ["## 3b. Glass to glass", "",
                  "The player page (hls.js 1.7) in headless Debian chromium, watching the same live 720p25 stream "
                  "(2 s chunks, 0.5 s parts, default ladder), once with `lowLatencyMode` and once "
                  "as a standard HLS player (`/watch/<stream>?ll=0`: whole segments, three target durations back): "
                  "the page's latency, now minus the EXT-X-PROGRAM-DATE-TIME of the frame on screen (when it reached "
                  "ingest), sampled every 500 ms for 30 s once the player has settled (hls.js joins a few seconds "
                  "behind and plays up to 1.1x faster until it reaches its target latency; the measurement starts when "
                  "it has played at normal speed for 3 s). The publisher's SRT latency (120 ms) comes before ingest "
                  "and is not in it. Chromium decodes on the same two cores as the encoders: a stall (the decoder "
                  "falling behind) makes hls.js raise its target latency for the rest of the run. "
                  "Goal for LL-HLS: p50 at or under 2.5 s.", "",
                  "| player | settled after s | samples | p50 ms | p95 ms | max ms | parts loaded | "
                  "whole segments loaded | stalls |", "|---|---|---|---|---|---|---|---|---|"]
        for name, g in glass:
            lines.append(f"| {name} | {g.get('settled_after_s')} | {g['samples']} | {g['ms']['p50']} | {g['ms']['p95']} "
                         f"| {g['ms']['max']} | {g['parts']} | {g['segments']} | {g.get('stalls')} |")
        lines.append("")
        for name, g in glass:
            if g.get("failure") or g.get("errors"):
                lines += [f"{name}: player errors {g.get('errors')}; failure: {g.get('failure')}.", ""]
    s = r["segmenter"]
    lines += ["## 4. Segmenter throughput", "",
              f"Cutting a {s['file_mb']} MB TS file (10 min of 720p25 at 4 Mb/s) into 2 s chunks, written to disk.", "",
              "| | MB/s | CPU s | wall s |", "|---|---|---|---|",
              f"| `ladder chunk` | {s['ladder']['mb_per_s']} | {s['ladder']['cpu_seconds']} | "
              f"{s['ladder']['wall_seconds']} |",
              f"| `ffmpeg -c copy -f segment` | {s['ffmpeg_segment']['mb_per_s']} | {s['ffmpeg_segment']['cpu_seconds']} | "
              f"{s['ffmpeg_segment']['wall_seconds']} |", "",
              f"Ratio ladder / ffmpeg: **{s['ratio_mb_per_s']}x** the throughput, **{s['ratio_cpu']}x** the CPU.", ""]
    lines += ingest_report(r)
    f = r.get("failover")
    if f:
        when = f" (measured on {r['failover_date']}, the other sections on {r['date']})" if r.get("failover_date") else ""
        lines += ["## 6. Segmenter failover", "",
                  f"One 2 Mb/s stream (2 s chunks) through ingest, two `ladder segmenter` processes, a transcoder, "
                  f"the indexer and the manifest{when}. Every {f['seconds_between_kills']} s the segmenter that owns "
                  f"the stream is killed with SIGKILL and a new one is started; {f['kills']} kills. The live edge is the "
                  f"360p live playlist polled every 50 ms; a stall is how much longer than the usual cadence "
                  f"({f['cadence_ms']} ms) the wait for the next segment lasted. Goals: stall p95 under 5 s, 0 chunks lost.", "",
                  "| | p50 ms | p95 ms | max ms |", "|---|---|---|---|",
                  f"| live edge stall | {f['stall_ms']['p50']} | {f['stall_ms']['p95']} | {f['stall_ms']['max']} |",
                  f"| kill to next segment listed | {f['kill_to_next_segment_ms']['p50']} | "
                  f"{f['kill_to_next_segment_ms']['p95']} | {f['kill_to_next_segment_ms']['max']} |", "",
                  f"Chunks in the session: {f['chunk_count']}; listed in the DVR playlist: {f['chunks_listed_dvr']} "
                  f"({f['chunks_listed_twice']} twice); announced twice: {f['chunks_announced_twice']}. "
                  f"**Lost per kill: {f['chunks_lost_per_kill']}**.", ""]
    lines += ["## Commands", ""] + [f"- `{portable(c)}`" for c in r["commands"]] + [""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
