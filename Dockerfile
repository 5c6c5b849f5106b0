# seqwatch container image: the release binary on a distroless base (glibc and libgcc only; no
# shell, no package manager, no curl), running as the distroless "nonroot" user (65532).
#
#   docker build -t seqwatch:0.1.0 .
#   docker run --rm -e SEQWATCH_ELASTICSEARCH__URL=https://es:9200 -e SEQWATCH_ES_API_KEY \
#       -v ./my-config.toml:/etc/seqwatch/config.toml:ro -v ./my-rules:/etc/seqwatch/rules:ro \
#       -p 9108:9108 seqwatch:0.1.0            # `run`, the daemon, is the default command
#
# scripts/check-deploy lints this file, builds the binary with the same cargo command, lays out
# the runtime stage's files in a root directory of their own and runs ENTRYPOINT + CMD (and the
# HEALTHCHECK command) from there against a real Elasticsearch. Keep the build command below and
# the one in scripts/check-deploy identical; the script refuses to pass when they differ.

# ---- build ------------------------------------------------------------------------------------
FROM rust:1.95.0-slim-bookworm AS build
WORKDIR /src

# Dependencies first, in a layer of their own: it is rebuilt only when Cargo.toml or Cargo.lock
# change. The stub sources are removed before the real ones arrive.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked --bin seqwatch \
    && rm -rf src

COPY src ./src
COPY mappings ./mappings
COPY rules ./rules
# `touch`: COPY keeps the files' old mtimes, which cargo could take for "older than the stub
# build" and skip compiling the real crate.
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --bin seqwatch

# ---- runtime ----------------------------------------------------------------------------------
FROM gcr.io/distroless/cc-debian12:nonroot

LABEL org.opencontainers.image.title="seqwatch" \
      org.opencontainers.image.description="Runs Elastic Security EQL detection rules against Elasticsearch without Kibana" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="0.1.0"

COPY --from=build /src/target/release/seqwatch /usr/local/bin/seqwatch
# The defaults; mount your own config.toml and rules folder over them (read-only is fine:
# seqwatch writes nothing to disk).
COPY deploy/container/config.toml /etc/seqwatch/config.toml
COPY rules/ /etc/seqwatch/rules/

# SEQWATCH_CONFIG stands for --config. SEQWATCH_DAEMON__LISTEN overrides daemon.listen from any
# mounted file: inside a container the endpoints must listen on every interface.
ENV SEQWATCH_CONFIG=/etc/seqwatch/config.toml \
    SEQWATCH_DAEMON__LISTEN=0.0.0.0:9108

USER 65532:65532
EXPOSE 9108

# No shell and no curl here: the binary asks its own /healthz (exit 0 healthy, 1 not).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/usr/local/bin/seqwatch", "healthcheck", "--timeout", "4s"]

ENTRYPOINT ["/usr/local/bin/seqwatch"]
CMD ["run"]
