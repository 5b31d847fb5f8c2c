//! `ladder events`: the event flow as it happens, one line per event, with the SRT statistics samples that
//! ingest publishes on core NATS (`stats.srt.<stream>`) in between. The samples are live only: `--all`
//! replays the event log, never past samples, and `--count` counts events only.

use anyhow::Context;
use async_nats::jetstream::consumer::pull::OrderedConfig;
use clap::Args;
use futures::{stream::BoxStream, StreamExt};
use ladder_bus::{
    follow::{Follower, Start},
    topology, Bus,
};
use ladder_proto::{stats, Event, SrtStats};
use prost::Message;
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
    /// Exit after this many events (SRT statistics samples are not counted).
    #[arg(long)]
    count: Option<usize>,
    /// Leave out the SRT statistics samples of live publishers.
    #[arg(long)]
    no_stats: bool,
}

pub async fn run(args: EventsArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let bus = Bus::connect(&args.nats.nats_url).await?;
    let start = if args.all { Start::All } else { Start::New };
    let mut messages = Follower::new(bus.jetstream(), topology::EVENTS_STREAM, OrderedConfig::default(), start)
        .await
        .context("following the events stream")?;
    let mut samples: BoxStream<'static, async_nats::Message> = if args.no_stats {
        futures::stream::pending().boxed()
    } else {
        let subject = args.stream.as_deref().map_or_else(|| stats::SRT_ALL.to_string(), stats::srt_subject);
        let client = bus.jetstream().client();
        client.subscribe(subject.clone()).await.with_context(|| format!("subscribing to {subject}"))?.boxed()
    };
    let mut printed = 0;
    loop {
        let message = tokio::select! {
            _ = shutdown.cancelled() => break,
            message = messages.next() => message,
            Some(sample) = samples.next() => {
                let subject: &str = &sample.subject;
                match SrtStats::decode(sample.payload.as_ref()) {
                    Ok(srt) if args.json => println!("{}", stats_to_json(subject, &srt)),
                    Ok(srt) => println!("{}", describe_stats(subject, &srt)),
                    Err(e) => eprintln!("undecodable srt statistics on {subject}: {e}"),
                }
                continue;
            }
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
        Event::ChunkStarted(e) => format!(
            "{subject:<32} session={} seq={} pts={:.3} {}x{}{}",
            e.session_id,
            e.sequence,
            seconds(e.first_pts),
            e.width,
            e.height,
            if e.discontinuity { " discontinuity" } else { "" }
        ),
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

/// One line per sample, aligned with the events, led by the subject it came on. `undecrypted=` shows only
/// when packets could not be decrypted (a publisher with the wrong key).
fn describe_stats(subject: &str, sample: &SrtStats) -> String {
    let undecrypted = match sample.packets_undecrypted {
        0 => String::new(),
        n => format!(" undecrypted={n}"),
    };
    let encryption = if sample.encrypted { format!("aes-{}", sample.key_length * 8) } else { "unencrypted".into() };
    format!(
        "{subject:<32} session={} rtt={:.1}ms rate={:.2}Mb/s lost={} retrans={} dropped={}{undecrypted} buf={}ms \
         flight={} latency={}ms {encryption} from={}",
        sample.session_id,
        sample.rtt_ms,
        sample.recv_rate_mbps,
        sample.packets_lost,
        sample.packets_retransmitted,
        sample.packets_dropped,
        sample.recv_buffer_ms,
        sample.flight_size,
        sample.latency_ms,
        sample.remote_addr
    )
}

/// As an event is printed, with `stats` in place of `event`.
fn stats_to_json(subject: &str, sample: &SrtStats) -> serde_json::Value {
    serde_json::json!({ "subject": subject, "stats": serde_json::to_value(sample).unwrap_or_default() })
}

fn to_json(event: &Event) -> serde_json::Value {
    let body = match event {
        Event::StreamStarted(e) => serde_json::to_value(e),
        Event::StreamEnded(e) => serde_json::to_value(e),
        Event::ChunkStarted(e) => serde_json::to_value(e),
        Event::ChunkUploaded(e) => serde_json::to_value(e),
        Event::RenditionReady(e) => serde_json::to_value(e),
        Event::ChunkFailed(e) => serde_json::to_value(e),
        Event::StreamFailed(e) => serde_json::to_value(e),
        Event::LadderSet(e) => serde_json::to_value(e),
    };
    serde_json::json!({ "subject": event.subject(), "event": body.unwrap_or_default() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SrtStats {
        SrtStats {
            stream: "cam-1".into(),
            session_id: "1700000000000-ab12".into(),
            remote_addr: "1.2.3.4:5555".into(),
            sampled_at_ms: 1_700_000_005_000,
            elapsed_ms: 5_000,
            rtt_ms: 12.34,
            recv_rate_mbps: 2.011,
            bytes_received: 1_250_000,
            packets_received: 940,
            packets_lost: 0,
            packets_retransmitted: 0,
            packets_dropped: 0,
            packets_undecrypted: 0,
            flight_size: 3,
            recv_buffer_ms: 120,
            recv_buffer_bytes: 20_000,
            latency_ms: 120,
            encrypted: true,
            key_length: 16,
        }
    }

    #[test]
    fn a_sample_is_one_line() {
        assert_eq!(
            describe_stats("stats.srt.cam-1", &sample()),
            "stats.srt.cam-1                  session=1700000000000-ab12 rtt=12.3ms rate=2.01Mb/s lost=0 retrans=0 \
             dropped=0 buf=120ms flight=3 latency=120ms aes-128 from=1.2.3.4:5555"
        );
        let line = describe_stats("stats.srt.cam-1", &SrtStats { packets_undecrypted: 7, ..sample() });
        assert!(line.contains(" dropped=0 undecrypted=7 buf=120ms"), "{line}");
        let line = describe_stats("stats.srt.cam-1", &SrtStats { encrypted: false, key_length: 0, ..sample() });
        assert!(line.contains(" latency=120ms unencrypted from="), "{line}");
    }

    #[test]
    fn a_sample_as_json_names_its_subject() {
        let json = stats_to_json("stats.srt.cam-1", &sample());
        assert_eq!(json["subject"], "stats.srt.cam-1");
        assert_eq!(json["stats"]["rtt_ms"], 12.34);
        assert_eq!(json["stats"]["key_length"], 16);
        assert!(json.get("event").is_none(), "told apart from events by its key");
    }
}
