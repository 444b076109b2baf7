# syntax=docker/dockerfile:1
#
# earlykill's container image: `docker build -t earlykill .`
# The entrypoint is the binary, so the command is a subcommand:
#   docker run --rm earlykill run --bootstrap-servers kafka:9092
#
# Build stage: the Rust toolchain that CI uses, plus what librdkafka's
# bundled build needs (a C compiler, make, perl, OpenSSL and zlib headers:
# all in the rust image's buildpack-deps base).
FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first, in their own layer: a change to earlykill's own code
# does not rebuild librdkafka.
# The workspace's manifests, and a placeholder for every target they name
# (each `[[bench]]` of either crate), so that cargo accepts them.
COPY Cargo.toml Cargo.lock ./
COPY crates/earlykill-core/Cargo.toml ./crates/earlykill-core/
RUN set -e; \
    benches() { sed -n '/^\[\[bench\]\]/{n;s/^name = "\(.*\)"/\1/p}' "$1/Cargo.toml"; }; \
    for crate in . crates/earlykill-core; do \
        mkdir -p "$crate/src" "$crate/benches"; \
        touch "$crate/src/lib.rs"; \
        for b in $(benches "$crate"); do echo 'fn main() {}' > "$crate/benches/$b.rs"; done; \
    done; \
    echo 'fn main() {}' > src/main.rs; \
    cargo build --release --locked --bin earlykill; \
    rm -rf src benches crates/earlykill-core/src crates/earlykill-core/benches
COPY src ./src
COPY benches ./benches
COPY crates ./crates
COPY migrations ./migrations
COPY schemas ./schemas
# Touch the sources so cargo rebuilds the crates over the placeholders.
RUN touch src/main.rs src/lib.rs crates/earlykill-core/src/lib.rs \
    && cargo build --release --locked --bin earlykill \
    && strip target/release/earlykill

# Runtime stage: glibc, OpenSSL 3 and CA certificates (for SASL_SSL), no
# compiler, no shell tools beyond Debian's base, and a non-root user.
FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libssl3 curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin earlykill
COPY --from=build /src/target/release/earlykill /usr/local/bin/earlykill
USER 10001:10001
# HTTP API and /metrics: 8080 for `run`, 8081 for `project`.
ENV EARLYKILL_HTTP_LISTEN=0.0.0.0:8080 \
    EARLYKILL_LOG_FORMAT=json
EXPOSE 8080 8081
ENTRYPOINT ["/usr/local/bin/earlykill"]
CMD ["--help"]
