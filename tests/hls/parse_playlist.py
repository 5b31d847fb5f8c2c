"""Parses an HLS playlist with the independent `m3u8` package, strictly, and prints what it found as JSON.

Usage: parse_playlist.py FILE. Exit status 1, with the reason on stderr, if the package refuses the playlist or
warns about it. The Rust tests (tests/hls.rs) check the attributes it reports.
"""
import json
import sys
import warnings

import m3u8


def main(path):
    text = open(path, encoding="utf-8").read()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # strict: any line the parser does not know, or a malformed one, is an error.
        m3u8.parser.parse(text, strict=True)
        playlist = m3u8.loads(text)
    if caught:
        sys.exit("warnings: " + "; ".join(str(w.message) for w in caught))
    if playlist.is_variant:
        out = {
            "variant": True,
            "independent_segments": playlist.is_independent_segments,
            "variants": [
                {
                    "uri": p.uri,
                    "bandwidth": p.stream_info.bandwidth,
                    "average_bandwidth": p.stream_info.average_bandwidth,
                    "resolution": list(p.stream_info.resolution) if p.stream_info.resolution else None,
                    "frame_rate": p.stream_info.frame_rate,
                    "codecs": p.stream_info.codecs,
                }
                for p in playlist.playlists
            ],
        }
    else:
        # The segment being produced (LL-HLS) has parts and no URI yet: reported apart from the segments.
        complete = [s for s in playlist.segments if s.uri is not None]
        pending = [s for s in playlist.segments if s.uri is None]
        parts = lambda s: [
            {"uri": p.uri, "duration": p.duration, "independent": p.independent == "YES"} for p in s.parts
        ]
        control = playlist.server_control
        out = {
            "variant": False,
            "version": playlist.version,
            "target_duration": playlist.target_duration,
            "media_sequence": playlist.media_sequence,
            "discontinuity_sequence": playlist.discontinuity_sequence,
            "endlist": playlist.is_endlist,
            "playlist_type": playlist.playlist_type,
            "independent_segments": playlist.is_independent_segments,
            "segments": [
                {
                    "uri": s.uri,
                    "duration": s.duration,
                    "program_date_time": s.program_date_time.isoformat() if s.program_date_time else None,
                    "discontinuity": s.discontinuity,
                    "parts": parts(s),
                }
                for s in complete
            ],
            "pending": [
                {
                    "program_date_time": s.program_date_time.isoformat() if s.program_date_time else None,
                    "discontinuity": s.discontinuity,
                    "parts": parts(s),
                }
                for s in pending
            ],
            "server_control": {
                "can_block_reload": control.can_block_reload == "YES",
                "part_hold_back": control.part_hold_back,
                "can_skip_until": control.can_skip_until,
            }
            if control and control.can_block_reload
            else None,
            "part_target": playlist.part_inf.part_target if playlist.part_inf else None,
            "preload_hint": {"type": playlist.preload_hint.hint_type, "uri": playlist.preload_hint.uri}
            if playlist.preload_hint
            else None,
            "rendition_reports": [
                {"uri": r.uri, "last_msn": r.last_msn, "last_part": r.last_part} for r in playlist.rendition_reports
            ],
            "skipped_segments": playlist.skip.skipped_segments if playlist.skip else 0,
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])
