# syntax=docker/dockerfile:1
#
# s3s-fs, the S3-compatible server the test suite runs in-process (pinned to the version in
# Cargo.toml's dev-dependencies), as a small image for docker-compose.yml. A bucket is a
# directory under /data; the entrypoint creates $S3_BUCKET there.

FROM rust:1-bookworm AS builder
RUN cargo install s3s-fs --version 0.14.1 --features binary --locked --root /out

FROM debian:bookworm-slim
COPY --from=builder /out/bin/s3s-fs /usr/local/bin/s3s-fs
VOLUME /data
EXPOSE 8014
ENTRYPOINT ["/bin/sh", "-c", "mkdir -p \"/data/$S3_BUCKET\" && exec s3s-fs --host 0.0.0.0 --port 8014 --access-key \"$S3_ACCESS_KEY_ID\" --secret-key \"$S3_SECRET_ACCESS_KEY\" /data"]
