//! Least privilege on NATS: the whole stack on a nats-server with deploy/nats/ladder.conf, every service (and
//! the control API) connected as its own user, the topology made by `ladder setup` as the operator's user.
//! Checked: a stream published over SRT plays through every service with no permission refused to any of
//! them (nats-server logs each refusal); then, as each service's user, what it must not do is refused and
//! leaves nothing behind: a manifest or an ingest cannot publish chunk or rendition events, a transcoder
//! cannot publish chunks, a segmenter cannot publish renditions, no service user can delete a stream or take
//! messages from another's durable consumer; after a NATS restart (every consumer made again) a new stream
//! plays with the same permissions; a wrong password stops a service at once with the reason and
//! without the password in its output.

mod support;

use std::time::{Duration, Instant};

use ladder_bus::{topology, Bus, BusError};
use ladder_proto::{
    v1::{control_client::ControlClient, KickPublisherRequest, ListStreamsRequest, SetKeyRequest},
    Event,
};
use support::{eventually, publish_small, run, Stack, StackOptions, API_TOKEN, LADDER, SMALL_LADDER};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

fn authorized<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("authorization", format!("Bearer {API_TOKEN}").parse().expect("ascii"));
    request
}

fn forged(subject_prefix: &str, stream: &str) -> Event {
    match subject_prefix {
        "chunk.uploaded" => Event::ChunkUploaded(ladder_proto::ChunkUploaded {
            stream: stream.into(),
            session_id: "forged-session".into(),
            ..Default::default()
        }),
        "rendition.ready" => Event::RenditionReady(ladder_proto::RenditionReady {
            stream: stream.into(),
            session_id: "forged-session".into(),
            rendition: "180p".into(),
            ..Default::default()
        }),
        other => panic!("no forged {other}"),
    }
}

