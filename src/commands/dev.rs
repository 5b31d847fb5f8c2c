//! `ladder dev`: the whole stack on one machine, on embedded defaults: the five services, the control API and
//! one metrics endpoint for all of them.

use std::{path::PathBuf, process::Stdio, time::Duration};

use anyhow::Context;
use clap::Args;
use ladder_bus::server::NatsServer;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{
    manifest_config, open_index, segmenter_config, transcoder_config, Failure, HttpArgs, IndexArgs, NatsArgs,
    SegmentArgs, SrtArgs, StorageArgs, TelemetryArgs, TranscodeArgs,
};

/// How long the services get to finish in-flight work after Ctrl-C.
const GRACE: Duration = Duration::from_secs(15);

#[derive(Args, Debug)]
pub struct DevArgs {
    /// Use this NATS server instead of starting one.
    #[arg(long, env = "LADDER_NATS_URL")]
    nats: Option<String>,
    /// Where NATS data, media and the index are kept.
    #[arg(long, env = "LADDER_DATA_DIR", default_value = "./var")]
    data_dir: PathBuf,
    /// Also publish an ffmpeg test pattern with a tone over SRT.
    #[arg(long)]
    test_source: bool,
    /// Stream name of the test source.
    #[arg(long, default_value = "test")]
    test_stream: String,
    /// Serve the Prometheus metrics of all five services at http://ADDR/metrics.
    #[arg(long, env = "LADDER_METRICS_LISTEN", default_value = "127.0.0.1:9464")]
    metrics_listen: std::net::SocketAddr,
    /// Address of the control API (gRPC; `ladder top`).
    #[arg(long, env = "LADDER_API_LISTEN", default_value = "127.0.0.1:50051")]
    api_listen: std::net::SocketAddr,
    /// The control API's bearer token. Unset: a random one, printed at start.
    #[arg(long, env = "LADDER_API_TOKEN", hide_env_values = true)]
    api_token: Option<String>,
    #[command(flatten)]
    srt: SrtArgs,
    #[command(flatten)]
    http: HttpArgs,
    #[command(flatten)]
    segment: SegmentArgs,
    #[command(flatten)]
    transcode: TranscodeArgs,
}

