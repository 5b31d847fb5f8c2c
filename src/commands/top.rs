//! `ladder top`: the live streams in a terminal, from the control API, refreshed every second.

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use ladder_proto::v1::{control_client::ControlClient, ListStreamsRequest, StreamStatus};
use tokio_util::sync::CancellationToken;
use tonic::{metadata::MetadataValue, service::interceptor::InterceptedService, transport::Channel, Request, Status};

#[derive(Args, Debug)]
pub struct TopArgs {
    /// The control API (`ladder api`).
    #[arg(long, env = "LADDER_API_URL", default_value = "http://127.0.0.1:50051")]
    pub api: String,
    /// The API's bearer token.
    #[arg(long, env = "LADDER_API_TOKEN", hide_env_values = true)]
    pub api_token: String,
    /// Print one view and exit (for scripts), instead of refreshing every second.
    #[arg(long)]
    pub once: bool,
}

/// Adds the bearer token to every call.
type Auth = Box<dyn FnMut(Request<()>) -> Result<Request<()>, Status> + Send>;
type Client = ControlClient<InterceptedService<Channel, Auth>>;

/// A client of the control API that sends `token` with every call.
pub async fn connect(api: &str, token: &str) -> anyhow::Result<Client> {
    let channel = Channel::from_shared(api.to_string())
        .with_context(|| format!("--api {api:?} is not a URL"))?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .with_context(|| format!("cannot reach the control API at {api}"))?;
    let value: MetadataValue<_> = format!("Bearer {token}").parse().context("--api-token is not valid in a header")?;
    let auth: Auth = Box::new(move |mut request| {
        request.metadata_mut().insert("authorization", value.clone());
        Ok(request)
    });
    Ok(ControlClient::with_interceptor(channel, auth))
}

pub async fn run(args: TopArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut client = connect(&args.api, &args.api_token).await?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tick.tick() => {}
        }
        let listed = client.list_streams(ListStreamsRequest {}).await;
        let frame = match listed {
            Ok(response) => render(&response.into_inner().streams, ladder_bus::now_ms()),
            // Once, or refused: nothing will get better by asking again.
            Err(status) if args.once || status.code() == tonic::Code::Unauthenticated => {
                anyhow::bail!("ListStreams: {}", status.message())
            }
            // The API restarting, say: shown, and asked again at the next refresh.
            Err(status) => format!("ladder top: the API answered {:?}: {}\n", status.code(), status.message()),
        };
        if args.once {
            print!("{frame}");
            return Ok(());
        }
        // Home, clear, and the frame: one write per refresh.
        print!("\x1b[H\x1b[2J{frame}");
        use std::io::Write;
        let _ = std::io::stdout().flush();
    }
}

fn age(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// One view of the streams: a header and a line per stream, live ones first.
pub fn render(streams: &[StreamStatus], now_ms: i64) -> String {
    let live = streams.iter().filter(|s| s.live).count();
    let mut out = format!("ladder top: {live} live of {} streams\n\n", streams.len());
    out.push_str(&format!(
        "{:<20} {:<5} {:>8} {:>9} {:>7} {:>11} {:>6} {:>8} {:<22}\n",
        "STREAM", "STATE", "AGE", "INPUT", "RTT", "LOST/RETX", "BEHIND", "LATENCY", "RENDITIONS"
    ));
    for s in streams {
        let state = if s.live { "live" } else { "ended" };
        let since =
            if s.live { now_ms - s.session_started_ms } else { now_ms - s.session_ended_ms.max(s.session_started_ms) };
        let input = if s.live && s.stats_at_ms > 0 { format!("{:.2}M", s.input_bitrate_bps / 1e6) } else { "-".into() };
        let rtt = if s.live && s.stats_at_ms > 0 { format!("{:.1}ms", s.rtt_ms) } else { "-".into() };
        let latency = if s.latency_s > 0.0 { format!("{:.2}s", s.latency_s) } else { "-".into() };
        let name: String = s.stream.chars().take(20).collect();
        out.push_str(&format!(
            "{:<20} {:<5} {:>8} {:>9} {:>7} {:>11} {:>6} {:>8} {:<22}\n",
            name,
            state,
            if s.session_started_ms > 0 { age(since) } else { "-".into() },
            input,
            rtt,
            format!("{}/{}", s.packets_lost, s.packets_retransmitted),
            s.chunks_behind,
            latency,
            s.renditions.join(","),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_stream_is_one_line_with_its_stats() {
        let streams = [
            StreamStatus {
                stream: "cam-1".into(),
                live: true,
                session_started_ms: 1_000,
                input_bitrate_bps: 2_512_000.0,
                rtt_ms: 0.4,
                packets_lost: 3,
                packets_retransmitted: 2,
                stats_at_ms: 90_000,
                chunks: 44,
                chunks_behind: 1,
                renditions: vec!["720p".into(), "360p".into()],
                latency_s: 2.31,
                ..Default::default()
            },
            StreamStatus {
                stream: "old".into(),
                session_started_ms: 1_000,
                session_ended_ms: 30_000,
                ..Default::default()
            },
        ];
        let frame = render(&streams, 91_000);
        let lines: Vec<&str> = frame.lines().collect();
        assert_eq!(lines[0], "ladder top: 1 live of 2 streams");
        assert!(lines[2].starts_with("STREAM"), "{frame}");
        let cam: Vec<&str> = lines[3].split_whitespace().collect();
        assert_eq!(cam, ["cam-1", "live", "1m30s", "2.51M", "0.4ms", "3/2", "1", "2.31s", "720p,360p"], "{frame}");
        let old: Vec<&str> = lines[4].split_whitespace().collect();
        assert_eq!(old, ["old", "ended", "1m01s", "-", "-", "0/0", "0", "-"], "{frame}");
    }
}
