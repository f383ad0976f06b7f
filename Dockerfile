# Herald's image: one binary, the role as the command (`serve`, `api`, `relay`, `scheduler`,
# `sender`, `migrate`). Build: docker build -t herald .
#
# The build stage runs the same `cargo build --release --locked` that the test command's build
# uses; the runtime stage is Debian slim with the binary alone, run as an unprivileged user.
FROM rust:1.94-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p herald \
    && strip target/release/herald

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates tini \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/herald --create-home herald
COPY --from=build /src/target/release/herald /usr/local/bin/herald
USER herald
WORKDIR /var/lib/herald
# Listen on every interface inside the container; JSON logs for the collector.
ENV HERALD_DATA_DIR=/var/lib/herald \
    HERALD_HTTP_ADDR=0.0.0.0:8080 \
    HERALD_GRPC_ADDR=0.0.0.0:50051 \
    HERALD_ADMIN_ADDR=0.0.0.0:9090 \
    HERALD_LOG_FORMAT=json
EXPOSE 8080 50051 9090
ENTRYPOINT ["/usr/bin/tini", "--", "herald"]
CMD ["serve"]
