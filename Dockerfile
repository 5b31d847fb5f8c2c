# The ladder image: one binary, every service. Used by deploy/compose and deploy/nomad.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --bin ladder

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ffmpeg ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/ladder /usr/local/bin/ladder
ENTRYPOINT ["/usr/local/bin/ladder"]
