# Redis from Debian's packages, standing in for the official redis image (REDIS_IMAGE): runs
# `redis-server` as the redis user in /data, listening on every interface with protected mode
# off (as the official image is built), extra `redis-server` arguments pass through.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/* \
 && mkdir -p /data \
 && chown redis:redis /data
COPY images/redis-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
WORKDIR /data
VOLUME /data
EXPOSE 6379
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["redis-server"]
