#!/usr/bin/env bash
# Writes the seed corpus of every fuzz target into fuzz/seeds/<target>/ (generated, not committed): short
# H.264 + AAC MPEG-TS streams from ffmpeg's lavfi test sources, in several variants (sizes, profiles, GOPs,
# interlacing, scaling matrices, with and without audio), cut into seeds of a few KiB (fuzzers prefer small
# inputs); their SPS NAL units for the sps target; a handful of streamids. Safe to run again (it starts over).
set -euo pipefail
cd "$(dirname "$0")"
command -v ffmpeg >/dev/null || { echo "seed: ffmpeg is needed (scripts/install-deps.sh installs it)" >&2; exit 1; }

seeds=seeds
rm -rf "$seeds"
mkdir -p "$seeds"/{chunker,parts,realigner,sps,stream_id}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# name | video size and rate | x264 options | audio (yes/no) | extra output options
variants=(
  "base|96x64:r=25|-profile:v baseline -g 4|yes|"
  "main|160x90:r=30|-profile:v main -g 6 -bf 2|no|"
  "high|176x144:r=25|-profile:v high -g 5 -x264-params cqm=jvt|yes|"
  "crop|106x60:r=24|-profile:v high -g 3|yes|"
  "i444|64x64:r=25|-profile:v high444 -pix_fmt yuv444p -g 4|no|"
  "tff|128x96:r=25|-profile:v high -flags +ildct+ilme -x264-params tff=1 -g 6|yes|"
  "hd|1280x720:r=30|-profile:v high -g 2 -b:v 60k|no|"
  "off|128x72:r=25|-profile:v main -g 5|yes|-output_ts_offset 95443"
)
for variant in "${variants[@]}"; do
  IFS='|' read -r name video x264 audio extra <<<"$variant"
  inputs=(-f lavfi -i "testsrc=size=${video%%:*}:${video#*:}:duration=2")
  maps=(-map 0:v)
  if [ "$audio" = yes ]; then
    inputs+=(-f lavfi -i "sine=frequency=440:sample_rate=48000:duration=2")
    maps+=(-map 1:a -c:a aac -b:a 32k)
  fi
  # shellcheck disable=SC2086
  ffmpeg -hide_banner -loglevel error -nostdin -y "${inputs[@]}" "${maps[@]}" \
    -c:v libx264 -preset ultrafast -pix_fmt yuv420p $x264 $extra -f mpegts "$work/$name.ts"
  # Annex B elementary stream, for its SPS NAL units.
  ffmpeg -hide_banner -loglevel error -nostdin -y -i "$work/$name.ts" -map 0:v -c copy -f h264 "$work/$name.h264"
done

python3 - "$work" "$seeds" <<'EOF'
import hashlib, pathlib, sys

work, seeds = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
PACKET = 188

def write(target, data):
    name = hashlib.sha1(data).hexdigest()[:16]
    (seeds / target / name).write_bytes(data)

for ts in sorted(work.glob("*.ts")):
    stream = ts.read_bytes()
    packets = len(stream) // PACKET
    # The stream's start (PAT, PMT, the first IDR and some frames after it), and windows further in, of 8 to
    # 80 packets (1.5 to 15 KiB). A leading byte is the target's settings (target duration, reads, ...).
    for i, (start, count) in enumerate([(0, 40), (0, 80), (0, 16), (packets // 3, 40), (packets // 2, 8),
                                        (packets - 40, 40)]):
        window = stream[max(start, 0) * PACKET:(max(start, 0) + count) * PACKET]
        for settings in (0x00, 0x0d + 8 * i, 0x5b + 16 * i):
            write("chunker", bytes([settings & 0xff]) + window)
            write("realigner", bytes([settings & 0xff]) + window)
        write("parts", bytes([0x0a + 32 * i & 0xff, 0x07 * (i + 1)]) + window)
    # The realigner also gets unaligned reads of the start: garbage before it, a packet cut short inside it.
    write("realigner", b"\x02" + b"\x00\x47\x13" + stream[: 20 * PACKET])
    write("realigner", b"\x05" + stream[: 5 * PACKET + 100] + stream[6 * PACKET : 20 * PACKET])

for es in sorted(work.glob("*.h264")):
    data = es.read_bytes()
    starts = [i + 3 for i in range(len(data) - 3) if data[i : i + 3] == b"\x00\x00\x01"]
    for i, start in enumerate(starts):
        end = starts[i + 1] - 3 if i + 1 < len(starts) else len(data)
        nal = data[start:end].rstrip(b"\x00")
        if nal and nal[0] & 0x1F == 7:
            write("sps", nal)

for stream_id in [
    "live", "cam-1", "Studio_B-02", "a" * 64, "a" * 65, "#!::r=cam-1,m=publish", "#!::m=publish,r=cam-1",
    "#!::u=alice,r=cam-1,h=example.org,s=abc,t=stream", "#!::r=live/name,m=publish", "#!::r=cam-1,m=request",
    "#!::r=a,r=b", "#!::", "#!::r=", "caf\u00e9", "ingest.>",
]:
    write("stream_id", stream_id.encode())

for target in sorted(p.name for p in seeds.iterdir()):
    files = list((seeds / target).iterdir())
    print(f"seed: {target}: {len(files)} seeds, {sum(f.stat().st_size for f in files)} bytes")
EOF
