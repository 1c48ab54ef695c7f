#!/usr/bin/env bash
# Debian's bind9 and prometheus packages install system services. Where the init system runs
# them (systemd, or sysvinit without a denying /usr/sbin/policy-rc.d), `apt-get install` starts
# them at once and again at boot: named on port 53 of every interface plus rndc on 953,
# prometheus on *:9090, prometheus-node-exporter (a Recommends) on *:9100. The lab runs its own
# instances on 127.0.0.0/8, so stop and disable these through the service manager.
# Idempotent; run it after installing the packages.
set -euo pipefail
services=(named prometheus prometheus-node-exporter)
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
  for s in "${services[@]}"; do
    if systemctl cat "$s.service" >/dev/null 2>&1; then
      systemctl disable --now "$s.service" >/dev/null 2>&1 || true
      echo "stop-system-services: $s: $(systemctl is-active "$s.service" || true)"
    fi
  done
else
  for s in "${services[@]}"; do
    [ -x "/etc/init.d/$s" ] || continue
    if "/etc/init.d/$s" status >/dev/null 2>&1; then
      "/etc/init.d/$s" stop >/dev/null 2>&1 || true
      echo "stop-system-services: stopped $s"
    fi
    update-rc.d "$s" disable >/dev/null 2>&1 || true
  done
fi
# Report (do not kill) anything still on the packages' default ports outside loopback (the
# lab itself may use these port numbers on 127.x addresses).
if command -v ss >/dev/null; then
  left="$(ss -Htlnp 'sport = :53 or sport = :953 or sport = :9090 or sport = :9100' \
          | awk '$4 !~ /^(127\.|\[::1\]:|\[::ffff:127\.)/' || true)"
  if [ -n "$left" ]; then
    echo "stop-system-services: still listening on a default port:" >&2
    echo "$left" >&2
    exit 1
  fi
fi
