# One multi-stage build for both services; pick one with --target:
#   docker build --target directory -t cohort-directory .
#   docker build --target authz -t cohort-authz .
# (`docker compose build` does both.) BuildKit is needed, as every current
# Docker has it: the crate registry and the target folder are cache mounts, so a
# change to the sources (or the README) recompiles Cohort's own crates, not its
# dependencies. The build needs no protoc (protox compiles the contracts in Rust).

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p cohort-directory -p cohort-authz \
 && cp target/release/cohort-directory target/release/cohort-authz /usr/local/bin/

# A small runtime: Debian slim with CA certificates, a non-root user, no toolchain.
# /var/lib/cohort/credential is where the compose stack keeps the development
# credential both services share (a named volume copies its owner from here).
FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/cohort --create-home cohort \
 && mkdir -p /var/lib/cohort/credential \
 && chown cohort /var/lib/cohort/credential \
 && chmod 0700 /var/lib/cohort/credential
USER cohort
WORKDIR /var/lib/cohort
ENV COHORT_LOG_FORMAT=json

FROM runtime AS directory
COPY --from=build /usr/local/bin/cohort-directory /usr/local/bin/cohort-directory
ENV COHORT_DIRECTORY_LISTEN=0.0.0.0:50051 \
    COHORT_DIRECTORY_DATA_DIR=/var/lib/cohort/directory
EXPOSE 50051
HEALTHCHECK --interval=5s --timeout=4s --start-period=10s --retries=5 CMD ["cohort-directory", "--health-probe"]
ENTRYPOINT ["cohort-directory"]

FROM runtime AS authz
COPY --from=build /usr/local/bin/cohort-authz /usr/local/bin/cohort-authz
ENV COHORT_AUTHZ_LISTEN=0.0.0.0:50052 \
    COHORT_AUTHZ_DATA_DIR=/var/lib/cohort/authz
EXPOSE 50052
HEALTHCHECK --interval=5s --timeout=4s --start-period=10s --retries=5 CMD ["cohort-authz", "--health-probe"]
ENTRYPOINT ["cohort-authz"]
