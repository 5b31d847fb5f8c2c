//! Links libsrt through pkg-config (Debian: `libsrt-openssl-dev`, or `libsrt-gnutls-dev`) and compiles the
//! small C shim that copies the statistics out of libsrt's large `SRT_TRACEBSTATS`, so that its layout is
//! the C compiler's business and never hand-copied into Rust.

fn main() {
    println!("cargo:rerun-if-changed=src/shim.c");
    let srt = match pkg_config::Config::new().range_version("1.5.0".."1.6.0").probe("srt") {
        Ok(srt) => srt,
        Err(e) => {
            eprintln!(
                "libsrt 1.5 was not found with pkg-config ({e}). Install it: apt-get install libsrt-openssl-dev \
                 (or run scripts/install-deps.sh)"
            );
            std::process::exit(1);
        }
    };
    let mut shim = cc::Build::new();
    shim.file("src/shim.c").warnings(true).extra_warnings(true);
    for include in &srt.include_paths {
        shim.include(include);
    }
    shim.compile("ladder_srt_shim");
}
