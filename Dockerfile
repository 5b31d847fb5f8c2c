# The ladder image: one binary, every service. Used by deploy/compose and deploy/nomad.
FROM rust:1.95-bookworm AS build
WORKDIR /src
# libsrt 1.5 (OpenSSL flavour) for ingest; pkg-config finds it.
RUN apt-get update && apt-get install -y --no-install-recommends libsrt-openssl-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cargo build --release --bin ladder

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ffmpeg libsrt1.5-openssl ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/ladder /usr/local/bin/ladder
ENTRYPOINT ["/usr/local/bin/ladder"]
