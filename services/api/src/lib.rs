//! # Layout
//! `ladder api`: the control API, `ladder.v1.Control` over gRPC (`proto/ladder/v1/control.proto`), for
//! operators and their tools (`ladder top`, grpcurl, a dashboard).
//!
//! - [`view`]: what the API knows of the streams, folded from the event log (`LADDER_EVENTS`, from
//!   [`EVENTS_LOOKBACK`] back) and the SRT statistics ingest samples (`stats.srt.<stream>`). Nothing is kept
//!   that NATS does not have: an API instance that starts reads it all again, and any number can run.
//! - this file: the service. Every call needs `authorization: Bearer <token>`. Changes go the way the
//!   command line's go, through the same functions: a ladder is a `ladder.set` event
//!   ([`ladder_transcoder::set_ladder`]), a key is written to the keys' bucket ([`StreamKeys`]), and a kick is
//!   a request on `control.kick.<stream>` that the ingest holding the stream answers.
#![forbid(unsafe_code)]

pub mod view;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use ladder_bus::{keys, Bus, BusError, StreamKeys};
use ladder_proto::v1::{
    control_server::{Control, ControlServer},
    GetLadderRequest, GetLadderResponse, GetStreamRequest, KickPublisherRequest, KickPublisherResponse, KickReply,
    ListFailuresRequest, ListFailuresResponse, ListStreamsRequest, ListStreamsResponse, RemoveKeyRequest,
    RemoveKeyResponse, SetKeyRequest, SetKeyResponse, SetLadderRequest, SetLadderResponse, StreamStatus,
};
use ladder_transcoder::RenditionSpec;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::view::View;

/// How far back the event log is read at start-up: the sessions and failures of the last six hours.
pub const EVENTS_LOOKBACK: Duration = Duration::from_secs(6 * 3600);
/// How long a kick waits for the ingest that has the stream to answer.
const KICK_TIMEOUT: Duration = Duration::from_secs(3);
/// Tokens shorter than this are refused at start-up: the API can change keys and disconnect publishers.
pub const MIN_TOKEN_LEN: usize = 16;

#[derive(Clone)]
pub struct Config {
    pub nats_url: String,
    pub listen: SocketAddr,
    /// The bearer token every call must carry.
    pub token: String,
    /// The transcoders' default ladder, for `GetLadder` of a stream without one of its own.
    pub default_ladder: Vec<RenditionSpec>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config").field("nats_url", &self.nats_url).field("listen", &self.listen).finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("grpc server: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// Serves the control API until `shutdown`.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), ApiError> {
    if config.token.len() < MIN_TOKEN_LEN {
        return Err(ApiError::Config(format!("the API token must be at least {MIN_TOKEN_LEN} characters")));
    }
    let bus = Bus::connect(&config.nats_url).await?;
    let keys = StreamKeys::open(&bus).await?;
    let view = Arc::new(View::default());
    let followers = [
        tokio::spawn(view::follow_events(bus.clone(), view.clone(), shutdown.child_token())),
        tokio::spawn(view::follow_stats(bus.jetstream().client(), view.clone(), shutdown.child_token())),
    ];
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ApiError::Bind { addr: config.listen, source })?;
    let addr = listener.local_addr().unwrap_or(config.listen);
    let token = Arc::<str>::from(format!("Bearer {}", config.token));
    let service = Service { bus: bus.clone(), keys, view, default_ladder: config.default_ladder.clone() };
    let server = ControlServer::with_interceptor(service, move |request: Request<()>| authorize(&token, request));
    tracing::info!(%addr, "api serving grpc");
    ladder_telemetry::health::register("api: nats", ladder_telemetry::health::nats(bus.jetstream().client()));
    let served = tonic::transport::Server::builder()
        .add_service(server)
        .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(listener), shutdown.cancelled())
        .await;
    for follower in followers {
        follower.abort();
    }
    bus.drain().await;
    tracing::info!("api stopped");
    served.map_err(ApiError::from)
}

/// Lets a call through if it carries the token; compared in constant time.
fn authorize(expected: &str, request: Request<()>) -> Result<Request<()>, Status> {
    let given = request.metadata().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let same = given.len() == expected.len()
        && given.bytes().zip(expected.bytes()).fold(0u8, |diff, (a, b)| diff | (a ^ b)) == 0;
    if same {
        Ok(request)
    } else {
        Err(Status::unauthenticated("a bearer token is required (authorization: Bearer <token>)"))
    }
}

struct Service {
    bus: Bus,
    keys: StreamKeys,
    view: Arc<View>,
    default_ladder: Vec<RenditionSpec>,
}

/// A stream name as publishers use it: the name itself, not an SRT stream id that holds one.
fn check_name(stream: &str) -> Result<(), Status> {
    ladder_ingest::stream_id::validate_name(stream)
        .map_err(|e| Status::invalid_argument(format!("stream name {stream:?}: {e}")))
}

fn internal(e: impl std::fmt::Display) -> Status {
    Status::unavailable(e.to_string())
}

impl Service {
    async fn status(&self, stream: &str) -> Result<Option<StreamStatus>, Status> {
        let has_key = self.keys.get(stream).await.map_err(internal)?.is_some();
        Ok(self.view.status(stream, view::now_ms()).map(|status| StreamStatus { has_key, ..status }))
    }
}

#[tonic::async_trait]
impl Control for Service {
    async fn list_streams(&self, _: Request<ListStreamsRequest>) -> Result<Response<ListStreamsResponse>, Status> {
        let keyed = self.keys.names().await.map_err(internal)?;
        let streams = self
            .view
            .statuses(view::now_ms())
            .into_iter()
            .map(|status| StreamStatus { has_key: keyed.contains(&status.stream), ..status })
            .collect();
        Ok(Response::new(ListStreamsResponse { streams }))
    }

