# containd: docker build -t ghcr.io/containd/containd:0.1.0 .
# The image runs `containd run --config /etc/containd/containd.toml` as uid 10001 with the
# example config and seed rules (docker-compose.yml uses them); Kubernetes mounts its own
# (deploy/kubernetes).

FROM rust:1.95-bookworm AS build
# rdkafka builds librdkafka and (ssl-vendored) OpenSSL from source: perl and make, no cmake. The
# rust image has them already; listed so the requirement is written down.
RUN apt-get update \
    && apt-get install -y --no-install-recommends perl make \
    && rm -rf /var/lib/apt/lists/*
# No debug info and no symbols in the shipped binary (Cargo.toml's release profile keeps line
# tables for profiling). Set before the dependency layer so that layer is built the same way.
ENV CARGO_PROFILE_RELEASE_DEBUG=0 \
    CARGO_PROFILE_RELEASE_STRIP=symbols \
    CARGO_TERM_COLOR=never
WORKDIR /src

# 1. Dependencies only, cached until Cargo.toml or Cargo.lock change: the manifest with empty
#    stand-ins for every target it declares (the lib, both bins, the benches).
COPY Cargo.toml Cargo.lock ./
RUN set -eu; \
    for path in $(sed -n 's/^path *= *"\(.*\)"/\1/p' Cargo.toml); do \
        mkdir -p "$(dirname "$path")"; echo 'fn main() {}' > "$path"; \
    done; \
    : > src/lib.rs; \
    mkdir -p benches; \
    for bench in $(sed -n '/^\[\[bench\]\]/,/^name/ s/^name *= *"\(.*\)"/\1/p' Cargo.toml); do \
        echo 'fn main() {}' > "benches/$bench.rs"; \
    done; \
    cargo build --release --locked --bin containd; \
    rm -rf src benches

# 2. The crate. Its sources include schemas/ and examples/ (include_str!).
COPY src src
COPY benches benches
COPY schemas schemas
COPY examples examples
# COPY keeps the files' own times, which can be older than the stand-ins built above: touch them
# so cargo rebuilds the crate instead of keeping the empty one.
RUN find src benches -name '*.rs' -exec touch {} + \
    && cargo build --release --locked --bin containd \
    && ./target/release/containd --version

FROM debian:bookworm-slim
# ca-certificates: librdkafka (with its own OpenSSL, linked in) checks broker certificates
# against /etc/ssl/certs. No libssl3: OpenSSL is built into the binary.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 containd \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin containd
COPY --from=build /src/target/release/containd /usr/local/bin/containd
COPY examples/containd.toml /etc/containd/containd.toml
COPY examples/rules /etc/containd/rules
# Numeric, so Kubernetes can verify runAsNonRoot.
USER 10001:10001
EXPOSE 9464
# No HEALTHCHECK: the image has no HTTP client (no curl, no wget) and containd no self-probe
# command, and where telemetry listens is the config's choice. Orchestrators probe /healthz and
# /readyz themselves: the Kubernetes Deployment over HTTP, docker-compose.yml with bash's
# /dev/tcp. Outside the container they need telemetry.listen on 0.0.0.0 (the example config
# says 127.0.0.1: CONTAIND__TELEMETRY__LISTEN=0.0.0.0:9464, as docker-compose.yml sets).
ENTRYPOINT ["/usr/local/bin/containd"]
CMD ["run", "--config", "/etc/containd/containd.toml"]