pub async fn run(args: DevArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create --data-dir {}", args.data_dir.display()))?;
    let data_dir = args.data_dir.canonicalize()?;
    let mut nats_server = None;
    let nats_url = match &args.nats {
        Some(url) => url.clone(),
        None => {
            let server = NatsServer::start(&data_dir.join("nats"), None).await?;
            let url = server.url();
            tracing::info!(%url, "started nats-server");
            nats_server = Some(server);
            url
        }
    };
    let nats = NatsArgs { nats_url };
    let storage = StorageArgs::local(&data_dir.join("media"));
    let index = IndexArgs { index_url: data_dir.join("index.db").display().to_string() };

    // One machine, a developer's: anyone may publish to a stream without a key.
    let ingest = ladder_ingest::Config { open_publish: true, ..args.srt.config(&nats)? };
    let segmenter = segmenter_config(&nats, &storage, &args.segment)?;
    let transcoder = transcoder_config(&nats, &storage, &args.transcode)?;
    let index = open_index(&index).await.map_err(Failure::into_error)?;
    let manifest = manifest_config(&nats, &storage, index, &args.http)?;
    let indexer = ladder_indexer::Config {
        nats_url: nats.nats_url.clone(),
        index: manifest.index.clone(),
        consumer: ladder_bus::topology::INDEXER.to_string(),
    };
    let api_token = args.api_token.clone().unwrap_or_else(ladder_bus::keys::generate_key);
    let api = ladder_api::Config {
        nats_url: nats.nats_url.clone(),
        listen: args.api_listen,
        token: api_token.clone(),
        default_ladder: transcoder.ladder.clone(),
    };
    // Create the JetStream topology once before the services race to it.
    ladder_bus::Bus::connect(&nats.nats_url).await?;

    let services = shutdown.child_token();
    // Extras: a port already taken (another `ladder dev`) costs the extra, not the stack.
    if let Err(e) = (TelemetryArgs { metrics_listen: Some(args.metrics_listen) }).start(&services).await {
        tracing::warn!(error = %format!("{e:#}"), "no metrics endpoint (--metrics-listen)");
    }
    let mut tasks: JoinSet<(&str, anyhow::Result<()>)> = JoinSet::new();
    let token = services.clone();
    tasks.spawn(async move { ("ingest", ladder_ingest::run(ingest, token).await.map_err(Into::into)) });
    let token = services.clone();
    tasks.spawn(async move { ("segmenter", ladder_segmenter::run(segmenter, token).await.map_err(Into::into)) });
    let token = services.clone();
    tasks.spawn(async move { ("transcoder", ladder_transcoder::run(transcoder, token).await.map_err(Into::into)) });
    let token = services.clone();
    tasks.spawn(async move { ("indexer", ladder_indexer::run(indexer, token).await.map_err(Into::into)) });
    let token = services.clone();
    tasks.spawn(async move { ("manifest", ladder_manifest::run(manifest, token).await.map_err(Into::into)) });
    let token = services.clone();
    tokio::spawn(async move {
        if let Err(e) = ladder_api::run(api, token).await {
            tracing::warn!(error = %e, "no control API (--api-listen)");
        }
    });

    let srt_port = args.srt.srt_listen.port();
    let http_port = args.http.http_listen.port();
    if args.test_source {
        let url = format!("srt://127.0.0.1:{srt_port}?streamid={}&pkt_size=1316", args.test_stream);
        let token = services.clone();
        tasks.spawn(async move { ("test source", test_source(url, token).await) });
    }
    let watch = if args.test_source {
        format!("http://localhost:{http_port}/watch/{}", args.test_stream)
    } else {
        format!("http://localhost:{http_port}/")
    };
    println!();
    println!("  ladder is running (data in {})", data_dir.display());
    println!(
        "  publish:  ffmpeg -re -i INPUT -c:v libx264 -c:a aac -f mpegts 'srt://localhost:{srt_port}?streamid=NAME'"
    );
    println!("  watch:    {watch}");
    println!(
        "  playlist: http://localhost:{http_port}/live/{}/master.m3u8",
        if args.test_source { args.test_stream.as_str() } else { "NAME" }
    );
    println!("  metrics:  http://{}/metrics", args.metrics_listen);
    println!("  top:      ladder top --api http://{} --api-token {api_token}", args.api_listen);
    let shown = ladder_bus::auth::redact(&nats.nats_url);
    println!("  events:   ladder events --nats {shown}");
    println!(
        "  keys:     open publishing: any NAME without a key; give one with ladder stream set-key NAME --nats {shown}"
    );
    println!("  stop:     Ctrl-C");
    println!();

    let mut failure = None;
    tokio::select! {
        biased;
        _ = shutdown.cancelled() => {}
        Some(Ok((name, result))) = tasks.join_next() => {
            // Services stop by themselves on Ctrl-C too (their tokens are children of `shutdown`).
            if !shutdown.is_cancelled() {
                failure = Some(match result {
                    Err(e) => e.context(format!("{name} failed")),
                    Ok(()) => anyhow::anyhow!("{name} stopped unexpectedly"),
                });
            }
        }
    }
    services.cancel();
    let drained = tokio::time::timeout(GRACE, async {
        while let Some(joined) = tasks.join_next().await {
            if let Ok((name, Err(e))) = joined {
                tracing::warn!(service = name, error = %format!("{e:#}"), "service ended with an error");
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(grace_s = GRACE.as_secs(), "services did not stop in time, abandoning them");
    }
    if let Some(server) = nats_server {
        server.stop().await;
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Publishes a moving test pattern with a tone until shutdown, reconnecting if ffmpeg stops.
async fn test_source(url: String, shutdown: CancellationToken) -> anyhow::Result<()> {
    while !shutdown.is_cancelled() {
        let mut child = tokio::process::Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
            .args(["-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30"])
            .args(["-f", "lavfi", "-i", "sine=frequency=440:beep_factor=4:sample_rate=48000"])
            .args(["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-pix_fmt", "yuv420p"])
            .args(["-g", "60", "-keyint_min", "60", "-b:v", "4M", "-maxrate", "4M", "-bufsize", "4M"])
            .args(["-c:a", "aac", "-b:a", "128k", "-f", "mpegts", &url])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("cannot run ffmpeg for the test source (is it installed? `make demo` installs it)")?;
        tokio::select! {
            _ = shutdown.cancelled() => {
                let _ = child.kill().await;
            }
            status = child.wait() => {
                tracing::warn!(status = ?status.ok(), "test source ffmpeg stopped, restarting in 2 s");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
    Ok(())
}
