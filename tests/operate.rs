//! Operating ladder: a real Prometheus scrapes every service of a stack while a stream runs, and the series it
//! stored are read back from its HTTP API; the alert rules shipped in `deploy/prometheus/` load in it and pass
//! their `promtool` unit tests.

mod support;

use std::{net::SocketAddr, time::Duration};

use ladder_proto::Event;
use ladder_srt::{Caller, CallerConfig, RejectReason, SrtError};
use support::{
    eventually, get_url, otlp,
    prometheus::{alert_rules, Prometheus, Target},
    publish_small, run, Stack, StackOptions, SMALL_LADDER,
};

const STREAM: &str = "metrics";

#[test]
fn prometheus_scrapes_every_service_during_a_stream() {
    let stack =
        Stack::start_with(StackOptions { metrics: true, ladder: Some(SMALL_LADDER.into()), ..Default::default() });
    let targets: Vec<Target> =
        stack.metrics_targets().into_iter().map(|(job, name, port)| Target { job, name, port }).collect();
    assert_eq!(targets.len(), 5, "every service serves metrics");
    // Each is ready (NATS connected, and its storage and index answering), on the same listener.
    for target in &targets {
        let backends: &[&str] = match target.job.as_str() {
            "segmenter" | "transcoder" => &["nats", "storage"],
            "indexer" => &["nats", "index"],
            "manifest" => &["nats", "storage", "index"],
            _ => &["nats"],
        };
        let body = eventually(Duration::from_secs(20), &format!("{} ready", target.name), &stack, || {
            let (status, body) = get_url(&format!("http://127.0.0.1:{}/readyz", target.port));
            (status == 200).then(|| String::from_utf8_lossy(&body).into_owned())
        });
        for backend in backends {
            assert!(body.contains(&format!("{}: {backend}", target.job)), "{} /readyz: {body}", target.name);
        }
        assert_eq!(get_url(&format!("http://127.0.0.1:{}/healthz", target.port)).0, 200);
    }
    let prometheus = Prometheus::start(&targets);

    // Every target is up, and the alert rules loaded.
    eventually(Duration::from_secs(30), "prometheus scrapes all five services", &stack, || {
        (prometheus.value("sum(up{job=~\"ladder-.*\"})") == Some(5.0)).then_some(())
    });
    let rules = prometheus.api("/api/v1/rules", &[]);
    let groups = rules["groups"].as_array().expect("rule groups");
    let loaded: Vec<&str> = groups
        .iter()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .filter_map(|r| r["name"].as_str())
        .collect();
    for alert in ["LadderLiveStreamNoChunks", "LadderTranscodeBacklogGrowing", "LadderPublishersRefusedSpike"] {
        assert!(loaded.contains(&alert), "alert {alert} loaded in prometheus: {loaded:?}");
    }
    assert!(
        groups.iter().flat_map(|g| g["rules"].as_array().into_iter().flatten()).all(|r| r["health"] != "err"),
        "no rule fails to evaluate: {rules}"
    );

    // A publisher that encrypts to a stream without a key is refused (UNSECURE), and counted.
    let mut config = CallerConfig::new(SocketAddr::from(([127, 0, 0, 1], stack.srt_port)), "nokey");
    config.passphrase = Some("a passphrase nobody asked for".into());
    match Caller::connect(&config) {
        Err(SrtError::Rejected(reason)) => assert_eq!(reason, RejectReason::UNSECURE),
        Err(other) => panic!("expected UNSECURE, got {other}"),
        Ok(_) => panic!("an encrypting publisher to a stream without a key was accepted"),
    }

    let publisher = publish_small(&stack.srt_url(STREAM), 14, 440);
    // While the stream is live: its SRT series are there.
    let rtt = eventually(Duration::from_secs(30), "the srt rtt of the live stream", &stack, || {
        prometheus.value(&format!("max(ladder_srt_rtt_seconds{{stream=\"{STREAM}\"}})"))
    });
    assert!((0.0..1.0).contains(&rtt), "rtt over loopback: {rtt} s");
    let rate = eventually(Duration::from_secs(30), "the srt receive rate", &stack, || {
        prometheus
            .value(&format!("max(ladder_srt_receive_rate_bytes_per_second{{stream=\"{STREAM}\"}})"))
            .filter(|rate| *rate > 0.0)
    });
    // 400 kb/s of video and 128 kb/s of audio, in TS over SRT.
    assert!((20_000.0..1_000_000.0).contains(&rate), "receive rate {rate} B/s");
    eventually(Duration::from_secs(10), "one publisher connected", &stack, || {
        (prometheus.value("sum(ladder_ingest_publishers)") == Some(1.0)).then_some(())
    });
    // Players: the master, a live playlist, and a blocking reload of the next segment.
    let live = eventually(Duration::from_secs(30), "a live playlist", &stack, || {
        let (status, body) = stack.get(&format!("/live/{STREAM}/180p.m3u8"));
        (status == 200 && body.contains("#EXTINF")).then_some(body)
    });
    assert_eq!(stack.get(&format!("/live/{STREAM}/master.m3u8")).0, 200);
    let msn: u64 = live
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("media sequence");
    let segments = live.lines().filter(|l| l.starts_with("#EXTINF")).count() as u64;
    let (status, _) = stack.get(&format!("/live/{STREAM}/180p.m3u8?_HLS_msn={}", msn + segments));
    assert_eq!(status, 200, "a blocking reload of the next segment");
    // A path no route matches is counted under `unmatched`, never under its own path.
    assert_eq!(get_url(&stack.url("/no/such/page")).0, 404);

    publisher.finish();
    let ended = eventually(Duration::from_secs(60), "the stream's playlists end", &stack, || {
        let (status, body) = stack.get(&format!("/live/{STREAM}/180p.m3u8"));
        (status == 200 && body.contains("#EXT-X-ENDLIST")).then_some(body)
    });
    let events = stack.events();
    let chunks = events.iter().filter(|e| matches!(e, Event::ChunkUploaded(c) if c.stream == STREAM)).count();
    let renditions = events.iter().filter(|e| matches!(e, Event::RenditionReady(r) if r.stream == STREAM)).count();
    assert!(chunks >= 5, "14 s in chunks of 2 s: {chunks}");
    assert_eq!(renditions, 2 * chunks, "every chunk in 2 renditions");
    assert!(ended.matches("#EXTINF").count() >= chunks.min(6), "{ended}");

    // What Prometheus stored agrees with the event log once the last scrape is in.
    let counted = |expr: &str, expected: usize| {
        let what = format!("{expr} = {expected}");
        eventually(Duration::from_secs(30), &what, &stack, || {
            prometheus.value(expr).filter(|value| *value == expected as f64)
        });
    };
    // A value once Prometheus has one (a slow scrape leaves a series stale for a moment).
    let settled = |expr: &str| eventually(Duration::from_secs(30), expr, &stack, || prometheus.value(expr));
    counted(&format!("sum(ladder_segmenter_chunks_total{{stream=\"{STREAM}\"}})"), chunks);
    counted("sum(ladder_transcoder_renditions_ready_total)", renditions);
    counted("sum(ladder_transcoder_attempts_total{kind=\"done\"})", chunks);
    counted("sum(ladder_indexer_apply_seconds_count{event=\"rendition.ready\"})", renditions);
    // One manifest: it listed every rendition chunk once, each with its latency from ingest.
    counted("sum(ladder_ingest_to_playlist_seconds_count)", renditions);
    counted("sum(ladder_chunks_failed_total)", 0);
    counted("sum(ladder_ingest_publishers_refused_total{reason=\"UNSECURE\"})", 1);
    counted("sum(ladder_ingest_publishers_accepted_total)", 1);
    counted("sum(ladder_ingest_publishers)", 0);
    // The backlogs drain to 0 once everything is done.
    counted("max(ladder_consumer_pending{consumer=\"transcoder\"})", 0);
    counted("max(ladder_consumer_pending{consumer=\"indexer\"})", 0);
    counted("max(ladder_consumer_ack_pending{consumer=\"indexer\"})", 0);

    let p50 = settled("histogram_quantile(0.5, sum by (le) (ladder_ingest_to_playlist_seconds_bucket))");
    // A 2 s chunk is listed once transcoded: well under 10 s on any machine that runs the suite.
    assert!(p50 > 0.0 && p50 < 10.0, "ingest to playlist p50 {p50} s");
    let chunk_seconds = settled(
        "sum(ladder_segmenter_chunk_duration_seconds_sum) / sum(ladder_segmenter_chunk_duration_seconds_count)",
    );
    assert!((1.5..=2.5).contains(&chunk_seconds), "chunks of about 2 s: {chunk_seconds}");
    let bytes = settled(&format!("sum(ladder_ingest_bytes_total{{stream=\"{STREAM}\"}})"));
    assert!(bytes > 200_000.0, "14 s at about 500 kb/s: {bytes} bytes");
    let puts = settled("sum(ladder_storage_request_seconds_count{operation=\"put\"})");
    // Each chunk stored once as source and once per rendition, plus the parts.
    assert!(puts >= (chunks + renditions) as f64, "storage puts {puts}");
    let served = settled("sum(ladder_http_requests_total{route=\"/live/{stream}/{file}\",status=\"200\"})");
    assert!(served >= 3.0, "playlists served: {served}");
    counted("sum(ladder_http_requests_total{route=\"unmatched\",status=\"404\"})", 1);
    let blocked = settled("sum(ladder_manifest_blocked_reload_seconds_count{kind=\"answered\"})");
    assert!(blocked >= 1.0, "the blocking reload was counted: {blocked}");
    for service in ["ingest", "segmenter", "transcoder", "indexer", "manifest"] {
        counted(&format!("max_over_time(up{{job=\"ladder-{service}\"}}[5s])"), 1);
    }
    assert!(stack.crashed().is_empty(), "crashed: {:?}", stack.crashed());
}

