//! `ladder setup`: creates the JetStream streams, durable consumers and key-value buckets, or brings an
//! existing deployment's up to date, then exits. Every service does the same when it starts if its NATS user
//! may; with per-service users (deploy/nats/ladder.conf) only an operator's user may, and this command is how
//! the topology gets there before the services start (the `setup` service of deploy/compose, a pre-start
//! task on Nomad).

use clap::Args;
use ladder_bus::{kv, topology, Bus};

use super::{Failure, NatsArgs};

#[derive(Args, Debug)]
pub struct SetupArgs {
    #[command(flatten)]
    nats: NatsArgs,
}

pub async fn run(args: SetupArgs) -> Result<(), Failure> {
    let bus = Bus::connect(&args.nats.nats_url).await?;
    let js = bus.jetstream();
    for config in topology::stream_configs(bus.replicas()) {
        let stream = js.get_stream(&config.name).await.map_err(|e| anyhow::anyhow!("stream {}: {e}", config.name))?;
        let info = stream.cached_info();
        println!(
            "stream {:<14} {} replica(s), {} message(s), subjects {}",
            config.name,
            info.config.num_replicas,
            info.state.messages,
            info.config.subjects.join(" ")
        );
    }
    for spec in &topology::CONSUMERS {
        let stream = js.get_stream(spec.stream).await.map_err(|e| anyhow::anyhow!("stream {}: {e}", spec.stream))?;
        let info =
            stream.consumer_info(spec.durable).await.map_err(|e| anyhow::anyhow!("consumer {}: {e}", spec.durable))?;
        println!("consumer {:<12} on {}, {} pending", spec.durable, spec.stream, info.num_pending);
    }
    for name in kv::BUCKETS {
        js.get_key_value(name).await.map_err(|e| anyhow::anyhow!("bucket {name}: {e}"))?;
        println!("bucket {name}");
    }
    println!("the JetStream topology of ladder is in place");
    Ok(())
}
