# PostgreSQL from Debian's packages, for machines with no registry; stands in for the official
# postgres image in docker-compose.yml (POSTGRES_IMAGE). Same contract: POSTGRES_USER,
# POSTGRES_PASSWORD, POSTGRES_DB (and POSTGRES_INITDB_ARGS) initialise an empty PGDATA
# (/var/lib/postgresql/data) on first start; it listens on every interface with password
# (scram-sha-256) authentication; `postgres -c name=value` arguments pass through; runs as
# the postgres user. Built FROM the debootstrapped base by deploy/build-images.sh.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN mkdir -p /etc/postgresql-common \
 && echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.conf \
 && apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-15 \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/* \
 && mkdir -p /var/lib/postgresql/data /var/run/postgresql \
 && chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql
ENV PATH=/usr/lib/postgresql/15/bin:$PATH \
    PGDATA=/var/lib/postgresql/data \
    LANG=C.UTF-8
COPY images/postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
VOLUME /var/lib/postgresql/data
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["postgres"]
