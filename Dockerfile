# Build: a static binary, and the shipped configuration checked, so a bad config fails the build.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/persona-router ./cmd/persona-router
RUN /out/persona-router check --sandbox --rules rules --personas personas

# Run: no shell, no package manager, a non-root user.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/persona-router /persona-router
COPY --chown=nonroot:nonroot rules /etc/persona-router/rules
COPY --chown=nonroot:nonroot personas /etc/persona-router/personas
ENV RULES_DIR=/etc/persona-router/rules PERSONAS_DIR=/etc/persona-router/personas ADDR=:8080
USER nonroot:nonroot
EXPOSE 8080
ENTRYPOINT ["/persona-router"]
