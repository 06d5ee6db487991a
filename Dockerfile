# For those who build with Docker. `make image` builds the same image
# without a Docker engine (hack/image).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=v0.0.0-dev
ARG REVISION=
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/porterlb/porter/pkg/version.gitVersion=${VERSION} -X github.com/porterlb/porter/pkg/version.gitCommit=${REVISION}" \
      -o /out/ ./cmd/porter-speaker ./cmd/porter-controller

FROM scratch
ARG VERSION=v0.0.0-dev
ARG REVISION=
LABEL org.opencontainers.image.title="porter-speaker" \
      org.opencontainers.image.source="https://github.com/porterlb/porter" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build /out/porter-speaker /out/porter-controller /
# Not root by default; the DaemonSet runs the speaker as root with only
# NET_RAW, the controller Deployment runs /porter-controller as this user.
USER 65532:65532
ENTRYPOINT ["/porter-speaker"]