#[test]
fn alert_rules_are_valid_and_pass_their_unit_tests() {
    let rules = alert_rules();
    let (ok, stdout, stderr) = run("promtool", &["check", "rules", &rules.display().to_string()]);
    assert!(ok, "promtool check rules: {stdout}{stderr}");
    assert!(stdout.contains("SUCCESS"), "{stdout}");
    let tests = rules.with_file_name("alerts.test.yml");
    let dir = tests.parent().expect("deploy/prometheus");
    let output = std::process::Command::new("promtool")
        .args(["test", "rules", "alerts.test.yml"])
        .current_dir(dir)
        .output()
        .expect("promtool runs (make test installs it)");
    let printed = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "promtool test rules: {printed}");
    assert!(printed.contains("SUCCESS"), "{printed}");

    // The compose deployment's Prometheus configuration, with its rules where the container mounts them.
    let scratch = tempfile::tempdir().expect("tempdir");
    let config = std::fs::read_to_string(dir.join("compose.yml")).expect("deploy/prometheus/compose.yml");
    let rules_copy = scratch.path().join("alerts.yml");
    std::fs::copy(&rules, &rules_copy).expect("copy the rules");
    let config = config.replace("/etc/prometheus/alerts.yml", &rules_copy.display().to_string());
    let config_path = scratch.path().join("prometheus.yml");
    std::fs::write(&config_path, config).expect("write");
    let (ok, stdout, stderr) = run("promtool", &["check", "config", &config_path.display().to_string()]);
    assert!(ok, "promtool check config deploy/prometheus/compose.yml: {stdout}{stderr}");
}

