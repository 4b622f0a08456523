# moltgate: one static binary. modernc.org/sqlite is pure Go, so no cgo.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN mkdir -p /empty-data && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X github.com/moltgate/moltgate.Version=${VERSION}" -o /moltgate ./cmd/moltgate

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /moltgate /moltgate
COPY --from=build --chown=65532:65532 /empty-data /data
COPY litestream.yml /etc/moltgate/litestream.yml
# In a container the gateway must listen beyond loopback; the data directory
# is disposable: the event log is restored from R2 at start.
ENV MOLTGATE_LISTEN=0.0.0.0:18789 \
    MOLTGATE_DATA_DIR=/data
VOLUME /data
EXPOSE 18789
ENTRYPOINT ["/moltgate"]
CMD ["serve"]
