//! Command-line interface of the `ladder` binary.

mod chunk;
mod dev;
mod events;
mod reindex;
mod setup;
mod stream;
mod token;
mod top;

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use ladder_index::{Index, IndexError};
use ladder_storage::{S3Options, Storage};
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
#[command(name = "ladder", version, about = "Distributed live video: SRT in, chunked ABR transcoding, HLS out")]
pub struct Cli {
    /// Log filter, e.g. `info` or `ladder_segmenter=debug,info`.
    #[arg(long, global = true, env = "LADDER_LOG", default_value = "info,async_nats=warn")]
    pub log: String,
    /// Export traces (one per chunk, across every service) over OTLP/HTTP to this collector, e.g.
    /// http://127.0.0.1:4318 (Jaeger, the OpenTelemetry Collector, Tempo). Unset: no traces.
    #[arg(long, global = true, env = "LADDER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Accept SRT publishers and publish their TS to JetStream.
    Ingest {
        #[command(flatten)]
        nats: NatsArgs,
        #[command(flatten)]
        telemetry: TelemetryArgs,
        #[command(flatten)]
        srt: SrtArgs,
    },
    /// Cut raw TS into chunks at IDR frames and store them.
    Segmenter {
        #[command(flatten)]
        nats: NatsArgs,
        #[command(flatten)]
        telemetry: TelemetryArgs,
        #[command(flatten)]
        storage: StorageArgs,
        #[command(flatten)]
        segment: SegmentArgs,
    },
    /// Transcode chunks into the ABR ladder.
    Transcoder {
        #[command(flatten)]
        nats: NatsArgs,
        #[command(flatten)]
        telemetry: TelemetryArgs,
        #[command(flatten)]
        storage: StorageArgs,
        #[command(flatten)]
        transcode: TranscodeArgs,
    },
    /// Project the event log into the index.
    Indexer {
        #[command(flatten)]
        nats: NatsArgs,
        #[command(flatten)]
        telemetry: TelemetryArgs,
        #[command(flatten)]
        index: IndexArgs,
        /// Durable consumer to read events with. Indexers sharing one index (ScyllaDB) share `indexer`; an
        /// indexer with an index of its own (a SQLite file) needs a name of its own, e.g. `indexer-b`.
        #[arg(long, env = "LADDER_INDEXER_CONSUMER", default_value = "indexer")]
        consumer: String,
    },
    /// Serve HLS playlists, media and the player page.
    Manifest {
        #[command(flatten)]
        nats: NatsArgs,
        #[command(flatten)]
        telemetry: TelemetryArgs,
        #[command(flatten)]
        storage: StorageArgs,
        #[command(flatten)]
        index: IndexArgs,
        #[command(flatten)]
        http: HttpArgs,
    },
    /// Serve the control API (gRPC, ladder.v1.Control): streams with their stats, ladders, keys, kicks.
    Api {
        #[command(flatten)]
        nats: NatsArgs,
        #[command(flatten)]
        telemetry: TelemetryArgs,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// The live streams in the terminal, refreshed every second (from the control API).
    Top(top::TopArgs),
    /// Run the whole stack on this machine: a nats-server of its own and the five services.
    Dev(dev::DevArgs),
    /// Print the event flow as it happens.
    Events(events::EventsArgs),
    /// Rebuild an empty index by replaying the retained event log.
    Reindex(reindex::ReindexArgs),
    /// Create the JetStream streams, consumers and buckets (or update them), print them and exit: for a NATS
    /// whose service users may not (deploy/nats/ladder.conf).
    Setup(setup::SetupArgs),
    /// Cut an MPEG-TS file into chunks as the segmenter does (no NATS, no storage).
    Chunk(chunk::ChunkArgs),
    /// Mint a playback token for a signed stream (or make a new signing key).
    Token(token::TokenArgs),
    /// Per-stream settings: the ABR ladder and the SRT publish key.
    #[command(subcommand)]
    Stream(stream::StreamCommand),
}

#[derive(Args, Debug, Clone)]
pub struct NatsArgs {
    /// NATS server URL; several servers of a cluster comma-separated. A user and password go in the URL
    /// (`nats://ingest:secret@nats1:4222`, percent-encoded), a credentials file (user JWT and NKey seed) in
    /// LADDER_NATS_CREDS. Passwords are never logged.
    #[arg(long = "nats", env = "LADDER_NATS_URL", default_value = "nats://127.0.0.1:4222", hide_env_values = true)]
    pub nats_url: String,
}

#[derive(Args, Debug, Clone)]
pub struct ApiArgs {
    /// Address of the gRPC server.
    #[arg(long, env = "LADDER_API_LISTEN", default_value = "0.0.0.0:50051")]
    pub api_listen: SocketAddr,
    /// The bearer token every call must carry (at least 16 characters); prefer the environment variable.
    #[arg(long, env = "LADDER_API_TOKEN", hide_env_values = true)]
    pub api_token: String,
    /// The transcoders' default ladder (TOML), for GetLadder of streams without one of their own.
    #[arg(long, env = "LADDER_LADDER")]
    pub ladder: Option<PathBuf>,
}

impl ApiArgs {
    fn config(&self, nats: &NatsArgs) -> anyhow::Result<ladder_api::Config> {
        anyhow::ensure!(
            self.api_token.len() >= ladder_api::MIN_TOKEN_LEN,
            "--api-token (LADDER_API_TOKEN) must be at least {} characters",
            ladder_api::MIN_TOKEN_LEN
        );
        Ok(ladder_api::Config {
            nats_url: nats.nats_url.clone(),
            listen: self.api_listen,
            token: self.api_token.clone(),
            default_ladder: stream::read_ladder(self.ladder.as_deref())?,
        })
    }
}

#[derive(Args, Debug, Clone)]
pub struct TelemetryArgs {
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 0.0.0.0:9464). Unset: no metrics endpoint.
    #[arg(long, env = "LADDER_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
}

