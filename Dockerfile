# syntax=docker/dockerfile:1
# contractd's deployable image: both binaries, statically linked, on a
# distroless base (no shell, no package manager, no Go toolchain), run as a
# non-root user. Health checks use `contractd healthcheck` and
# `wechatpay-sim healthcheck`, since the image has no curl.

# --- build stage: the Go toolchain, discarded afterwards
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/ ./cmd/contractd ./cmd/wechatpay-sim \
 && mkdir -p /out/keys

# --- final stage: the binaries only
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/contractd /out/wechatpay-sim /usr/local/bin/
# Where the simulator profile of docker-compose.yml shares its key set.
COPY --from=build --chown=65532:65532 /out/keys /keys
USER 65532:65532
ENV CONTRACTD_HTTP_ADDR=0.0.0.0:8080
EXPOSE 8080
HEALTHCHECK --interval=5s --timeout=5s --retries=12 CMD ["/usr/local/bin/contractd", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/contractd"]
CMD ["serve"]
