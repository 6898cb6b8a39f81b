# backupd-sim in a container: Debian 12, the Cyrus 3.6.1 packages, and the
# binary (the scenario suite is built into it).
#
#   docker build -t backupd-sim .
#   docker run --rm backupd-sim                      # the bundled suite, 2 at a time
#   docker run --rm backupd-sim run --list           # what it would run
#   docker run --rm -v "$PWD/my:/work/my" backupd-sim run my/first.toml
#
# The harness runs as root inside the container: Cyrus's master starts as
# root and drops to the `cyrus` user the packages create. Everything listens
# on 127.0.0.1 inside the container; no port needs publishing.
#
# Not built or run on the machine this was written on: it has the docker
# client but no engine (see docs/ci.md).

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked && strip target/release/backupd-sim

FROM debian:12-slim
# No service may start during the install (the packages' postinst would start
# cyrus-imapd on the standard ports); the harness starts its own instances.
RUN printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d \
    && apt-get update \
    && apt-get install -y --no-install-recommends cyrus-common cyrus-imapd cyrus-replication sqlite3 \
    && rm -rf /var/lib/apt/lists/* /usr/sbin/policy-rc.d
COPY --from=build /src/target/release/backupd-sim /usr/local/bin/backupd-sim
WORKDIR /work
ENTRYPOINT ["backupd-sim"]
CMD ["run", "-j", "2"]
