//! `ladder chunk`: cuts an MPEG-TS file into chunks exactly as the segmenter does, without NATS or storage.
//! For checking a recording before publishing it, and for the segmenter benchmark (`make bench`).

use std::{
    io::{Read, Write},
    path::PathBuf,
    time::Instant,
};

use anyhow::Context;
use clap::Args;
use ladder_media::chunker::{Chunk, Chunker};

use super::Failure;

#[derive(Args, Debug)]
pub struct ChunkArgs {
    /// The MPEG-TS file to cut.
    input: PathBuf,
    /// Directory for the chunks (`00000000.ts`, ...); unset: cut and report only.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Target chunk duration in seconds; chunks are cut at the first IDR at or after it.
    #[arg(long, default_value_t = 2.0)]
    target_duration: f64,
}

pub fn run(args: ChunkArgs) -> Result<(), Failure> {
    let mut input = std::fs::File::open(&args.input)
        .with_context(|| format!("cannot open {}", args.input.display()))
        .map_err(Failure::Config)?;
    if let Some(out) = &args.out {
        std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    }
    let started = Instant::now();
    let mut chunker = Chunker::new((args.target_duration * 90_000.0).round() as u64);
    let mut buffer = vec![0u8; 1 << 20];
    let (mut chunks, mut bytes) = (0u64, 0u64);
    let mut write = |chunk: Chunk| -> anyhow::Result<()> {
        if let Some(out) = &args.out {
            let path = out.join(format!("{chunks:08}.ts"));
            std::fs::File::create(&path)
                .and_then(|mut file| file.write_all(&chunk.data))
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        println!(
            "chunk {chunks:>6} pts={:.3} dur={:.3}s size={} {}x{} {}{}",
            chunk.first_pts as f64 / 90_000.0,
            chunk.duration as f64 / 90_000.0,
            chunk.data.len(),
            chunk.width,
            chunk.height,
            chunk.codecs,
            if chunk.discontinuity { " discontinuity" } else { "" }
        );
        chunks += 1;
        Ok(())
    };
    loop {
        let read = input.read(&mut buffer).context("reading input")?;
        if read == 0 {
            break;
        }
        bytes += read as u64;
        for chunk in chunker.push(&buffer[..read]).context("not a stream ladder can cut")? {
            write(chunk)?;
        }
    }
    if let Some(chunk) = chunker.finish() {
        write(chunk)?;
    }
    if chunks == 0 {
        let problem = chunker.diagnose().map_or("no chunk in it".to_string(), |p| p.to_string());
        return Err(Failure::Runtime(anyhow::anyhow!("{}: {problem}", args.input.display())));
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "cut {bytes} bytes into {chunks} chunks in {seconds:.3} s ({:.1} MB/s)",
        bytes as f64 / 1e6 / seconds.max(1e-9)
    );
    Ok(())
}
