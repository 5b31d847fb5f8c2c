//! `ladder events`: the event flow as it happens, one line per event.

use anyhow::Context;
use async_nats::jetstream::consumer::{pull::OrderedConfig, DeliverPolicy};
use clap::Args;
use futures::StreamExt;
use ladder_bus::{topology, Bus};
use ladder_proto::Event;
use tokio_util::sync::CancellationToken;

use super::NatsArgs;

#[derive(Args, Debug)]
pub struct EventsArgs {
    #[command(flatten)]
    nats: NatsArgs,
    /// Only the events of this stream.
    #[arg(long)]
    stream: Option<String>,
    /// Replay the retained event log from the beginning instead of starting with new events.
    #[arg(long)]
    all: bool,
    /// One JSON object per line instead of text.
    #[arg(long)]
    json: bool,
    /// Exit after this many events.
    #[arg(long)]
    count: Option<usize>,
}

pub async fn run(args: EventsArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let bus = Bus::connect(&args.nats.nats_url).await?;
    let stream = bus.jetstream().get_stream(topology::EVENTS_STREAM).await.context("events stream")?;
    let consumer = stream
        .create_consumer(OrderedConfig {
            deliver_policy: if args.all { DeliverPolicy::All } else { DeliverPolicy::New },
            ..Default::default()
        })
        .await
        .context("creating an ordered consumer on the events stream")?;
    let mut messages = consumer.messages().await.context("reading events")?;
    let mut printed = 0;
    loop {
        let message = tokio::select! {
            _ = shutdown.cancelled() => break,
            message = messages.next() => message,
        };
        let Some(message) = message else { break };
        let message = message.context("reading events")?;
        // Filtered here: a `*.*.<stream>` filter spans the five subjects, which nats-server 2.9 refuses.
        if args.stream.as_ref().is_some_and(|s| message.subject.rsplit('.').next() != Some(s.as_str())) {
            continue;
        }
        match Event::decode(&message.subject, &message.payload) {
            Ok(event) if args.json => println!("{}", to_json(&event)),
            Ok(event) => println!("{}", describe(&event)),
            Err(e) => eprintln!("undecodable event on {}: {e}", message.subject),
        }
        printed += 1;
        if args.count.is_some_and(|count| printed >= count) {
            break;
        }
    }
    Ok(())
}

fn seconds(ticks: u64) -> f64 {
    ticks as f64 / 90_000.0
}

fn describe(event: &Event) -> String {
    let subject = event.subject();
    match event {
        Event::StreamStarted(e) => format!("{subject:<32} session={} from={}", e.session_id, e.remote_addr),
        Event::StreamEnded(e) => {
            format!("{subject:<32} session={} bytes={} reason={}", e.session_id, e.bytes_received, e.reason)
        }
        Event::ChunkUploaded(e) => format!(
            "{subject:<32} session={} seq={} pts={:.3} dur={:.3}s size={} {}x{} {}{}",
            e.session_id,
            e.sequence,
            seconds(e.first_pts),
            seconds(e.duration),
            e.size_bytes,
            e.width,
            e.height,
            e.codecs,
            if e.discontinuity { " discontinuity" } else { "" }
        ),
        Event::RenditionReady(e) => format!(
            "{subject:<32} session={} seq={} rendition={} {}x{} dur={:.3}s size={} codecs={}",
            e.session_id,
            e.sequence,
            e.rendition,
            e.width,
            e.height,
            seconds(e.duration),
            e.size_bytes,
            e.codecs
        ),
        Event::ChunkFailed(e) => format!(
            "{subject:<32} session={} seq={} stage={} permanent={} reason={}",
            e.session_id,
            if e.has_sequence { e.sequence.to_string() } else { "-".into() },
            e.stage,
            e.permanent,
            e.reason
        ),
        Event::StreamFailed(e) => {
            format!("{subject:<32} session={} stage={} reason={}", e.session_id, e.stage, e.reason)
        }
        Event::LadderSet(e) => {
            let renditions: Vec<String> =
                e.renditions.iter().map(|r| format!("{}:{}p@{}k", r.name, r.height, r.video_bitrate / 1000)).collect();
            format!("{subject:<32} renditions={}", renditions.join(","))
        }
    }
}

fn to_json(event: &Event) -> serde_json::Value {
    let body = match event {
        Event::StreamStarted(e) => serde_json::to_value(e),
        Event::StreamEnded(e) => serde_json::to_value(e),
        Event::ChunkUploaded(e) => serde_json::to_value(e),
        Event::RenditionReady(e) => serde_json::to_value(e),
        Event::ChunkFailed(e) => serde_json::to_value(e),
        Event::StreamFailed(e) => serde_json::to_value(e),
        Event::LadderSet(e) => serde_json::to_value(e),
    };
    serde_json::json!({ "subject": event.subject(), "event": body.unwrap_or_default() })
}