impl TelemetryArgs {
    /// Starts the metrics endpoint, if asked for, until `shutdown`.
    pub async fn start(&self, shutdown: &CancellationToken) -> anyhow::Result<()> {
        let Some(addr) = self.metrics_listen else { return Ok(()) };
        let server =
            ladder_telemetry::MetricsServer::bind(addr).await.context("--metrics-listen (LADDER_METRICS_LISTEN)")?;
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = server.serve(shutdown).await {
                tracing::error!(error = %e, "metrics endpoint failed");
            }
        });
        Ok(())
    }
}

#[derive(Args, Debug, Clone)]
pub struct SrtArgs {
    /// UDP address of the SRT listener.
    #[arg(long, env = "LADDER_SRT_LISTEN", default_value = "0.0.0.0:9000")]
    pub srt_listen: SocketAddr,
    /// The key (SRT passphrase, 10 to 79 characters) of every stream without a key of its own (`ladder stream
    /// set-key`). Unset: such a stream is open if --open-publish, refused otherwise.
    #[arg(long, env = "LADDER_SRT_PASSPHRASE", hide_env_values = true)]
    pub srt_passphrase: Option<String>,
    /// Let anyone who reaches the port publish, unencrypted, to a stream that has no key. Off by default: in
    /// production every stream gets a key. `ladder dev` turns it on.
    #[arg(long, env = "LADDER_OPEN_PUBLISH")]
    pub open_publish: bool,
    /// Publishers this ingest takes at once; more are refused with SRT reject code 1402 (overload).
    #[arg(long, env = "LADDER_MAX_PUBLISHERS", default_value_t = ladder_ingest::DEFAULT_MAX_PUBLISHERS)]
    pub max_publishers: usize,
    /// SRT receive latency in milliseconds (a publisher asking for more gets more).
    #[arg(long, env = "LADDER_SRT_LATENCY_MS", default_value_t = 120)]
    pub srt_latency_ms: u64,
    /// How often each publisher's SRT statistics are published (stats.srt.<stream>), in milliseconds.
    #[arg(long, env = "LADDER_SRT_STATS_INTERVAL_MS", default_value_t = 5000)]
    pub srt_stats_interval_ms: u64,
}