    async fn get_stream(&self, request: Request<GetStreamRequest>) -> Result<Response<StreamStatus>, Status> {
        let stream = request.into_inner().stream;
        check_name(&stream)?;
        match self.status(&stream).await? {
            Some(status) => Ok(Response::new(status)),
            None => Err(Status::not_found(format!(
                "no stream {stream} in the last {} hours",
                EVENTS_LOOKBACK.as_secs() / 3600
            ))),
        }
    }

    async fn get_ladder(&self, request: Request<GetLadderRequest>) -> Result<Response<GetLadderResponse>, Status> {
        let stream = request.into_inner().stream;
        check_name(&stream)?;
        let own = ladder_transcoder::current_ladder(&self.bus, &stream).await.map_err(internal)?;
        let renditions = own.as_ref().unwrap_or(&self.default_ladder).iter().map(Into::into).collect();
        Ok(Response::new(GetLadderResponse { renditions, own: own.is_some() }))
    }

    async fn set_ladder(&self, request: Request<SetLadderRequest>) -> Result<Response<SetLadderResponse>, Status> {
        let request = request.into_inner();
        check_name(&request.stream)?;
        let renditions: Vec<RenditionSpec> = request.renditions.iter().map(RenditionSpec::from).collect();
        match ladder_transcoder::set_ladder(&self.bus, &request.stream, &renditions).await {
            Ok(set) => {
                tracing::info!(stream = %request.stream, renditions = set.renditions.len(), "ladder set through the api");
                Ok(Response::new(SetLadderResponse { set_at_ms: set.set_at_ms, renditions: set.renditions }))
            }
            Err(ladder_transcoder::SetLadderError::Invalid(e)) => Err(Status::invalid_argument(e.to_string())),
            Err(e) => Err(internal(e)),
        }
    }

    async fn set_key(&self, request: Request<SetKeyRequest>) -> Result<Response<SetKeyResponse>, Status> {
        let request = request.into_inner();
        check_name(&request.stream)?;
        let (key, generated) = if request.key.is_empty() {
            (keys::generate_key(), true)
        } else {
            keys::validate_key(&request.key).map_err(|e| Status::invalid_argument(e.to_string()))?;
            (request.key, false)
        };
        let rotated = self.keys.get(&request.stream).await.map_err(internal)?.is_some();
        self.keys.set(&request.stream, &key).await.map_err(internal)?;
        tracing::info!(stream = %request.stream, rotated, "publish key set through the api");
        Ok(Response::new(SetKeyResponse { generated_key: if generated { key } else { String::new() }, rotated }))
    }

    async fn remove_key(&self, request: Request<RemoveKeyRequest>) -> Result<Response<RemoveKeyResponse>, Status> {
        let stream = request.into_inner().stream;
        check_name(&stream)?;
        let removed = self.keys.remove(&stream).await.map_err(internal)?;
        Ok(Response::new(RemoveKeyResponse { removed }))
    }

    async fn kick_publisher(
        &self,
        request: Request<KickPublisherRequest>,
    ) -> Result<Response<KickPublisherResponse>, Status> {
        let stream = request.into_inner().stream;
        check_name(&stream)?;
        let client = self.bus.jetstream().client();
        let subject = format!("{}.{stream}", ladder_ingest::KICK_PREFIX);
        let answer = tokio::time::timeout(KICK_TIMEOUT, client.request(subject, bytes::Bytes::new())).await;
        let reply = match answer {
            Ok(Ok(message)) => <KickReply as prost::Message>::decode(message.payload.as_ref()).map_err(internal)?,
            // No ingest has it: those that run stay silent (the request times out), or none runs at all.
            Err(_) => return Ok(Response::new(KickPublisherResponse::default())),
            Ok(Err(e))
                if matches!(
                    e.kind(),
                    async_nats::RequestErrorKind::NoResponders | async_nats::RequestErrorKind::TimedOut
                ) =>
            {
                return Ok(Response::new(KickPublisherResponse::default()))
            }
            Ok(Err(e)) => return Err(Status::unavailable(format!("cannot ask ingest: {e}"))),
        };
        tracing::info!(%stream, session = %reply.session_id, ingest = %reply.ingest, "publisher kicked through the api");
        Ok(Response::new(KickPublisherResponse { kicked: true, session_id: reply.session_id, ingest: reply.ingest }))
    }

    async fn list_failures(
        &self,
        request: Request<ListFailuresRequest>,
    ) -> Result<Response<ListFailuresResponse>, Status> {
        let request = request.into_inner();
        let limit = if request.limit == 0 { 100 } else { request.limit as usize };
        let failures = self.view.failures(&request.stream, limit);
        Ok(Response::new(ListFailuresResponse { failures }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_need_the_token() {
        let with = |value: Option<&str>| {
            let mut request = Request::new(());
            if let Some(value) = value {
                request.metadata_mut().insert("authorization", value.parse().expect("ascii"));
            }
            authorize("Bearer 0123456789abcdef", request).map(|_| ()).map_err(|s| s.code())
        };
        assert_eq!(with(Some("Bearer 0123456789abcdef")), Ok(()));
        assert_eq!(with(Some("Bearer 0123456789abcdeF")), Err(tonic::Code::Unauthenticated));
        assert_eq!(with(Some("Bearer 0123456789abcdef0")), Err(tonic::Code::Unauthenticated));
        assert_eq!(with(None), Err(tonic::Code::Unauthenticated));
    }
}
