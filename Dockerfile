# syntax=docker/dockerfile:1
# The sentry-kubernetes agent: built with the locked dependencies in the size-tuned `dist`
# profile, one fully static binary (glibc linked in; rustls, no OpenSSL) shipped alone on
# distroless/static (CA certificates, nsswitch.conf, the nonroot user; no libc, no shell),
# running as a numeric non-root user.

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
# The dist profile (Cargo.toml), linked statically against glibc (+crt-static; the explicit
# --target keeps build scripts and proc-macros dynamic), so the runtime image needs no libc.
# Host names still resolve: the "files" and "dns" sources of the image's nsswitch.conf are
# built into glibc's libc.a (2.36 in bookworm), no NSS module is loaded. Random bytes come
# from /dev/urandom, which every container runtime provides: getrandom 0.3+ looks up
# getrandom(2) with dlsym, which finds nothing in a static binary.
# amd64 only; an arm64 build would name aarch64-unknown-linux-gnu here and in the COPY below.
# CI runs exactly this command (tests/e2e/run.sh reads it from here) and the end-to-end tests
# run the binary it makes, from the path the COPY below takes.
RUN cargo build --profile dist --locked --target x86_64-unknown-linux-gnu --config 'target.x86_64-unknown-linux-gnu.rustflags = ["-C", "target-feature=+crt-static"]' --bin sentry-kubernetes

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="sentry-kubernetes" \
      org.opencontainers.image.description="Reports Kubernetes Warning events to Sentry, grouped per workload, each occurrence exactly once" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.source="https://github.com/sentry-kubernetes/sentry-kubernetes-rs"
COPY --from=build /src/target/x86_64-unknown-linux-gnu/dist/sentry-kubernetes /usr/local/bin/sentry-kubernetes
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/sentry-kubernetes"]
