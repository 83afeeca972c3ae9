# syntax=docker/dockerfile:1
#
# docker build -t raftkv .
# docker run -p 8000:8000 -v raftkv-data:/data raftkv     # a single-node store
# docker compose up                                       # three nodes (docker-compose.yml)
#
# test/deploy parses this file: it runs the build stage's `go build` as written
# and starts the binary with the final stage's ENV, ENTRYPOINT, USER and
# HEALTHCHECK. Keep the go build a plain command (no $VARS, no &&) and the
# ENTRYPOINT and HEALTHCHECK in exec form (the image has no shell).

FROM golang:1.26-bookworm AS build
WORKDIR /src
# Dependencies first, so source edits do not invalidate the module cache layer.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Static binary: the distroless "static" image has no libc, so no cgo.
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/raftkv ./cmd/raftkv
# distroless has no shell to mkdir/chown in, so the data directory is
# prepared here and copied in with the right owner.
RUN mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/raftkv /raftkv
# The nonroot user (uid 65532) must be able to write the raft state; a named
# volume created from this directory inherits its ownership.
COPY --from=build --chown=65532:65532 /out/data /data
# Listen on every interface of the container. ADVERTISE_ADDR is left unset on
# purpose: with a wildcard bind it defaults to the container's host name,
# which other containers on the same network resolve. Set it when peers reach
# this node by another name (docker-compose.yml sets the service name).
ENV BIND_ADDR=0.0.0.0
ENV HTTP_SERVER_PORT=8000
ENV RAFT_SERVER_PORT=9000
ENV RAFT_VOLUME_DIR=/data
VOLUME /data
# 8000: HTTP API (clients, joins, forwarding between nodes); 9000: Raft transport.
EXPOSE 8000 9000
USER 65532:65532
# docker stop sends SIGTERM: the node hands off leadership and closes its
# stores. Give it longer than SHUTDOWN_TIMEOUT (docker stop -t / stop_grace_period).
STOPSIGNAL SIGTERM
# /ready is 200 only once the node has a leader and has caught up; the image
# has no curl, so the binary checks itself (exit 0 iff 200).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 CMD ["/raftkv", "healthcheck"]
ENTRYPOINT ["/raftkv"]