#[derive(Args, Debug, Clone)]
pub struct StorageArgs {
    /// Object storage URL: file:///path, a directory, or s3://bucket[/prefix].
    #[arg(long = "storage", env = "LADDER_STORAGE", default_value = "./var/media")]
    pub storage_url: String,
    /// S3-compatible endpoint (Garage, MinIO, ...), e.g. http://127.0.0.1:3900. Unset: AWS S3.
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    pub s3_endpoint: Option<String>,
    /// S3 region.
    #[arg(long, env = "AWS_REGION")]
    pub s3_region: Option<String>,
    /// S3 access key id.
    #[arg(long, env = "AWS_ACCESS_KEY_ID")]
    pub s3_access_key_id: Option<String>,
    /// S3 secret access key (prefer the environment variable to the flag).
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub s3_secret_access_key: Option<String>,
}

impl StorageArgs {
    pub fn local(dir: &std::path::Path) -> StorageArgs {
        StorageArgs {
            storage_url: dir.display().to_string(),
            s3_endpoint: None,
            s3_region: None,
            s3_access_key_id: None,
            s3_secret_access_key: None,
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct IndexArgs {
    /// The index: a SQLite file path (or sqlite:///path), or
    /// scylla://host:port[,host:port]/keyspace[?consistency=local_quorum&ttl=SECONDS&replication_factor=3].
    #[arg(long = "index", env = "LADDER_INDEX", default_value = "./var/index.db")]
    pub index_url: String,
}

#[derive(Args, Debug, Clone)]
pub struct SegmentArgs {
    /// Target chunk duration in seconds; chunks are cut at the first IDR at or after it.
    #[arg(long, env = "LADDER_TARGET_DURATION", default_value_t = 2.0)]
    pub target_duration: f64,
}

#[derive(Args, Debug, Clone)]
pub struct TranscodeArgs {
    /// Chunks transcoded at once by this process. A chunk is transcoded while it arrives, so a worker is busy
    /// for as long as the chunk lasts: at least one per live stream, and one or two more.
    #[arg(long, env = "LADDER_WORKERS", default_value_t = 4)]
    pub workers: usize,
    /// x264 preset.
    #[arg(long, env = "LADDER_X264_PRESET", default_value = "veryfast")]
    pub preset: String,
    /// Default ladder (TOML) for streams without one of their own; built in: 720p, 480p and 360p.
    #[arg(long, env = "LADDER_LADDER")]
    pub ladder: Option<PathBuf>,
    /// Seconds ffmpeg may run once a chunk's input has ended before it is killed and the attempt fails.
    #[arg(long, env = "LADDER_FFMPEG_TIMEOUT", default_value_t = 60.0)]
    pub ffmpeg_timeout: f64,
    /// LL-HLS part target in milliseconds: every rendition chunk is cut into parts of whole frames at most
    /// this long.
    #[arg(long, env = "LADDER_PART_TARGET_MS", default_value_t = 500)]
    pub part_target_ms: u64,
}

#[derive(Args, Debug, Clone)]
pub struct HttpArgs {
    /// Address of the HTTP server.
    #[arg(long, env = "LADDER_HTTP_LISTEN", default_value = "0.0.0.0:8080")]
    pub http_listen: SocketAddr,
    /// Segments in a live media playlist. Above six target durations' worth, LL-HLS players can ask for delta
    /// updates that leave out the older ones.
    #[arg(long, env = "LADDER_PLAYLIST_WINDOW", default_value_t = 10)]
    pub window: usize,
    /// Public base URL of the media (a CDN, or the bucket's website endpoint) for players to fetch segments
    /// from directly. Unset: the manifest serves segments itself from storage, under /media/.
    #[arg(long, env = "LADDER_MEDIA_BASE_URL")]
    pub media_base_url: Option<String>,
    /// Seconds after a publisher leaves before its playlists end (EXT-X-ENDLIST); a reconnect within them
    /// continues the same playlists.
    #[arg(long, env = "LADDER_END_GRACE", default_value_t = 30.0)]
    pub end_grace: f64,
    /// Megabytes of segments and parts the manifest keeps in memory for /media/ (every viewer of a live
    /// stream asks for the same few objects).
    #[arg(long, env = "LADDER_MEDIA_CACHE_MB", default_value_t = 256)]
    pub media_cache_mb: u64,
    /// Also serve the publisher's source chunks under /media/ (they are the original stream, at its full
    /// bitrate). Off: /media/ serves renditions and parts only.
    #[arg(long, env = "LADDER_SERVE_SOURCE")]
    pub serve_source: bool,
    /// Keys playback tokens are checked with: `id:secret[,id:secret...]`, secrets of 32 characters or more
    /// (`ladder token --new-key` makes one). Every key verifies; `ladder token` signs with the first. Prefer the
    /// environment variable.
    #[arg(long, env = "LADDER_PLAYBACK_KEYS", hide_env_values = true)]
    pub playback_keys: Option<String>,
    /// Streams whose playlists and segments need a playback token (under /t/<token>/): names, `prefix*`
    /// patterns or `*`, comma-separated. Needs --playback-keys.
    #[arg(long, env = "LADDER_SIGNED_STREAMS", default_value = "")]
    pub signed_streams: String,
    /// Seconds a request may take before it is answered 503; LL-HLS blocking reloads give up before it.
    #[arg(long, env = "LADDER_HTTP_REQUEST_TIMEOUT", default_value_t = 60.0)]
    pub request_timeout: f64,
    /// Requests answered at once, blocking playlist reloads included (each costs a few KiB while it waits);
    /// beyond it, 503 with Retry-After.
    #[arg(long, env = "LADDER_HTTP_MAX_IN_FLIGHT", default_value_t = 20_000)]
    pub max_in_flight: usize,
}

/// Why the command failed: bad configuration exits with 64, anything else with 1.
pub enum Failure {
    Config(anyhow::Error),
    Runtime(anyhow::Error),
}

impl Failure {
    pub fn into_error(self) -> anyhow::Error {
        match self {
            Failure::Config(e) | Failure::Runtime(e) => e,
        }
    }
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::Runtime(e.into())
    }
}

fn config<T>(result: anyhow::Result<T>) -> Result<T, Failure> {
    result.map_err(Failure::Config)
}

/// Logs to stderr, and with `--otlp-endpoint` exports spans as `ladder-<command>`. The guard keeps the
/// exporter running until the command returns.
pub fn init_tracing(cli: &Cli) -> anyhow::Result<Option<ladder_telemetry::trace::TraceGuard>> {
    use tracing_subscriber::{layer::SubscriberExt, util::SubscriberInitExt, Layer};
    let filter =
        tracing_subscriber::EnvFilter::try_new(&cli.log).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer().with_target(false).with_writer(std::io::stderr);
    let (otel, guard) = match &cli.otlp_endpoint {
        Some(endpoint) => {
            let (layer, guard) = ladder_telemetry::trace::layer(&format!("ladder-{}", cli.command.name()), endpoint)
                .context("--otlp-endpoint (LADDER_OTLP_ENDPOINT)")?;
            (Some(layer), Some(guard))
        }
        None => (None, None),
    };
    tracing_subscriber::registry().with(fmt.and_then(otel).with_filter(filter)).init();
    Ok(guard)
}

impl Command {
    /// The command's name, as typed.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Ingest { .. } => "ingest",
            Command::Segmenter { .. } => "segmenter",
            Command::Transcoder { .. } => "transcoder",
            Command::Indexer { .. } => "indexer",
            Command::Manifest { .. } => "manifest",
            Command::Api { .. } => "api",
            Command::Top(_) => "top",
            Command::Dev(_) => "dev",
            Command::Events(_) => "events",
            Command::Reindex(_) => "reindex",
            Command::Setup(_) => "setup",
            Command::Chunk(_) => "chunk",
            Command::Token(_) => "token",
            Command::Stream(_) => "stream",
        }
    }
}

