//! The control API (`ladder api`, `ladder.v1.Control`) with the generated tonic client, against a real stack:
//! a live stream listed with its stats, a ladder that applies from the next chunk, a key the next publisher
//! must use, a kicked publisher, failures listed, and every call refused without the token. `ladder top
//! --once` renders the same stream.

mod support;

use std::{
    net::SocketAddr,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use ladder_proto::{
    v1::{
        control_client::ControlClient, GetLadderRequest, GetStreamRequest, KickPublisherRequest, ListFailuresRequest,
        ListStreamsRequest, SetKeyRequest, SetLadderRequest, StreamStatus,
    },
    Event, RenditionConfig,
};
use ladder_srt::{Caller, CallerConfig, RejectReason, SrtError};
use support::{eventually, publish_small, run, Stack, StackOptions, API_TOKEN, LADDER as LADDER_BIN, SMALL_LADDER};
use tonic::{transport::Channel, Code, Request};

struct Api {
    runtime: tokio::runtime::Runtime,
    client: ControlClient<Channel>,
}

impl Api {
    fn connect(url: &str) -> Api {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let client = runtime.block_on(ControlClient::connect(url.to_string())).expect("the api accepts connections");
        Api { runtime, client }
    }

    /// A request with the token, or with `token` instead.
    fn request<T>(message: T, token: Option<&str>) -> Request<T> {
        let mut request = Request::new(message);
        if let Some(token) = token {
            request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("ascii"));
        }
        request
    }

    fn streams(&mut self) -> Vec<StreamStatus> {
        let call = self.client.list_streams(Api::request(ListStreamsRequest {}, Some(API_TOKEN)));
        self.runtime.block_on(call).expect("ListStreams").into_inner().streams
    }

    fn stream(&mut self, stream: &str) -> Result<StreamStatus, tonic::Status> {
        let call = self.client.get_stream(Api::request(GetStreamRequest { stream: stream.into() }, Some(API_TOKEN)));
        self.runtime.block_on(call).map(|r| r.into_inner())
    }
}

fn srt_call(port: u16, stream: &str, passphrase: Option<&str>) -> Result<Caller, SrtError> {
    let mut config = CallerConfig::new(SocketAddr::from(([127, 0, 0, 1], port)), stream);
    config.passphrase = passphrase.map(str::to_string);
    Caller::connect(&config)
}

