# statewire: build on Debian 12 with Debian's packages, run in a slim stage.
#
#   docker build -t statewire .
#   docker run --rm -p 8000:8000 statewire --redis redis://HOST:6379/0
#
# The master is PID 1; `docker stop` sends SIGQUIT (graceful drain: clients
# are told "going away" and reconnect elsewhere), then SIGKILL after the
# grace period, which should exceed --drain-timeout (default 10 s).

FROM debian:12 AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      build-essential cmake pkg-config \
      libhiredis-dev libev-dev libmsgpack-dev libjansson-dev libwslay-dev \
      libhttp-parser-dev libssl-dev uthash-dev libjemalloc-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
 && cmake --build /build -j"$(nproc)" --target statewire

FROM debian:12
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libhiredis0.14 libev4 libmsgpackc2 libjansson4 libwslay1 \
      libhttp-parser2.9 libssl3 libjemalloc2 curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --no-create-home --shell /usr/sbin/nologin statewire
COPY --from=build /build/statewire /usr/local/bin/statewire
USER statewire
ENV STATEWIRE_HOST=0.0.0.0 \
    STATEWIRE_PORT=8000
EXPOSE 8000
STOPSIGNAL SIGQUIT
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8000/healthz || exit 1
ENTRYPOINT ["statewire"]