pub async fn run(cli: Cli) -> Result<(), Failure> {
    let shutdown = shutdown_on_signal();
    match cli.command {
        Command::Ingest { nats, telemetry, srt } => {
            telemetry.start(&shutdown).await?;
            ladder_ingest::run(config(srt.config(&nats))?, shutdown).await?;
        }
        Command::Segmenter { nats, telemetry, storage, segment } => {
            telemetry.start(&shutdown).await?;
            ladder_segmenter::run(config(segmenter_config(&nats, &storage, &segment))?, shutdown).await?;
        }
        Command::Transcoder { nats, telemetry, storage, transcode } => {
            telemetry.start(&shutdown).await?;
            ladder_transcoder::run(config(transcoder_config(&nats, &storage, &transcode))?, shutdown).await?;
        }
        Command::Indexer { nats, telemetry, index, consumer } => {
            if consumer.is_empty() || !consumer.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                return Err(Failure::Config(anyhow::anyhow!(
                    "--consumer {consumer:?}: use letters, digits, '-' and '_' (a JetStream durable name)"
                )));
            }
            telemetry.start(&shutdown).await?;
            let index = open_index(&index).await?;
            ladder_indexer::run(ladder_indexer::Config { nats_url: nats.nats_url, index, consumer }, shutdown).await?;
        }
        Command::Manifest { nats, telemetry, storage, index, http } => {
            telemetry.start(&shutdown).await?;
            let index = open_index(&index).await?;
            let config = config(manifest_config(&nats, &storage, index, &http))?;
            ladder_manifest::run(config, shutdown).await?;
        }
        Command::Api { nats, telemetry, api } => {
            let config = config(api.config(&nats))?;
            telemetry.start(&shutdown).await?;
            ladder_api::run(config, shutdown).await?;
        }
        Command::Top(args) => top::run(args, shutdown).await?,
        Command::Dev(args) => dev::run(args, shutdown).await?,
        Command::Events(args) => events::run(args, shutdown).await?,
        Command::Stream(command) => stream::run(command).await?,
        Command::Reindex(args) => reindex::run(args).await?,
        Command::Setup(args) => setup::run(args).await?,
        Command::Chunk(args) => chunk::run(args)?,
        Command::Token(args) => config(token::run(args))?,
    }
    Ok(())
}

