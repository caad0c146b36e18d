# syntax=docker/dockerfile:1
# One image for every role: `ordershop serve <role>` (docker-compose.yml runs one role per container).
#
# Dependencies are cached with BuildKit cache mounts rather than cargo-chef: cargo's registry
# and the target directory persist between builds on the same builder, so a code change
# recompiles only the workspace crates it touches while the ~300 dependencies stay compiled.
# Unlike cargo-chef there is no extra tool to build into the image and no planner/cook stages
# to keep in step with the workspace (domain, redis, eventstore, readmodel, telemetry, projections,
# operations, services, rigs, testkit and the root package), and unchanged workspace crates are reused too, not only dependencies.
# The trade-off: the cache belongs to the local builder, not to an image layer, so a fresh
# builder (a CI runner without a persistent builder, say) compiles everything once; BuildKit
# is required, which `docker compose` v2 and Docker Engine 23+ use by default.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# target/ is a cache mount, gone after this step: the binary is copied out of it in the same
# RUN. sharing=locked because the compose services all build this image, possibly at once.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin ordershop \
 && cp target/release/ordershop /usr/local/bin/ordershop

# The healthcheck is `ordershop health`, so the runtime needs no curl: CA certificates only.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /usr/local/bin/ordershop /usr/local/bin/ordershop
USER nobody
ENTRYPOINT ["ordershop"]
CMD ["serve", "gateway"]
