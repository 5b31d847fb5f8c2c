# The ladder image built from source, for machines that can pull rust:bookworm: one binary, every service.
# Used by deploy/compose (and deploy/nomad). Without a registry, deploy/docker/ladder/Dockerfile makes the same
# image from a binary built on the host (deploy/docker/prepare.sh, deploy/compose/docker-compose.offline.yml).
FROM rust:1.95-bookworm AS build
WORKDIR /src
# libsrt 1.5 (OpenSSL flavour) for ingest; pkg-config finds it. proto/ compiles with protox: no protoc.
RUN apt-get update && apt-get install -y --no-install-recommends libsrt-openssl-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cargo build --release --bin ladder

FROM debian:bookworm-slim
# ffmpeg transcodes, libsrt is what ingest links against, wget serves the healthchecks.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg libsrt1.5-openssl ca-certificates wget \
    && rm -rf /var/lib/apt/lists/*
# Not root: uid 10001 owns only its home, where the SQLite index volume is mounted.
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/ladder --create-home ladder \
    && mkdir /var/lib/ladder/index && chown ladder:ladder /var/lib/ladder/index
COPY --from=build /src/target/release/ladder /usr/local/bin/ladder
USER 10001:10001
WORKDIR /var/lib/ladder
ENTRYPOINT ["/usr/local/bin/ladder"]