/// Spans by id, of one trace.
fn by_id(spans: &[&otlp::Span]) -> std::collections::HashMap<String, otlp::Span> {
    spans.iter().map(|s| (s.span_id.clone(), (*s).clone())).collect()
}

#[test]
fn one_chunk_is_one_trace_across_every_service() {
    let receiver = otlp::Receiver::start();
    let stack = Stack::start_with(StackOptions {
        otlp_endpoint: Some(receiver.endpoint()),
        ladder: Some(SMALL_LADDER.into()),
        ..Default::default()
    });
    let publisher = publish_small(&stack.srt_url("traced"), 8, 440);
    eventually(Duration::from_secs(30), "a live playlist", &stack, || {
        (stack.get("/live/traced/180p.m3u8").0 == 200).then_some(())
    });
    publisher.finish();

    const SERVICES: [&str; 5] =
        ["ladder-ingest", "ladder-segmenter", "ladder-transcoder", "ladder-indexer", "ladder-manifest"];
    // A trace of a whole chunk: a segmenter span with its sequence, and spans from every service.
    let (trace_id, spans) = eventually(
        Duration::from_secs(60),
        "a trace with spans of all five services",
        &stack,
        || {
            let spans = receiver.spans();
            let mut traces: std::collections::BTreeMap<&str, Vec<&otlp::Span>> = Default::default();
            for span in &spans {
                traces.entry(span.trace_id.as_str()).or_default().push(span);
            }
            let found = traces.into_iter().find_map(|(id, spans)| {
            let complete = SERVICES.iter().all(|service| spans.iter().any(|s| s.service == *service))
                && ["ingest.gop", "segmenter.chunk", "transcoder.chunk", "ffmpeg", "storage.put", "indexer.apply", "manifest.listing"]
                    .iter()
                    .all(|name| spans.iter().any(|s| s.name == *name))
                // Both renditions listed, both indexed.
                && spans.iter().filter(|s| s.name == "manifest.listing").count() >= 2;
            complete.then(|| (id.to_string(), spans.into_iter().cloned().collect::<Vec<_>>()))
        });
            found
        },
    );
    let refs: Vec<&otlp::Span> = spans.iter().collect();
    let ids = by_id(&refs);
    let named = |name: &str| spans.iter().filter(|s| s.name == name).collect::<Vec<_>>();
    let parent_name = |span: &otlp::Span| ids.get(&span.parent_span_id).map(|p| p.name.clone());
    // One root, ingest's; every other span's parent is in the trace.
    let roots: Vec<&otlp::Span> = spans.iter().filter(|s| s.parent_span_id.is_empty()).collect();
    assert_eq!(roots.len(), 1, "one root in trace {trace_id}: {roots:?}");
    assert_eq!((roots[0].name.as_str(), roots[0].service.as_str()), ("ingest.gop", "ladder-ingest"));
    for span in &spans {
        if !span.parent_span_id.is_empty() {
            assert!(ids.contains_key(&span.parent_span_id), "the parent of {span:?} is in trace {trace_id}");
        }
    }
    // The chain: ingest -> segmenter -> transcoder (ffmpeg, uploads) -> indexer and manifest.
    let segmenter = named("segmenter.chunk");
    assert_eq!(segmenter.len(), 1, "one segmenter span: {segmenter:?}");
    assert_eq!(parent_name(segmenter[0]).as_deref(), Some("ingest.gop"));
    let sequence = segmenter[0].attributes.get("sequence").cloned().expect("the chunk's sequence");
    let transcoder = named("transcoder.chunk");
    assert!(!transcoder.is_empty());
    for span in &transcoder {
        assert_eq!(parent_name(span).as_deref(), Some("segmenter.chunk"), "{span:?}");
        assert_eq!(span.attributes.get("sequence"), Some(&sequence), "the same chunk: {span:?}");
    }
    for span in named("ffmpeg") {
        assert_eq!(parent_name(span).as_deref(), Some("transcoder.chunk"), "{span:?}");
    }
    let puts = named("storage.put");
    assert!(puts.iter().any(|s| s.service == "ladder-segmenter"), "the source chunk's upload: {puts:?}");
    // Each rendition's parts and its segment.
    assert!(puts.iter().filter(|s| s.service == "ladder-transcoder").count() >= 4, "{puts:?}");
    for span in &puts {
        let parent = parent_name(span);
        assert!(matches!(parent.as_deref(), Some("segmenter.chunk" | "transcoder.chunk")), "{span:?}");
    }
    for span in named("manifest.listing") {
        assert_eq!(parent_name(span).as_deref(), Some("transcoder.chunk"), "{span:?}");
    }
    let indexed: Vec<Option<String>> = named("indexer.apply").into_iter().map(parent_name).collect();
    assert!(indexed.contains(&Some("segmenter.chunk".into())), "chunk.started or chunk.uploaded indexed: {indexed:?}");
    assert!(indexed.contains(&Some("transcoder.chunk".into())), "rendition.ready indexed: {indexed:?}");
    eprintln!(
        "trace {trace_id}: {} spans ({} export requests in all): {:?}",
        spans.len(),
        receiver.requests(),
        spans.iter().map(|s| format!("{}/{}", s.service, s.name)).collect::<Vec<_>>()
    );
}

