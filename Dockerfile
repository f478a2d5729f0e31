# Multi-stage build: compile in the Rust image, run from a small Debian one
# as a non-root user. SQLite, libpq and the OpenSSL it speaks TLS with are
# built from source and linked in: the runtime needs nothing beyond libc.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY vendor vendor
COPY src src
COPY templates templates
COPY static static
COPY migrations migrations
COPY diesel.toml ./
RUN cargo build --release --locked --bin lbasedb-proxy

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /data --create-home app
COPY --from=build /src/target/release/lbasedb-proxy /usr/local/bin/lbasedb-proxy
USER app
WORKDIR /data
ENV BIND=0.0.0.0:8000 \
    DATA_DIR=/data \
    RUST_LOG=info
EXPOSE 8000
VOLUME ["/data"]
ENTRYPOINT ["lbasedb-proxy"]
CMD ["serve"]
