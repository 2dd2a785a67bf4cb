#!/usr/bin/env bash
# Build the two base images the Containerfile needs, without any image registry:
#   localhost/hubauth-builder-base:bookworm  Debian bookworm (debootstrap minbase) + gcc + the
#                                            host's Rust toolchain (rustc --print sysroot)
#   localhost/hubauth-runtime-base:bookworm  what distroless `cc` holds, trimmed from the same
#                                            rootfs: glibc, libgcc_s, CA certificates, tzdata,
#                                            /etc/passwd with `nonroot` (65532)
# The debootstrap tarball is cached in $HUBAUTH_CONTAINER_CACHE (default ~/.cache/hubauth-container);
# images that already exist are kept (delete them, or the cache, to rebuild).
set -euo pipefail

CACHE="${HUBAUTH_CONTAINER_CACHE:-$HOME/.cache/hubauth-container}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
BUILDER=localhost/hubauth-builder-base:bookworm
RUNTIME=localhost/hubauth-runtime-base:bookworm
mkdir -p "$CACHE"
log() { printf '[container-bases] %s\n' "$*" >&2; }

have_image() { podman image exists "$1"; }

ROOTFS_TAR="$CACHE/bookworm-minbase.tar"
if ! have_image "$BUILDER" || ! have_image "$RUNTIME"; then
  if [ ! -s "$ROOTFS_TAR" ]; then
    log "debootstrap bookworm (minbase + gcc, libc6-dev, ca-certificates, tzdata)"
    work="$(mktemp -d "$CACHE/debootstrap.XXXXXX")"
    nice -n 19 debootstrap --variant=minbase --include=gcc,libc6-dev,ca-certificates,tzdata \
      bookworm "$work/rootfs" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
      || { tail -20 "$CACHE/debootstrap.log" >&2; exit 1; }
    rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"*
    tar -C "$work/rootfs" --numeric-owner -cf "$ROOTFS_TAR.tmp" .
    mv "$ROOTFS_TAR.tmp" "$ROOTFS_TAR"
    rm -rf "$work"
  fi
fi

if ! have_image "$BUILDER"; then
  sysroot="$(rustc --print sysroot)"
  log "builder base: bookworm + the Rust toolchain from $sysroot"
  work="$(mktemp -d "$CACHE/builder.XXXXXX")"
  mkdir "$work/rootfs"
  tar -C "$work/rootfs" -xf "$ROOTFS_TAR"
  mkdir -p "$work/rootfs/usr/local/rust" "$work/rootfs/usr/local/cargo"
  # bin + lib are the toolchain; share/ is documentation.
  cp -a "$sysroot/bin" "$sysroot/lib" "$work/rootfs/usr/local/rust/"
  # cargo fetches crates in the build: trust what the host trusts (a TLS-intercepting egress
  # proxy's CA, say). Only the builder gets it; the runtime image keeps Debian's bundle.
  host_ca="${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}"
  if [ -s "$host_ca" ]; then cp -L "$host_ca" "$work/rootfs/etc/ssl/certs/ca-certificates.crt"; fi
  tar -C "$work/rootfs" --numeric-owner -c . | podman import -q \
    --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV CARGO_HOME=/usr/local/cargo' \
    - "$BUILDER" >/dev/null
  rm -rf "$work"
fi

if ! have_image "$RUNTIME"; then
  log "runtime base: glibc, libgcc_s, CA certificates, tzdata, a nonroot user"
  work="$(mktemp -d "$CACHE/runtime.XXXXXX")"
  mkdir "$work/full" "$work/rootfs"
  tar -C "$work/full" -xf "$ROOTFS_TAR"
  R="$work/rootfs"
  mkdir -p "$R/lib/x86_64-linux-gnu" "$R/lib64" "$R/etc/ssl/certs" "$R/usr/share" "$R/tmp" "$R/data" \
    "$R/home/nonroot" "$R/usr/local/bin"
  for lib in ld-linux-x86-64.so.2 libc.so.6 libm.so.6 libgcc_s.so.1 libpthread.so.0 libdl.so.2 \
             librt.so.1 libresolv.so.2 libnss_dns.so.2 libnss_files.so.2; do
    [ -e "$work/full/lib/x86_64-linux-gnu/$lib" ] && cp -L "$work/full/lib/x86_64-linux-gnu/$lib" "$R/lib/x86_64-linux-gnu/"
  done
  ln -s ../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 "$R/lib64/ld-linux-x86-64.so.2"
  cp -L "$work/full/etc/ssl/certs/ca-certificates.crt" "$R/etc/ssl/certs/"
  cp -a "$work/full/usr/share/zoneinfo" "$R/usr/share/"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$R/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n' >"$R/etc/group"
  printf 'hosts: files dns\n' >"$R/etc/nsswitch.conf"
  chmod 1777 "$R/tmp"
  chown 65532:65532 "$R/data" "$R/home/nonroot"
  tar -C "$R" --numeric-owner -c . | podman import -q - "$RUNTIME" >/dev/null
  rm -rf "$work"
fi
log "ready: $BUILDER, $RUNTIME"
