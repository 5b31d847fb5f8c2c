//! The deployments: deploy/compose run for real on a Docker engine ([`support::compose::Compose`]), and every
//! Nomad job parsed as HCL, running `ladder` subcommands with flags and variables the binary accepts
//! (`tests/deploy/check_nomad.py`, with python-hcl2; Nomad itself cannot be installed here).

mod support;

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use support::{
    checks::{check_stream, Sent},
    compose::Compose,
    eventually, publish_small, run, Deployment, LADDER,
};

#[test]
fn nomad_jobs_run_ladder_as_it_is() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = std::env::var_os("LADDER_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/hls-venv/bin/python"));
    let mut jobs: Vec<String> = std::fs::read_dir(root.join("deploy/nomad"))
        .expect("deploy/nomad")
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.to_string_lossy().ends_with(".nomad.hcl"))
        .map(|path| path.display().to_string())
        .collect();
    jobs.sort();
    assert!(!jobs.is_empty(), "job files in deploy/nomad");
    let script = root.join("tests/deploy/check_nomad.py").display().to_string();
    let mut args = vec![script.as_str(), LADDER];
    args.extend(jobs.iter().map(String::as_str));
    let (ok, out, err) = run(python.to_str().expect("utf-8 path"), &args);
    assert!(ok, "the Nomad jobs (make test installs python-hcl2):\n{out}{err}");
    assert!(out.contains(" 0 problems"), "{out}");
}

/// deploy/compose for real: the offline images built here, a 3-node NATS cluster, Garage, two segmenters and
/// two transcoders, the SQLite index. A 30 s SRT publish from the host to the published port, during which one
/// NATS node's process and then the segmenter owning the stream are killed (SIGKILL, as a crash); then every
/// chunk is there exactly once, continuous, and every variant of the master playlist decodes with ffmpeg over
/// the published HTTP port; `down -v` leaves nothing behind.
#[test]
fn compose_deployment_streams_through_a_nats_node_and_a_segmenter_dying() {
    let mut compose = Compose::up();
    let stream = "composecam";
    let started = Instant::now();
    let publisher = publish_small(&compose.srt_url(stream), 30, 440);

    // Live: the first chunk is listed.
    eventually(Duration::from_secs(60), "the first chunk listed", &compose, || {
        let (status, text) = compose.get(&format!("/live/{stream}/180p.m3u8"));
        (status == 200 && text.contains("#EXTINF")).then_some(())
    });
    // Replicated: the event log and the segmenter leases have a copy on every node.
    for stream in [ladder_bus::topology::EVENTS_STREAM.to_string(), format!("KV_{}", ladder_bus::kv::SEGMENTER_LEASES)]
    {
        assert_eq!(compose.stream_replicas(&stream), Some(3), "{stream}: replicas\n{}", compose.logs());
    }
    std::thread::sleep(Duration::from_secs(8).saturating_sub(started.elapsed()));
    let nats2 = compose.containers(Some("nats2")).pop().expect("a nats2 container");
    compose.crash(&nats2);
    eprintln!("killed {nats2} at {:.1} s", started.elapsed().as_secs_f64());

    std::thread::sleep(Duration::from_secs(16).saturating_sub(started.elapsed()));
    let owner =
        eventually(Duration::from_secs(10), "the segmenter lease", &compose, || compose.segmenter_owner(stream));
    let holder = compose.segmenter_lease(stream).expect("the lease");
    compose.crash(&owner);
    let killed_at = started.elapsed();
    eprintln!("killed {owner} (the lease holder) at {:.1} s", killed_at.as_secs_f64());
    assert!(killed_at < Duration::from_secs(25), "the kills came too late to be mid-stream: {killed_at:?}");
    // Another segmenter process (the other container, or the killed one restarted) takes the stream over
    // while it is still live.
    let took_over = eventually(Duration::from_secs(10), "another segmenter holding the lease", &compose, || {
        compose.segmenter_lease(stream).filter(|now| *now != holder)
    });
    assert!(started.elapsed() < Duration::from_secs(29), "the takeover came after the stream: {:?}", started.elapsed());
    publisher.finish();

    // Both came back by their restart policy, healthy.
    for container in [&nats2, &owner] {
        eventually(Duration::from_secs(60), &format!("{container} restarted"), &compose, || {
            (compose.restarts(container) > compose.baseline_restarts(container)).then_some(())
        });
    }
    compose.wait_healthy(&[], Duration::from_secs(120));

    check_stream(&compose, stream, &[Sent::Whole(30.0)], &["180p", "120p"]);
    let master = compose.url(&format!("/dvr/{stream}/master.m3u8"));
    let (ok, _, err) = run("ffmpeg", &["-hide_banner", "-v", "error", "-i", &master, "-map", "0", "-f", "null", "-"]);
    assert!(ok && err.trim().is_empty(), "ffmpeg plays every variant of {master}: {err}");

    // Prometheus (deploy/prometheus/compose.yml) scrapes every replica: 2 segmenters, 2 transcoders, the rest.
    let targets = eventually(Duration::from_secs(60), "every scrape target up", &compose, || {
        let targets = compose.prometheus_targets();
        (targets.len() == 8 && targets.iter().all(|(_, health)| health == "up")).then_some(targets)
    });
    eprintln!("prometheus targets: {targets:?}; the lease went from {holder} to {took_over}");

    let started = Instant::now();
    let left = compose.down();
    compose.timings.push(("down -v".to_string(), started.elapsed()));
    assert!(left.is_empty(), "down -v left: {left:?}");
    for (step, took) in &compose.timings {
        eprintln!("compose test: {step}: {:.1} s", took.as_secs_f64());
    }
}
