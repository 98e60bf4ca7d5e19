# One image per service: docker build --build-arg SERVICE=item -t moa-item . (SERVICE: a domain
# of domains.tsv: item, alarm, user)
#
# Stage `build` compiles only the named service's binary (its OpenAPI document and migrations
# are compiled into it). The final stage is a slim Debian with the binary, curl for the
# healthcheck and an unprivileged user; configuration comes from environment variables only.
#
# Where no registry image can be pulled (podman here, scripts/compose-images), the binaries
# are built on the host instead and copied in: `--target prebuilt`, with a build context that
# holds only the binary, named after the service, and DEBIAN_IMAGE set to a locally made
# Debian (docs/decisions.md, "Container images").

ARG RUST_VERSION=1.95
ARG DEBIAN_IMAGE=debian:bookworm-slim

FROM rust:${RUST_VERSION}-bookworm AS build
ARG SERVICE
WORKDIR /src
COPY domains.tsv docker/is-domain.sh /tmp/moa/
RUN sh /tmp/moa/is-domain.sh /tmp/moa/domains.tsv "$SERVICE" \
 || { echo "build with --build-arg SERVICE=<a domain of domains.tsv>" >&2; exit 1; }
COPY . .
RUN cargo build --release --locked -p "$SERVICE" --bin "$SERVICE" \
 && install -m 755 "target/release/$SERVICE" /usr/local/bin/service

# Everything but the binary: the same for both ways of getting it
FROM ${DEBIAN_IMAGE} AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --no-create-home --uid 10001 moa
# after the packages: that layer is the same for the three services
ARG SERVICE
LABEL org.opencontainers.image.title="homeshopping-moa-${SERVICE}"
# Listen on every interface inside the container; the port variable is per service
# (ITEM_HTTP_PORT, ALARM_HTTP_PORT, USER_HTTP_PORT) and set by docker-compose.yml.
ENV HTTP_HOST=0.0.0.0
USER moa
# actix-web handles SIGTERM itself (graceful shutdown), so the binary can be PID 1.
ENTRYPOINT ["/usr/local/bin/service"]

# The binary built on the host (the build context holds it, named after the service)
FROM runtime AS prebuilt
ARG SERVICE
COPY ${SERVICE} /usr/local/bin/service

# The default: the binary compiled by the build stage
FROM runtime
COPY --from=build /usr/local/bin/service /usr/local/bin/service
