# Build once, run as `coffer api`, `coffer worker` or `coffer serve`.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin coffer \
 && cp target/release/coffer /coffer

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/coffer --create-home coffer
COPY --from=build /coffer /usr/local/bin/coffer
USER coffer
WORKDIR /var/lib/coffer
# Listening on every interface needs COFFER_PUBLIC_URL (the address people reach Coffer at):
# without it the service refuses to start rather than mail links nobody can open.
ENV COFFER_DATA_DIR=/var/lib/coffer \
    COFFER_BIND=0.0.0.0:8080
EXPOSE 8080
# bash, not sh: /dev/tcp is a bash feature (Debian's sh is dash). Workers are probed on their
# COFFER_METRICS_BIND port instead (see docker-compose.yml).
HEALTHCHECK --interval=10s --timeout=3s CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && grep -q ok <&3"]
ENTRYPOINT ["coffer"]
CMD ["serve"]
