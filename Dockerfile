# moltgate: one static Go binary on Debian, with the Chromium and ffmpeg that
# browser automation uses. The same image runs on Cloudflare Containers
# (wrangler.toml) and under `docker run` (docs/self-hosting.md).

# Build: modernc.org/sqlite is pure Go, so the binary needs no cgo and no libc.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# VERSION (docker build --build-arg VERSION=1.2.3) replaces moltgate.Version;
# without it the version in the source stays. nomsgpack leaves out gin's
# MessagePack support (github.com/ugorji/go/codec, 6.5 MB), which moltgate
# does not use. scripts/test-deploy.sh runs this go build line itself, so
# keep it on one line.
ARG VERSION=
RUN CGO_ENABLED=0 go build -trimpath -tags nomsgpack -ldflags "-s -w ${VERSION:+-X github.com/moltgate/moltgate.Version=${VERSION}}" -o /out/moltgate ./cmd/moltgate

FROM debian:bookworm-slim
# chromium and ffmpeg: browser automation (screenshots, video);
# fonts-liberation: pages render with metric-compatible fonts;
# ca-certificates: TLS to R2, model providers and chat platforms;
# tini: PID 1 that forwards SIGTERM and reaps Chromium's orphaned children.
# Versions are not pinned: bookworm's security updates replace them.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends chromium ffmpeg ca-certificates fonts-liberation tini \
    && rm -rf /var/lib/apt/lists/*
# A user of its own, and a data directory it owns (a named volume mounted on
# /data takes this ownership). On Cloudflare the directory is disposable:
# the event log is restored from R2 at start.
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/moltgate --shell /usr/sbin/nologin moltgate \
    && install -d -o moltgate -g moltgate -m 0700 /data
COPY --from=build /out/moltgate /usr/local/bin/moltgate
COPY litestream.yml /etc/moltgate/litestream.yml
USER 10001:10001
WORKDIR /home/moltgate
# In a container the gateway must listen beyond loopback (8080 is the port the
# Worker's Container class connects to).
ENV MOLTGATE_LISTEN=0.0.0.0:8080 \
    MOLTGATE_DATA_DIR=/data
EXPOSE 8080
# /readyz answers 200 once the log is restored and the read models rebuilt;
# a restore from R2 can take a while, hence the start period.
HEALTHCHECK --interval=30s --timeout=5s --start-period=2m --retries=3 CMD ["/usr/local/bin/moltgate", "healthcheck"]
# The gateway's graceful stop: finish requests, final replica sync, exit 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/moltgate"]
CMD ["serve"]
