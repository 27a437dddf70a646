# cloudsync service image: `docker build -t cloudsync .`
# Runs `cloudsync serve` on embedded defaults with its data directory on a volume.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# Only the service binary (the loadable extension is built separately, for devices).
RUN cargo build --release --locked -p cloudsync

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data cloudsync \
 && mkdir -p /data && chown cloudsync /data
COPY --from=build /src/target/release/cloudsync /usr/local/bin/cloudsync
# Listening on every interface, the node needs the URL it is reached at:
#   docker run -e CLOUDSYNC_PUBLIC_URL=https://sync.example.com -p 8080:8080 -v data:/data cloudsync
ENV CLOUDSYNC_LISTEN=0.0.0.0:8080 \
    CLOUDSYNC_DATA_DIR=/data \
    CLOUDSYNC_LOG_FORMAT=json
VOLUME ["/data"]
EXPOSE 8080
USER cloudsync
# Ready means the control-plane store answers and the node is not shutting down.
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s \
  CMD ["cloudsync", "check-health", "--url", "http://127.0.0.1:8080/readyz"]
# SIGTERM: finish in-flight requests, release job leases, exit.
STOPSIGNAL SIGTERM
ENTRYPOINT ["cloudsync"]
CMD ["serve"]
