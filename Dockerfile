# syntax=docker/dockerfile:1
# The sentry-kubernetes agent: built with the locked dependencies, shipped as one static-ish
# binary (glibc only; rustls, no OpenSSL) in distroless, running as a numeric non-root user.

FROM rust:1.95.0-slim-bookworm AS build
WORKDIR /src
# The commit --version prints (the build context has no .git): --build-arg GIT_COMMIT=$(git rev-parse --short=12 HEAD)
ARG GIT_COMMIT=unknown
ENV SENTRY_K8S_BUILD_COMMIT=${GIT_COMMIT}
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY benches ./benches
COPY tests/harness/Cargo.toml ./tests/harness/Cargo.toml
COPY tests/harness/src ./tests/harness/src
COPY tests/harness/benches ./tests/harness/benches
# CI runs exactly this command (tests/e2e/run.sh reads it from here).
RUN cargo build --release --locked --bin sentry-kubernetes

FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="sentry-kubernetes" \
      org.opencontainers.image.description="Reports Kubernetes Warning events to Sentry, grouped per workload, each occurrence exactly once" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.source="https://github.com/sentry-kubernetes/sentry-kubernetes-rs"
COPY --from=build /src/target/release/sentry-kubernetes /usr/local/bin/sentry-kubernetes
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/sentry-kubernetes"]
