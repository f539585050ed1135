# syntax=docker/dockerfile:1
# The Flotilla image: every binary of the workspace (flotilla-cp, flotilla-agent,
# flotilla-broker, flotilla-namesrv, flotilla) in /usr/local/bin of a slim Debian, run as
# user 65532. The Helm chart's default image; the agent finds the broker and nameserver
# binaries next to itself.
#
#   docker build -t flotilla/flotilla:0.1.0 .
#
# tests/tests/packaging_image.rs checks that the COPY lines below name exactly the binaries
# `cargo metadata` says the workspace builds.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=trixie

# ---- build: the Rust toolchain and protoc (the gRPC code is generated at build time) ----
FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends protobuf-compiler \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bins \
    && mkdir -p /out \
    && cp target/release/flotilla target/release/flotilla-cp target/release/flotilla-agent \
          target/release/flotilla-broker target/release/flotilla-namesrv /out/

# ---- runtime: no compiler, no package manager cache, no root ----
FROM debian:${DEBIAN_RELEASE}-slim AS runtime
RUN groupadd --system --gid 65532 flotilla \
    && useradd --system --uid 65532 --gid 65532 --home-dir /var/lib/flotilla-agent \
       --no-create-home --shell /usr/sbin/nologin flotilla \
    && mkdir -p /var/lib/flotilla-agent /var/lib/flotilla-cp \
    && chown 65532:65532 /var/lib/flotilla-agent /var/lib/flotilla-cp
COPY --from=build /out/flotilla /usr/local/bin/flotilla
COPY --from=build /out/flotilla-cp /usr/local/bin/flotilla-cp
COPY --from=build /out/flotilla-agent /usr/local/bin/flotilla-agent
COPY --from=build /out/flotilla-broker /usr/local/bin/flotilla-broker
COPY --from=build /out/flotilla-namesrv /usr/local/bin/flotilla-namesrv
USER 65532:65532
WORKDIR /var/lib/flotilla-agent
# gRPC API and agent service; nameserver; broker.
EXPOSE 7443 9876 10911
CMD ["flotilla", "--help"]
