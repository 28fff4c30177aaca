# syntax=docker/dockerfile:1.7
# Image of the tooljet-gitsync-operator. Build with BuildKit:
#   docker build -t ghcr.io/tooljet-gitsync/tooljet-gitsync-operator:0.1.0 .

FROM rust:1.95-bookworm AS builder
WORKDIR /src
COPY . .
# The registry/git caches and target/ live in BuildKit cache mounts, so rebuilds after a source
# change recompile only this workspace; the binary is copied out of the (unpersisted) target mount.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin tooljet-gitsync-operator \
 && install -D -m 0755 target/release/tooljet-gitsync-operator /out/tooljet-gitsync-operator

FROM debian:bookworm-slim
LABEL org.opencontainers.image.title="tooljet-gitsync-operator" \
      org.opencontainers.image.description="Kubernetes operator for ToolJet GitSync" \
      org.opencontainers.image.source="https://github.com/tooljet-gitsync/tooljet-gitsync-operator" \
      org.opencontainers.image.licenses="Apache-2.0"
# git pushes (gix has no push) and ssh transports; CA certificates for the ToolJet HTTPS API.
# coreutils' `timeout` (in the base image) bounds the ssh that gix starts for a fetch.
RUN apt-get update \
 && apt-get install -y --no-install-recommends git openssh-client ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# ssh refuses to run for a uid without a passwd entry, so the uid the chart runs as (65532) exists.
RUN groupadd --system --gid 65532 nonroot \
 && useradd --system --uid 65532 --gid 65532 --home-dir /tmp --no-create-home \
      --shell /usr/sbin/nologin nonroot \
 && install -d -o 65532 -g 65532 -m 0750 /var/lib/tooljet-gitsync
COPY --from=builder /out/tooljet-gitsync-operator /usr/local/bin/tooljet-gitsync-operator
# ssh and git want a writable HOME; the root filesystem is read-only in the chart, /tmp is an emptyDir.
ENV HOME=/tmp
USER 65532:65532
WORKDIR /tmp
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/tooljet-gitsync-operator"]
CMD ["run"]
