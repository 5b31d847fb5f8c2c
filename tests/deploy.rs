//! The deployment files: every Nomad job parses as HCL and runs `ladder` subcommands with flags and variables
//! the binary accepts (`tests/deploy/check_nomad.py`, with python-hcl2; Nomad itself cannot be installed here).

mod support;

use std::path::{Path, PathBuf};

use support::{run, LADDER};

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