#[test]
fn every_service_runs_as_its_own_user_with_only_what_it_needs() {
    let mut stack = Stack::start_with(StackOptions {
        nats_users: true,
        api: true,
        ladder: Some(SMALL_LADDER.to_string()),
        end_grace: Some(30),
        ..StackOptions::default()
    });
    let publisher = publish_small(&stack.srt_url("cam"), 60, 440);
    let media = eventually(Duration::from_secs(60), "cam's 180p with segments", &stack, || {
        let (status, media) = stack.get("/live/cam/180p.m3u8");
        (status == 200 && media.matches("#EXTINF").count() >= 2).then_some(media)
    });
    let segment = media.lines().find(|l| !l.starts_with('#') && !l.is_empty()).expect("a segment URI");
    let segment = if segment.starts_with('/') { segment.to_string() } else { format!("/live/cam/{segment}") };
    let (status, _) = stack.get(&segment);
    assert_eq!(status, 200, "{segment} of {media}");
    let (status, master) = stack.get("/live/cam/master.m3u8");
    assert_eq!((status, master.matches("#EXT-X-STREAM-INF").count()), (200, 2), "{master}");
    // The control API as its user: the streams (event log, claims, SRT statistics), a key, a kick (answered
    // by the ingest that holds the publisher).
    let rt = runtime();
    let mut api = rt.block_on(ControlClient::connect(stack.api_url())).expect("the api accepts connections");
    let streams = eventually(Duration::from_secs(10), "cam live in ListStreams", &stack, || {
        let streams = rt.block_on(api.list_streams(authorized(ListStreamsRequest {}))).ok()?.into_inner().streams;
        streams.iter().any(|s| s.stream == "cam" && s.live && s.stats_at_ms > 0).then_some(streams)
    });
    assert_eq!(streams.len(), 1, "{streams:?}");
    let call = api.set_key(authorized(SetKeyRequest { stream: "cam2".into(), key: "camera-key-0123456".into() }));
    rt.block_on(call).expect("SetKey as the api user");
    eventually(Duration::from_secs(10), "the key the api set", &stack, || {
        stack.kv_get(ladder_bus::kv::STREAM_KEYS, "cam2").filter(|key| key.contains("camera-key-0123456"))
    });
    let call = api.kick_publisher(authorized(KickPublisherRequest { stream: "cam".into() }));
    assert!(rt.block_on(call).expect("KickPublisher as the api user").into_inner().kicked);
    publisher.stop(Duration::from_secs(10));
    // The session ends (segmenter, indexer, manifest): the playlist says so.
    eventually(Duration::from_secs(60), "cam's playlists ended", &stack, || {
        let (_, media) = stack.get("/live/cam/180p.m3u8");
        media.contains("#EXT-X-ENDLIST").then_some(())
    });
    // A NATS restart: every consumer is made again (ordered consumers under new names) with the same
    // permissions, and a new session plays.
    stack.restart_nats();
    // Ordered consumers lost on the server (as when their NATS node dies) are made again by async-nats under
    // a name of their own (`<prefix>_1`), which their user must be allowed to create.
    let admin = rt.block_on(Bus::connect(&stack.nats_url)).expect("the operator connects");
    let ordered = |admin: &Bus| {
        rt.block_on(async {
            use futures::TryStreamExt;
            let mut ordered = Vec::new();
            for name in [topology::EVENTS_STREAM, topology::PARTS_STREAM] {
                let stream = admin.jetstream().get_stream(name).await.ok()?;
                let consumers: Vec<String> = stream.consumer_names().try_collect().await.ok()?;
                let durable = |c: &String| c == topology::TRANSCODER || c == topology::INDEXER;
                ordered.extend(consumers.into_iter().filter(|c| !durable(c)).map(|c| (name, c)));
            }
            Some(ordered)
        })
    };
    // The manifest follows the event log and the parts, the api the event log.
    let lost = eventually(Duration::from_secs(30), "the ordered consumers made again", &stack, || {
        ordered(&admin).filter(|ordered| ordered.len() >= 3)
    });
    rt.block_on(async {
        for (name, consumer) in &lost {
            let stream = admin.jetstream().get_stream(*name).await.expect("stream");
            stream.delete_consumer(consumer).await.expect("delete an ordered consumer");
        }
    });
    eventually(Duration::from_secs(30), "the deleted ordered consumers made again", &stack, || {
        let now = ordered(&admin)?;
        (now.len() >= lost.len() && !now.iter().any(|c| lost.contains(c))).then_some(())
    });
    let second = publish_small(&stack.srt_url("cam4"), 30, 550);
    eventually(Duration::from_secs(90), "cam4 with segments after the NATS restart", &stack, || {
        let (status, media) = stack.get("/live/cam4/180p.m3u8");
        (status == 200 && media.matches("#EXTINF").count() >= 2).then_some(())
    });
    eventually(Duration::from_secs(30), "cam4 in ListStreams after the NATS restart", &stack, || {
        let streams = rt.block_on(api.list_streams(authorized(ListStreamsRequest {}))).ok()?.into_inner().streams;
        streams.iter().any(|s| s.stream == "cam4" && s.live).then_some(())
    });
    second.stop(Duration::from_secs(10));
    // The operator's user may do what services may not.
    let (code, out, err) = stack.ladder(&["stream", "set-key", "cam3", "--key", "camera-key-0123456"]);
    assert_eq!(code, 0, "the operator sets a key: {out}{err}");

    let log = stack.nats_log();
    assert!(!log.contains("Violation"), "a service was refused something it needs:\n{log}");
    let crashed = stack.crashed();
    assert!(crashed.is_empty(), "{crashed:?}\n{}", stack.logs());

    // What each user must not publish: (user, event).
    let refusals = [
        ("manifest", "chunk.uploaded"),
        ("ingest", "rendition.ready"),
        ("transcoder", "chunk.uploaded"),
        ("segmenter", "rendition.ready"),
        ("indexer", "chunk.uploaded"),
    ];
    for (user, prefix) in refusals {
        let bus = rt.block_on(Bus::connect(&stack.nats_url_of(user))).unwrap_or_else(|e| panic!("{user}: {e}"));
        let stream = format!("forged-by-{user}");
        let event = forged(prefix, &stream);
        let started = Instant::now();
        match rt.block_on(bus.publish_event(&event)) {
            Err(BusError::Forbidden { subject, refusal }) => {
                assert_eq!(subject, format!("{prefix}.{stream}"));
                assert!(refusal.contains("Permissions Violation"), "{refusal}");
            }
            other => panic!("{user} publishing {prefix}: expected Forbidden, got {other:?}"),
        }
        // Refused on the first attempt (its acknowledgement times out after 5 s), not retried for 30 s.
        assert!(started.elapsed() < Duration::from_secs(15), "{user}: {:?}", started.elapsed());
        // A plain (non-JetStream) publish of the same subject is dropped by the server too.
        let client = bus_client(&rt, &stack, user);
        rt.block_on(async {
            client.publish(format!("{prefix}.{stream}"), "forged".into()).await.expect("sent");
            client.flush().await.expect("flushed");
        });
        std::thread::sleep(Duration::from_millis(300));
        let stored = rt.block_on(admin.last_message(topology::EVENTS_STREAM, &format!("{prefix}.{stream}")));
        assert!(matches!(stored, Ok(None)), "{user} stored a {prefix}: {stored:?}");
    }

    // Raw TS only from ingest: a manifest cannot inject bytes into a live stream.
    let manifest = bus_client(&rt, &stack, "manifest");
    rt.block_on(async {
        manifest.publish("ingest.ts.cam", vec![0x47u8; 188].into()).await.expect("sent");
        manifest.flush().await.expect("flushed");
    });

    // No service user deletes a stream or reads another's durable consumer.
    for (user, subject) in [
        ("manifest", "$JS.API.STREAM.DELETE.LADDER_EVENTS"),
        ("ingest", "$JS.API.STREAM.PURGE.LADDER_EVENTS"),
        ("api", "$JS.API.CONSUMER.DELETE.LADDER_EVENTS.transcoder"),
        ("manifest", "$JS.API.CONSUMER.MSG.NEXT.LADDER_EVENTS.transcoder"),
        ("manifest", "$JS.API.CONSUMER.CREATE.LADDER_EVENTS.transcoder.chunk.started.>"),
        ("api", "$JS.API.CONSUMER.DURABLE.CREATE.LADDER_EVENTS.indexer"),
        ("transcoder", "$JS.API.CONSUMER.MSG.NEXT.LADDER_EVENTS.indexer"),
        ("segmenter", "$JS.API.STREAM.CREATE.LADDER_OTHER"),
    ] {
        let client = bus_client(&rt, &stack, user);
        let answer = rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(3), client.request(subject.to_string(), "{}".into())).await
        });
        assert!(!matches!(answer, Ok(Ok(_))), "{user} got an answer on {subject}: {answer:?}");
        assert!(
            stack.nats_log().contains(&format!("Publish Violation - User \"{user}\", Subject \"{subject}\"")),
            "{user} on {subject}: no violation in the nats-server log\n{}",
            stack.nats_log()
        );
    }
    let info = rt.block_on(async {
        let mut stream = admin.jetstream().get_stream(topology::EVENTS_STREAM).await.expect("events stream");
        let consumer = stream.consumer_info(topology::TRANSCODER).await.expect("the transcoder durable").clone();
        (stream.info().await.expect("info").state.messages, consumer.config.filter_subject)
    });
    assert!(info.0 > 10, "the event log is intact: {info:?}");
    assert_eq!(info.1, "chunk.started.>");
    let ingest_last = rt.block_on(admin.last_message(topology::INGEST_STREAM, "ingest.ts.cam")).expect("read");
    assert_ne!(ingest_last.as_deref(), Some(&[0x47u8; 188][..]), "the manifest's bytes were stored as raw TS");

    // A wrong password: the service stops at once, says why, and does not print the password.
    let wrong = stack.nats_url_of("manifest").replace(&support::nats_password("manifest"), "not-the-password");
    let started = Instant::now();
    let index = stack.data().join("wrong-password.db").display().to_string();
    let (ok, _, stderr) = run(LADDER, &["indexer", "--nats", &wrong, "--index", &index]);
    assert!(!ok, "an indexer with a wrong password must exit");
    assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());
    assert!(stderr.contains("refused user manifest") && stderr.contains("authorization violation"), "{stderr}");
    assert!(!stderr.contains("not-the-password"), "the password is shown: {stderr}");
}

/// A plain NATS client as `user`, for what [`Bus`] would never send.
fn bus_client(rt: &tokio::runtime::Runtime, stack: &Stack, user: &str) -> ladder_bus::async_nats::Client {
    let url = stack.nats_url_of(user);
    rt.block_on(support::nats_options(rt, &url).connect(url.as_str()))
        .unwrap_or_else(|e| panic!("{user} connects: {e}"))
}