#[test]
fn the_control_api_lists_sets_kicks_and_needs_its_token() {
    let stack = Stack::start_with(StackOptions { api: true, ladder: Some(SMALL_LADDER.into()), ..Default::default() });
    let mut api = Api::connect(&stack.api_url());

    // Refused without the token, or with another one.
    for token in [None, Some("not-the-token-0123456789")] {
        let call = api.client.list_streams(Api::request(ListStreamsRequest {}, token));
        let refused = api.runtime.block_on(call).expect_err("refused");
        assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    }
    let call = api.client.kick_publisher(Api::request(KickPublisherRequest { stream: "ctl".into() }, None));
    assert_eq!(api.runtime.block_on(call).expect_err("refused").code(), Code::Unauthenticated);
    assert_eq!(api.stream("nothing").expect_err("unknown").code(), Code::NotFound);
    // A stream name is the name itself, never an SRT stream id that holds one.
    let sneaky = api.client.set_key(Api::request(
        SetKeyRequest { stream: "#!::r=ctl,m=publish".into(), key: "a-key-for-ctl2-0123".into() },
        Some(API_TOKEN),
    ));
    assert_eq!(api.runtime.block_on(sneaky).expect_err("not a name").code(), Code::InvalidArgument);

    // A live stream, with its stats.
    // Long enough to be kicked however slow the steps before the kick are.
    let mut publisher = publish_small(&stack.srt_url("ctl"), 600, 440);
    let live = eventually(Duration::from_secs(40), "ctl listed live with stats and chunks", &stack, || {
        api.streams().into_iter().find(|s| {
            s.stream == "ctl"
                && s.live
                && s.stats_at_ms > 0
                && s.chunks >= 2
                && s.renditions.len() == 2
                && s.latency_s > 0.0
        })
    });
    assert!(live.input_bitrate_bps > 100_000.0 && live.input_bitrate_bps < 5_000_000.0, "{live:?}");
    assert!(live.rtt_ms >= 0.0 && live.rtt_ms < 1000.0, "{live:?}");
    assert_eq!(live.renditions, ["120p", "180p"], "{live:?}");
    assert!(live.latency_s < 20.0, "{live:?}");
    assert!(live.chunks_behind <= 2, "{live:?}");
    assert!(!live.has_key);

    // `ladder top --once` renders it.
    let (ok, top, stderr) = run(LADDER_BIN, &["top", "--api", &stack.api_url(), "--api-token", API_TOKEN, "--once"]);
    assert!(ok, "ladder top: {stderr}");
    let line = top.lines().find(|l| l.starts_with("ctl ")).unwrap_or_else(|| panic!("ctl in ladder top:\n{top}"));
    assert!(line.contains(" live ") && line.contains("120p,180p"), "{top}");
    assert!(top.starts_with("ladder top: 1 live of 1 streams"), "{top}");

    // A ladder of its own: from the next chunk on, ctl is transcoded into 90p only.
    let ladder = vec![RenditionConfig { name: "90p".into(), height: 90, video_bitrate: 100_000, ..Default::default() }];
    let call = api.client.set_ladder(Api::request(
        SetLadderRequest { stream: "ctl".into(), renditions: ladder.clone() },
        Some(API_TOKEN),
    ));
    let set = api.runtime.block_on(call).expect("SetLadder").into_inner();
    assert_eq!(set.renditions.len(), 1);
    let bad = api.client.set_ladder(Api::request(
        SetLadderRequest {
            stream: "ctl".into(),
            renditions: vec![RenditionConfig { name: "odd".into(), height: 91, ..Default::default() }],
        },
        Some(API_TOKEN),
    ));
    assert_eq!(api.runtime.block_on(bad).expect_err("an odd height").code(), Code::InvalidArgument);
    let before = stack
        .events()
        .iter()
        .filter_map(|e| match e {
            Event::ChunkStarted(c) if c.stream == "ctl" => Some(c.sequence),
            _ => None,
        })
        .max()
        .expect("chunks started");
    let first_90p = eventually(Duration::from_secs(30), "a 90p chunk", &stack, || {
        stack.events().iter().find_map(|e| match e {
            Event::RenditionReady(r) if r.stream == "ctl" && r.rendition == "90p" => Some(r.sequence),
            _ => None,
        })
    });
    // The chunk in progress when it was set kept the old ladder; no chunk after it did.
    assert!(first_90p <= before + 2, "applies from the next chunk: set during chunk {before}, first 90p {first_90p}");
    let events = stack.events();
    assert!(
        !events.iter().any(|e| matches!(e, Event::RenditionReady(r) if r.stream == "ctl" && r.rendition == "180p" && r.sequence >= first_90p)),
        "no 180p from chunk {first_90p} on"
    );
    let call = api.client.get_ladder(Api::request(GetLadderRequest { stream: "ctl".into() }, Some(API_TOKEN)));
    let got = api.runtime.block_on(call).expect("GetLadder").into_inner();
    assert!(got.own && got.renditions.len() == 1 && got.renditions[0].name == "90p", "{got:?}");

    // A key: the next publisher of ctl2 must use it.
    const KEY: &str = "a-key-for-ctl2-0123";
    let call =
        api.client.set_key(Api::request(SetKeyRequest { stream: "ctl2".into(), key: KEY.into() }, Some(API_TOKEN)));
    let response = api.runtime.block_on(call).expect("SetKey").into_inner();
    assert!(response.generated_key.is_empty() && !response.rotated);
    eventually(Duration::from_secs(10), "ctl2 refused without its key", &stack, || {
        matches!(srt_call(stack.srt_port, "ctl2", None), Err(SrtError::Rejected(r)) if r == RejectReason::UNSECURE)
            .then_some(())
    });
    assert!(
        matches!(srt_call(stack.srt_port, "ctl2", Some("a-wrong-key-0123456")), Err(SrtError::Rejected(r)) if r == RejectReason::BAD_SECRET)
    );
    let keyed = srt_call(stack.srt_port, "ctl2", Some(KEY)).expect("ctl2 accepted with its key");
    drop(keyed);

    // A kick: the publisher is disconnected, its session ends.
    let call = api.client.kick_publisher(Api::request(KickPublisherRequest { stream: "ctl".into() }, Some(API_TOKEN)));
    let kicked = api.runtime.block_on(call).expect("KickPublisher").into_inner();
    assert!(kicked.kicked, "{kicked:?}");
    assert_eq!(kicked.session_id, live.session_id);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !publisher.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(publisher.is_finished(), "the kicked publisher's ffmpeg saw its connection closed");
    let ended = eventually(Duration::from_secs(30), "ctl ended as kicked", &stack, || {
        api.stream("ctl").ok().filter(|s| !s.live && s.session_ended_ms > 0)
    });
    assert_eq!(ended.end_reason, "kicked");
    let call = api.client.kick_publisher(Api::request(KickPublisherRequest { stream: "ctl".into() }, Some(API_TOKEN)));
    assert!(!api.runtime.block_on(call).expect("KickPublisher").into_inner().kicked, "nothing left to kick");

    // A failure: a program without video is refused by the segmenter, and listed.
    let mut novideo = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re", "-f", "lavfi", "-i", "sine", "-t", "5"])
        .args(["-c:a", "aac", "-f", "mpegts", &stack.srt_url("novideo")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ffmpeg");
    let failure = eventually(Duration::from_secs(30), "the failure of novideo", &stack, || {
        let call = api
            .client
            .list_failures(Api::request(ListFailuresRequest { stream: "novideo".into(), limit: 10 }, Some(API_TOKEN)));
        api.runtime.block_on(call).expect("ListFailures").into_inner().failures.into_iter().next()
    });
    assert_eq!(failure.stage, "segmenter");
    assert!(failure.reason.contains("no video stream"), "{failure:?}");
    let _ = novideo.kill();
    let _ = novideo.wait();
    assert!(stack.crashed().is_empty(), "crashed: {:?}", stack.crashed());
}
