//! `ladder reindex`: rebuilds the index by replaying the retained event log. The index is a projection of
//! JetStream, so this gives the index it would have had, and the same playlists.

use anyhow::Context;
use async_nats::jetstream::consumer::{pull::OrderedConfig, DeliverPolicy};
use clap::Args;
use futures::StreamExt;
use ladder_bus::{topology, Bus};
use ladder_proto::Event;

use super::{open_index, Failure, IndexArgs, NatsArgs};

#[derive(Args, Debug)]
pub struct ReindexArgs {
    #[command(flatten)]
    nats: NatsArgs,
    #[command(flatten)]
    index: IndexArgs,
}

pub async fn run(args: ReindexArgs) -> Result<(), Failure> {
    let index = open_index(&args.index).await?;
    if !index.streams().await?.is_empty() {
        return Err(Failure::Config(anyhow::anyhow!(
            "--index {} is not empty: reindex builds a new index, so move the old one away first",
            args.index.index_url
        )));
    }
    let bus = Bus::connect(&args.nats.nats_url).await?;
    let mut stream = bus.jetstream().get_stream(topology::EVENTS_STREAM).await.context("events stream")?;
    let last = stream.info().await.context("events stream info")?.state.last_sequence;
    let mut applied = 0u64;
    if last > 0 {
        let consumer = stream
            .create_consumer(OrderedConfig { deliver_policy: DeliverPolicy::All, ..Default::default() })
            .await
            .context("creating an ordered consumer on the events stream")?;
        let mut messages = consumer.messages().await.context("reading events")?;
        while let Some(message) = messages.next().await {
            let message = message.context("reading events")?;
            match Event::decode(&message.subject, &message.payload) {
                Ok(event) => {
                    index.apply(&event).await?;
                    applied += 1;
                }
                Err(e) => tracing::error!(subject = %message.subject, error = %e, "skipping undecodable event"),
            }
            let sequence = message.info().map(|info| info.stream_sequence).unwrap_or(last);
            if sequence >= last {
                break;
            }
        }
    }
    println!("reindexed {applied} events (event log up to sequence {last}) into {}", args.index.index_url);
    Ok(())
}
