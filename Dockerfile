# One image for every role: `ordershop serve <role>`.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin ordershop

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/ordershop /usr/local/bin/ordershop
USER nobody
ENTRYPOINT ["ordershop"]
CMD ["serve", "gateway"]
