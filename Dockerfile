# incidentd container image.
#
#   docker build -t incidentd .
#   docker run -p 9097:9097 -v incidentd-data:/var/lib/incidentd incidentd
#
# Without arguments it runs on /etc/incidentd/incidentd.yml, a copy of config/incidentd.yml
# (the embedded defaults: no auth, no Prometheus, no Slack) with the repository's rules in
# /etc/incidentd/rules. For a real deployment mount your own configuration and secrets over
# /etc/incidentd (see examples/incidentd.yml; its paths are relative to that directory).
# The database (./data) and drafts (./drafts) are under /var/lib/incidentd, the volume.

# --- build: the same command CI runs (`cargo build --release --locked`, .ci/run) ---------------
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked \
 && install -D -m 0755 target/release/incidentd /out/incidentd

# --- runtime ---------------------------------------------------------------------------------
FROM debian:bookworm-slim
# ca-certificates for HTTPS to Slack and Prometheus; wget for the HEALTHCHECK (smaller than curl).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates wget \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 incidentd \
 && useradd --system --uid 10001 --gid incidentd --home-dir /var/lib/incidentd \
      --shell /usr/sbin/nologin incidentd \
 && install -d -m 0750 -o incidentd -g incidentd /var/lib/incidentd
COPY --from=build /out/incidentd /usr/local/bin/incidentd
COPY config/incidentd.yml /etc/incidentd/incidentd.yml
COPY rules/ /etc/incidentd/rules/

USER incidentd:incidentd
WORKDIR /var/lib/incidentd
VOLUME ["/var/lib/incidentd"]
EXPOSE 9097
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["wget", "--quiet", "--tries=1", "--timeout=4", "--output-document=/dev/null", "http://127.0.0.1:9097/-/healthy"]
# SIGTERM (docker stop) shuts down gracefully: in-flight webhooks finish, the database closes.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/incidentd"]
CMD ["serve", "--config.file=/etc/incidentd/incidentd.yml", "--web.listen-address=0.0.0.0:9097"]
