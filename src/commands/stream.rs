//! `ladder stream`: per-stream settings, carried as events like everything else.

use anyhow::Context;
use clap::Subcommand;
use ladder_bus::Bus;
use ladder_proto::{Event, LadderSet, RenditionConfig};
use ladder_transcoder::{ladder, RenditionSpec};

use super::NatsArgs;

#[derive(Subcommand, Debug)]
pub enum StreamCommand {
    /// Set a stream's ABR ladder from a TOML file (one [[rendition]] table each); it applies from the next chunk.
    SetLadder {
        #[command(flatten)]
        nats: NatsArgs,
        stream: String,
        file: std::path::PathBuf,
    },
    /// Show the ladder a stream is transcoded with.
    Show {
        #[command(flatten)]
        nats: NatsArgs,
        stream: String,
    },
}

pub async fn run(command: StreamCommand) -> Result<(), super::Failure> {
    match command {
        StreamCommand::SetLadder { nats, stream, file } => {
            check_name(&stream).map_err(super::Failure::Config)?;
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))
                .map_err(super::Failure::Config)?;
            let renditions = ladder::parse(&text)
                .with_context(|| format!("{} is not a valid ladder", file.display()))
                .map_err(super::Failure::Config)?;
            let bus = Bus::connect(&nats.nats_url).await?;
            let event = Event::LadderSet(LadderSet {
                stream: stream.clone(),
                renditions: renditions.iter().map(RenditionConfig::from).collect(),
                set_at_ms: ladder_bus::now_ms(),
            });
            bus.publish_event(&event).await?;
            bus.drain().await;
            println!("ladder of {stream} set: {} renditions, from the next chunk on", renditions.len());
        }
        StreamCommand::Show { nats, stream } => {
            check_name(&stream).map_err(super::Failure::Config)?;
            let bus = Bus::connect(&nats.nats_url).await?;
            match ladder_transcoder::current_ladder(&bus, &stream).await? {
                Some(renditions) => {
                    println!("# ladder of {stream}, set with `ladder stream set-ladder`");
                    print!("{}", ladder::to_toml(&renditions));
                }
                None => {
                    println!("# {stream} has no ladder of its own: the transcoders' default applies");
                    print!("{}", ladder::to_toml(&ladder_transcoder::default_ladder()));
                }
            }
        }
    }
    Ok(())
}

fn check_name(stream: &str) -> anyhow::Result<()> {
    ladder_ingest::parse_stream_id(Some(stream)).map(|_| ()).with_context(|| format!("stream name {stream:?}"))
}

/// Reads a default ladder file for `--ladder`.
pub fn read_ladder(path: Option<&std::path::Path>) -> anyhow::Result<Vec<RenditionSpec>> {
    let Some(path) = path else {
        return Ok(ladder_transcoder::default_ladder());
    };
    let text = std::fs::read_to_string(path).with_context(|| format!("--ladder {}", path.display()))?;
    ladder::parse(&text).with_context(|| format!("--ladder {}", path.display()))
}
