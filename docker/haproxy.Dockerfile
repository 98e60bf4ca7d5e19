# The load balancer of docker-compose.cluster.yml: Debian's HAProxy (the one scripts/up runs
# locally) with docker/haproxy.cfg baked in (nothing is mounted), curl for the healthcheck.
#   docker build -f docker/haproxy.Dockerfile -t moa-lb .
ARG DEBIAN_IMAGE=debian:bookworm-slim
FROM ${DEBIAN_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends haproxy curl \
 && rm -rf /var/lib/apt/lists/*
COPY docker/haproxy.cfg /etc/haproxy/haproxy.cfg
RUN haproxy -c -f /etc/haproxy/haproxy.cfg
# -db: in the foreground, logs on stdout; HAProxy drops to the haproxy user after binding
CMD ["haproxy", "-db", "-f", "/etc/haproxy/haproxy.cfg"]
