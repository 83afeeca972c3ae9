# syntax=docker/dockerfile:1

FROM golang:1.26-bookworm AS build
WORKDIR /src
# Dependencies first, so source edits do not invalidate the module cache layer.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Static binary: the distroless "static" image has no libc.
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/raftkv ./cmd/raftkv
# distroless has no shell to mkdir/chown in, so the data directory is
# prepared here and copied in with the right owner.
RUN mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/raftkv /raftkv
# BIND_ADDR listens on all interfaces inside the container. For a multi-node
# cluster, also set ADVERTISE_ADDR to an address the other nodes can reach
# (e.g. the container's hostname on a shared network); the bind address
# 0.0.0.0 is not routable and must not be advertised to peers.
ENV BIND_ADDR=0.0.0.0 \
    RAFT_VOLUME_DIR=/data \
    HTTP_SERVER_PORT=8000 \
    RAFT_SERVER_PORT=9000
# The nonroot user (uid 65532) must be able to write the raft state; a named
# volume created from this directory inherits its ownership.
COPY --from=build --chown=65532:65532 /out/data /data
VOLUME /data
EXPOSE 8000 9000
USER nonroot:nonroot
ENTRYPOINT ["/raftkv"]
