# One PostgreSQL 15 image per domain, its seed baked in (no volumes):
#   docker build -f docker/postgres.Dockerfile --build-arg DOMAIN=item -t moa-item-db .
# (DOMAIN: a domain of domains.tsv)
#
# Debian's postgresql-15 (what scripts/up runs on the host) and pg_auto_failover
# (postgresql-15-auto-failover: the members and monitor of docker-compose.cluster.yml), not
# the official postgres image: no registry image can be pulled where these are tested, and a
# Debian base can be made locally (scripts/compose-images; docs/decisions.md, "Container
# images"). docker/postgres-entrypoint.sh plays the official image's part: on an empty data
# directory it runs initdb with POSTGRES_PASSWORD, loads the seed into ${DOMAIN}_db with a
# server on the Unix socket only, then runs the real server. The service applies its own
# migrations (change capture, outbox, ...) when it connects.

ARG DEBIAN_IMAGE=debian:bookworm-slim

# Without a seed: pg_auto_failover's monitor (docker-compose.cluster.yml, --target postgres)
FROM ${DEBIAN_IMAGE} AS postgres
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-15 postgresql-15-auto-failover \
 && rm -rf /var/lib/apt/lists/* \
 && rm -rf /var/lib/postgresql/15/main /etc/postgresql/15/main \
 && install -d -o postgres -g postgres -m 700 /var/lib/postgresql/data \
 && install -d -o postgres -g postgres -m 2775 /var/run/postgresql
ENV PATH=/usr/lib/postgresql/15/bin:$PATH \
    PGDATA=/var/lib/postgresql/data \
    LANG=C.UTF-8
COPY scripts/pg-monitor.conf /usr/local/share/moa/pg-monitor.conf
COPY postgres/roles.sql /usr/local/share/moa/roles.sql
COPY docker/postgres-entrypoint.sh /usr/local/bin/moa-postgres-entrypoint.sh
ENTRYPOINT ["moa-postgres-entrypoint.sh"]

# A domain's server or formation member: the seed baked in
FROM postgres
ARG DOMAIN
COPY domains.tsv docker/is-domain.sh /tmp/moa/
RUN sh /tmp/moa/is-domain.sh /tmp/moa/domains.tsv "$DOMAIN" \
 || { echo "build with --build-arg DOMAIN=<a domain of domains.tsv>" >&2; exit 1; }
COPY seed/demo/${DOMAIN}/init_database.sql /usr/local/share/moa/init_database.sql
ENV POSTGRES_DB=${DOMAIN}_db
