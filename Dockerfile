# Build: docker build -t containd .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin containd

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libssl3 \
    && rm -rf /var/lib/apt/lists/* && useradd --system --uid 10001 containd
COPY --from=build /src/target/release/containd /usr/local/bin/containd
COPY examples/containd.toml /etc/containd/containd.toml
COPY examples/rules /etc/containd/rules
USER containd
EXPOSE 9464
ENTRYPOINT ["/usr/local/bin/containd"]
CMD ["run", "--config", "/etc/containd/containd.toml"]
