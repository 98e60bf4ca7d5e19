# One PostgreSQL 15 image per domain, its seed baked in (no volumes):
#   docker build -f docker/postgres.Dockerfile --build-arg DOMAIN=item -t moa-item-db .
#
# The official image runs /docker-entrypoint-initdb.d/*.sql with psql -v ON_ERROR_STOP=1
# into $POSTGRES_DB the first time the container starts (empty data directory). The dump
# needs the role `postgres`, which is the image's superuser. The service applies its own
# migrations (change capture, outbox, ...) when it connects.

FROM postgres:15
ARG DOMAIN
RUN case "$DOMAIN" in item|alarm|user) ;; \
      *) echo "build with --build-arg DOMAIN=item|alarm|user (got '$DOMAIN')" >&2; exit 1 ;; esac
COPY seed/demo/${DOMAIN}/init_database.sql /docker-entrypoint-initdb.d/10-init_database.sql
ENV POSTGRES_DB=${DOMAIN}_db
# The same settings as scripts/infra (PG_TUNING): fewer checkpoints, compressed full-page
# images, a larger buffer cache; see docs/performance.md.
CMD ["postgres", "-c", "shared_buffers=256MB", "-c", "max_wal_size=4GB", "-c", "checkpoint_timeout=15min", \
     "-c", "wal_compression=lz4"]
