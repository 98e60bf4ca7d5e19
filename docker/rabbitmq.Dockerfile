# RabbitMQ 3.10 with the management plugin, our configuration and topology baked in:
#   docker build -f docker/rabbitmq.Dockerfile -t moa-rabbitmq .
#
# Debian's rabbitmq-server (3.10.8, what scripts/up runs on the host), not the official
# rabbitmq image: no registry image can be pulled where these are tested, and a Debian base
# can be made locally (scripts/compose-images; docs/decisions.md, "Container images").
#
# rabbitmq/definitions.json.in (exchanges, queues, bindings, policies), rendered here for the
# domains of domains.tsv (rabbitmq/render.sh), is imported at boot.
# When definitions are imported, RabbitMQ does not create its default user, not even
# from RABBITMQ_DEFAULT_USER / RABBITMQ_DEFAULT_PASS. So load_definitions points at a
# directory, and docker/rabbitmq-entrypoint.sh writes the users into it when the container
# starts: the operator from those two variables, the services' own users from
# rabbitmq/service-users.json.in with ITEM_/ALARM_/USER_AMQP_PASSWORD, one per domain (no
# password lands in the image).

ARG DEBIAN_IMAGE=debian:bookworm-slim
FROM ${DEBIAN_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends rabbitmq-server \
 && rm -rf /var/lib/apt/lists/* /var/lib/rabbitmq/mnesia
COPY rabbitmq/rabbitmq.conf /etc/rabbitmq/rabbitmq.conf
COPY rabbitmq/enabled_plugins /etc/rabbitmq/enabled_plugins
COPY domains.tsv rabbitmq/definitions.json.in rabbitmq/service-users.json.in rabbitmq/render.sh \
     rabbitmq/elect-leaderless.erl docker/is-domain.sh /etc/rabbitmq/moa/
RUN mkdir -p /etc/rabbitmq/definitions.d \
 && sh /etc/rabbitmq/moa/render.sh /etc/rabbitmq/moa/domains.tsv /etc/rabbitmq/moa/definitions.json.in \
      >/etc/rabbitmq/definitions.d/00-topology.json \
 && sed -i 's#^load_definitions = .*#load_definitions = /etc/rabbitmq/definitions.d#' \
      /etc/rabbitmq/rabbitmq.conf \
 && grep -qx 'load_definitions = /etc/rabbitmq/definitions.d' /etc/rabbitmq/rabbitmq.conf \
 && chown -R rabbitmq:rabbitmq /etc/rabbitmq/definitions.d
COPY docker/rabbitmq-entrypoint.sh /usr/local/bin/moa-rabbitmq-entrypoint.sh
# the log on stdout, as the official image has it
ENV RABBITMQ_LOGS=-
ENTRYPOINT ["moa-rabbitmq-entrypoint.sh"]
CMD ["/usr/lib/rabbitmq/bin/rabbitmq-server"]