/// A service whose object storage does not answer is alive (`/healthz`) but not ready (`/readyz` 503, naming
/// the storage), though NATS is connected: what compose and Nomad checks rely on to hold traffic back.
#[test]
fn a_service_is_not_ready_while_its_storage_does_not_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let nats = runtime
        .block_on(ladder_bus::server::NatsServer::start(&dir.path().join("nats"), None))
        .expect("nats-server (make test installs it)");
    let metrics = ladder_bus::server::free_port().expect("a free port");
    let dead = ladder_bus::server::free_port().expect("a free port");
    let log = std::fs::File::create(dir.path().join("segmenter.log")).expect("log");
    /// Killed when dropped, so that a failed assertion leaves no process behind.
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut segmenter = std::process::Command::new(support::LADDER)
        .args(["segmenter", "--nats", &nats.url(), "--storage", "s3://nobody"])
        .args(["--metrics-listen", &format!("127.0.0.1:{metrics}")])
        .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{dead}"))
        .env("AWS_REGION", "test")
        .env("AWS_ACCESS_KEY_ID", "GK0123456789abcdef")
        .env("AWS_SECRET_ACCESS_KEY", "0123456789abcdef0123456789abcdef")
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .map(KillOnDrop)
        .expect("ladder runs");
    let log = || std::fs::read_to_string(dir.path().join("segmenter.log")).unwrap_or_default();
    let url = |path: &str| format!("http://127.0.0.1:{metrics}{path}");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let body = loop {
        let answer = std::panic::catch_unwind(|| get_url(&url("/readyz")));
        if let Ok((status, body)) = answer {
            let body = String::from_utf8_lossy(&body).into_owned();
            if body.contains("segmenter: storage") {
                assert_eq!(status, 503, "/readyz with the storage down: {body}");
                break body;
            }
        }
        assert!(std::time::Instant::now() < deadline, "no storage verdict on /readyz within 30 s\n{}", log());
        std::thread::sleep(Duration::from_millis(250));
    };
    assert!(!body.contains("segmenter: nats:"), "NATS is connected, only the storage is down: {body}");
    assert_eq!(get_url(&url("/healthz")).0, 200, "alive all the same");
    assert!(segmenter.0.try_wait().expect("wait").is_none(), "the segmenter keeps running:\n{}", log());
}