impl SrtArgs {
    /// Validated here, where a bad value can be named by its flag (exit 64), by ingest's own rules.
    fn config(&self, nats: &NatsArgs) -> anyhow::Result<ladder_ingest::Config> {
        let config = ladder_ingest::Config {
            passphrase: self.srt_passphrase.clone(),
            open_publish: self.open_publish,
            max_publishers: self.max_publishers,
            latency: Duration::from_millis(self.srt_latency_ms),
            stats_interval: Duration::from_millis(self.srt_stats_interval_ms),
            ..ladder_ingest::Config::new(&nats.nats_url, self.srt_listen)
        };
        if let Err(ladder_ingest::IngestError::Config { key, message }) = config.validate() {
            let flag = match key {
                "passphrase" => "--srt-passphrase (LADDER_SRT_PASSPHRASE)",
                "max_publishers" => "--max-publishers (LADDER_MAX_PUBLISHERS)",
                "stats_interval" => "--srt-stats-interval-ms (LADDER_SRT_STATS_INTERVAL_MS)",
                other => other,
            };
            anyhow::bail!("{flag}: {message}");
        }
        Ok(config)
    }
}

fn open_storage(args: &StorageArgs) -> anyhow::Result<Storage> {
    let s3 = S3Options {
        endpoint: args.s3_endpoint.clone(),
        region: args.s3_region.clone(),
        access_key_id: args.s3_access_key_id.clone(),
        secret_access_key: args.s3_secret_access_key.clone(),
    };
    Storage::open(&args.storage_url, &s3).with_context(|| format!("--storage (LADDER_STORAGE) {:?}", args.storage_url))
}

async fn open_index(args: &IndexArgs) -> Result<Arc<dyn Index>, Failure> {
    let context = || format!("--index (LADDER_INDEX) {}", args.index_url);
    match ladder_index::open(&args.index_url).await {
        Ok(index) => Ok(index),
        Err(e @ IndexError::Config(_)) => Err(Failure::Config(anyhow::Error::new(e).context(context()))),
        Err(e) => Err(Failure::Runtime(anyhow::Error::new(e).context(context()))),
    }
}

fn segmenter_config(
    nats: &NatsArgs,
    storage: &StorageArgs,
    segment: &SegmentArgs,
) -> anyhow::Result<ladder_segmenter::Config> {
    anyhow::ensure!(
        segment.target_duration >= 0.5 && segment.target_duration <= 30.0,
        "--target-duration (LADDER_TARGET_DURATION) must be between 0.5 and 30 seconds, got {}",
        segment.target_duration
    );
    Ok(ladder_segmenter::Config {
        nats_url: nats.nats_url.clone(),
        storage: open_storage(storage)?,
        target_duration: Duration::from_secs_f64(segment.target_duration),
        idle_timeout: Duration::from_secs(30),
    })
}

fn transcoder_config(
    nats: &NatsArgs,
    storage: &StorageArgs,
    transcode: &TranscodeArgs,
) -> anyhow::Result<ladder_transcoder::Config> {
    anyhow::ensure!(transcode.workers >= 1, "--workers (LADDER_WORKERS) must be at least 1");
    anyhow::ensure!(
        (1.0..=3600.0).contains(&transcode.ffmpeg_timeout),
        "--ffmpeg-timeout (LADDER_FFMPEG_TIMEOUT) must be between 1 and 3600 seconds, got {}",
        transcode.ffmpeg_timeout
    );
    anyhow::ensure!(
        (200..=2000).contains(&transcode.part_target_ms),
        "--part-target-ms (LADDER_PART_TARGET_MS) must be between 200 and 2000, got {}",
        transcode.part_target_ms
    );
    Ok(ladder_transcoder::Config {
        nats_url: nats.nats_url.clone(),
        storage: open_storage(storage)?,
        workers: transcode.workers,
        ladder: stream::read_ladder(transcode.ladder.as_deref())?,
        preset: transcode.preset.clone(),
        ffmpeg_timeout: Duration::from_secs_f64(transcode.ffmpeg_timeout),
        part_target: Duration::from_millis(transcode.part_target_ms),
    })
}

fn manifest_config(
    nats: &NatsArgs,
    storage: &StorageArgs,
    index: Arc<dyn Index>,
    http: &HttpArgs,
) -> anyhow::Result<ladder_manifest::Config> {
    anyhow::ensure!(
        (0.0..=86_400.0).contains(&http.end_grace),
        "--end-grace (LADDER_END_GRACE) must be between 0 and 86400 seconds, got {}",
        http.end_grace
    );
    anyhow::ensure!(http.window >= 3, "--window (LADDER_PLAYLIST_WINDOW) must be at least 3, got {}", http.window);
    anyhow::ensure!(
        http.media_cache_mb <= 64 * 1024,
        "--media-cache-mb (LADDER_MEDIA_CACHE_MB) must be at most 65536, got {}",
        http.media_cache_mb
    );
    anyhow::ensure!(
        (1.0..=3600.0).contains(&http.request_timeout),
        "--request-timeout (LADDER_HTTP_REQUEST_TIMEOUT) must be between 1 and 3600 seconds, got {}",
        http.request_timeout
    );
    anyhow::ensure!(http.max_in_flight >= 1, "--max-in-flight (LADDER_HTTP_MAX_IN_FLIGHT) must be at least 1");
    let playback_keys = http
        .playback_keys
        .as_deref()
        .map(ladder_manifest::signing::KeySet::parse)
        .transpose()
        .context("--playback-keys (LADDER_PLAYBACK_KEYS)")?;
    let signed_streams = ladder_manifest::signing::SignedStreams::parse(&http.signed_streams);
    anyhow::ensure!(
        signed_streams.is_empty() || playback_keys.is_some(),
        "--signed-streams (LADDER_SIGNED_STREAMS) needs --playback-keys (LADDER_PLAYBACK_KEYS)"
    );
    Ok(ladder_manifest::Config {
        playback_keys,
        signed_streams,
        request_timeout: Duration::from_secs_f64(http.request_timeout),
        max_in_flight: http.max_in_flight,
        http_listen: http.http_listen,
        nats_url: nats.nats_url.clone(),
        index,
        storage: open_storage(storage)?,
        window: http.window,
        media_base: media_base(http.media_base_url.as_deref())?,
        end_grace: Duration::from_secs_f64(http.end_grace),
        media_cache_bytes: http.media_cache_mb << 20,
        serve_source: http.serve_source,
    })
}

/// Where playlists point segment URIs: the public base URL given, with a trailing `/`, or `/media/`.
fn media_base(url: Option<&str>) -> anyhow::Result<String> {
    let Some(url) = url else { return Ok("/media/".to_string()) };
    anyhow::ensure!(
        url.starts_with("http://") || url.starts_with("https://"),
        "--media-base-url (LADDER_MEDIA_BASE_URL) must be an http:// or https:// URL, got {url:?}"
    );
    Ok(format!("{}/", url.trim_end_matches('/')))
}

/// A token cancelled on SIGINT or SIGTERM. A second signal exits at once.
fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down (signal again to force)");
        cancel.cancel();
        wait_for_signal().await;
        std::process::exit(130);
    });
    token
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
