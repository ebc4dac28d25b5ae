#!/usr/bin/env bash
# Two center peers, each a Debian 12 container booted by systemd-nspawn with
# systemd as PID 1, in their own network namespaces. Installs the units the way
# docs/admin/install.md says, starts centerd under systemd (Type=notify,
# sandbox and all), joins the two peers with centerctl, and sends one event
# from a service on A to a service on B.
#
#   sudo scripts/system-test.sh            (needs root; the repo built: npm run build)
#
# Exit 0: passed. Exit 77: skipped (no root, no debootstrap mirror, …). Else failed.
# The rootfs is cached in /var/cache/center-test/ (about 40 s to build once).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${CENTER_TEST_CACHE:-/var/cache/center-test}
ROOTFS=$CACHE/rootfs-bookworm
MIRROR=${CENTER_TEST_MIRROR:-http://deb.debian.org/debian}
P=cst$$                      # name prefix for namespaces, unique per run
WORK=$(mktemp -d /tmp/center-system-XXXXXX)
NODE=$(command -v node)
CTL="/usr/bin/node /usr/lib/center/dist/src/bin/centerctl.js"
SETUP="/usr/bin/node /usr/lib/center/dist/src/bin/centerctl.js"
declare -A PID1 NSPAWN

log () { printf '\n== %s\n' "$*"; }
skip () { echo "SKIP: $*"; exit 77; }

[ "$(id -u)" = 0 ] || skip "needs root (network namespaces, systemd-nspawn)"
[ -f "$REPO/dist/src/bin/centerd.js" ] || { echo "build first: npm run build"; exit 1; }
[ -d "$REPO/node_modules" ] || { echo "install first: npm ci"; exit 1; }

ensure_tools () {
  command -v debootstrap >/dev/null && command -v systemd-nspawn >/dev/null && return
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap systemd-container >/dev/null 2>&1 \
    || skip "debootstrap/systemd-nspawn are missing and could not be installed"
}

ensure_rootfs () {
  [ -x "$ROOTFS/lib/systemd/systemd" ] && return
  log "building $ROOTFS (debootstrap bookworm minbase + systemd; once)"
  mkdir -p "$CACHE"
  rm -rf "$ROOTFS.partial"
  if ! debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,iproute2,procps bookworm "$ROOTFS.partial" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1; then
    rm -rf "$ROOTFS.partial"
    grep -qiE 'Failed getting release|Temporary failure|resolve|connect' "$CACHE/debootstrap.log" && skip "debootstrap cannot reach $MIRROR (see $CACHE/debootstrap.log)"
    echo "debootstrap failed; see $CACHE/debootstrap.log"; exit 1
  fi
  mv "$ROOTFS.partial" "$ROOTFS"
}

netns_up () {
  ip netns add "$P-sw"
  ip -n "$P-sw" link set lo up
  ip -n "$P-sw" link add br0 type bridge
  ip -n "$P-sw" link set br0 up
  local i=0 h
  for h in a b; do
    i=$((i + 1))
    ip netns add "$P-$h"
    ip -n "$P-$h" link set lo up
    ip link add eth0 netns "$P-$h" type veth peer name "sw-$h" netns "$P-sw"
    ip -n "$P-sw" link set dev "sw-$h" master br0
    ip -n "$P-sw" link set dev "sw-$h" up
    ip -n "$P-$h" addr add "10.78.0.$i/24" dev eth0
    ip -n "$P-$h" link set eth0 up
  done
}

# boot one container: overlay over the cached rootfs. The upper layer lives in
# $WORK (thrown away at the end), so a reboot of the container keeps its state.
boot () {
  local h=$1
  local w=$WORK/$h
  mkdir -p "$w/upper" "$w/work" "$w/root"
  unshare --mount --propagation private -- sh -c '
    set -e; L=$1; W=$2; shift 2
    mkdir -p /run/systemd/nspawn && mount -t tmpfs -o mode=755 cst-nspawn /run/systemd/nspawn
    mount -t overlay cst-peer-root -o lowerdir="$L",upperdir="$W/upper",workdir="$W/work" "$W/root"
    exec systemd-nspawn "$@"' sh "$ROOTFS" "$w" -D "$w/root" --register=no --keep-unit --console=pipe \
      --hostname="$h" --network-namespace-path="/run/netns/$P-$h" \
      --bind-ro="$REPO:/usr/lib/center" --bind-ro="$NODE:/usr/bin/node" -b >>"$WORK/$h.log" 2>&1 &
  NSPAWN[$h]=$!
}

wait_booted () {
  local h=$1 i=0 c1
  while :; do
    i=$((i + 1)); [ $i -gt 600 ] && { echo "container $h did not boot"; tail -30 "$WORK/$h.log"; return 1; }
    c1=$(pgrep -P "${NSPAWN[$h]}" 2>/dev/null | head -1 || true)
    [ -n "$c1" ] && c1=$(pgrep -P "$c1" 2>/dev/null | head -1 || true)   # unshare -> nspawn -> PID 1
    if [ -n "$c1" ] && [ -S "/proc/$c1/root/run/systemd/private" ]; then
      st=$(nsenter -t "$c1" -m -u -i -n -p systemctl is-system-running --wait 2>/dev/null || true)
      case "$st" in running|degraded) PID1[$h]=$c1; echo "$h: PID 1 is host pid $c1, $st"; return 0 ;; esac
    fi
    sleep 0.1
  done
}

inc () { local h=$1; shift; nsenter -t "${PID1[$h]}" -m -u -i -n -p -- env -u NODE_EXTRA_CA_CERTS "$@"; }
# restart centerd on host $1; if that fails, show why (CI keeps only this script's output)
restart_centerd () {
  inc "$1" systemctl restart centerd && return 0
  echo "systemctl restart centerd failed on $1:"
  inc "$1" systemctl show -p Result,ExecMainStatus,ExecMainCode,NRestarts centerd | tr '\n' ' '; echo
  inc "$1" journalctl -u centerd -o cat --no-pager -n 40 || true
  return 1
}

cleanup () {
  set +e
  for h in a b; do
    [ -n "${PID1[$h]:-}" ] && inc "$h" systemctl poweroff >/dev/null 2>&1
  done
  sleep 1
  for h in a b; do
    [ -n "${NSPAWN[$h]:-}" ] && kill -TERM "${NSPAWN[$h]}" 2>/dev/null
  done
  sleep 0.5
  for n in a b sw; do
    for pid in $(ip netns pids "$P-$n" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
    ip netns del "$P-$n" 2>/dev/null
  done
  rmdir /run/systemd/nspawn 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

# install a peer as docs/admin/install.md says (PGlite: no PostgreSQL in the image)
install_peer () {
  local h=$1 ip=$2
  inc "$h" $SETUP setup units
  inc "$h" $SETUP setup center
  inc "$h" sh -c "sed -e 's/^domain = .*/domain = \"$h.center.test\"/' -e 's/^admin = .*/admin = \"alice\"/' \
    -e 's/^listen = .*/listen = \"$ip:7700\"/' -e 's/^url = /# url = /' /etc/center/center.toml.example > /etc/center/center.toml && chmod 0640 /etc/center/center.toml"
  inc "$h" $CTL init --domain "$h.center.test" --admin alice >/dev/null
  inc "$h" $SETUP setup units >/dev/null
  inc "$h" useradd -m -s /bin/sh alice
  inc "$h" systemctl enable --now centerd
  inc "$h" systemctl is-active centerd
  inc "$h" systemctl show -p Type,NotifyAccess,WatchdogUSec,StatusText,User,MainPID centerd
}

ctl_json () { local h=$1; shift; inc "$h" $CTL --json "$@"; }
field () { node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const v=JSON.parse(s)[process.argv[1]];process.stdout.write(typeof v==="string"?v:JSON.stringify(v))})' "$1"; }

ensure_tools
ensure_rootfs
log "network namespaces $P-a (10.78.0.1) and $P-b (10.78.0.2)"
netns_up
log "booting two containers"
t0=$(date +%s.%N)
boot a; boot b
wait_booted a; wait_booted b
echo "booted in $(echo "$(date +%s.%N) - $t0" | bc 2>/dev/null || echo '?') s"

log "installing peer a"; install_peer a 10.78.0.1
log "installing peer b"; install_peer b 10.78.0.2

log "sandbox: what centerd can write"
inc a sh -c 'pid=$(systemctl show -p MainPID --value centerd); grep -E "^(Uid|CapEff|CapBnd|CapAmb|NoNewPrivs)" /proc/$pid/status'

log "a invites alice; b joins a"
INV=$(ctl_json a peer invite alice)
FILE=$(echo "$INV" | field secretFile); A_UUID=$(echo "$INV" | field uuid)
echo "$INV" | field publicKey | inc b sh -c 'cat > /root/a.asc'
SECRET=$(inc a cat "/home/alice/$FILE")
inc a stat -c '%U %a %n' "/home/alice/$FILE"
ctl_json b peer join --peer 10.78.0.1:7700 --uuid "$A_UUID" --key /root/a.asc --admin alice --secret-file "$FILE" --secret "$SECRET" >/dev/null
B_UUID=$(ctl_json b whoami | field uuid)
for i in $(seq 1 100); do ctl_json a peer requests | grep -q "$B_UUID" && break; sleep 0.1; done
ctl_json a peer approve "$B_UUID" >/dev/null
for i in $(seq 1 200); do
  ctl_json a peer list | grep -q '"connection": "open"' && ctl_json b peer list | grep -q '"connection": "open"' && break
  sleep 0.1
done
inc a $CTL peer list
inc b $CTL peer list

log "a service on a sends one event to a service on b"
TX=$(ctl_json a service add probe --send probe.hello | field token)
RX=$(ctl_json b service add probe --receive probe.hello | field token)
inc b timeout 30 /usr/bin/node /usr/lib/center/dist/test/system/_probe.js recv /run/center/services.sock "$RX" probe.hello >"$WORK/recv.out" &
RECV=$!
sleep 1
inc a /usr/bin/node /usr/lib/center/dist/test/system/_probe.js send /run/center/services.sock "$TX" probe.hello "$B_UUID"
wait $RECV
cat "$WORK/recv.out"
grep -q '"from a container"' "$WORK/recv.out"

PROBE="/usr/bin/node /usr/lib/center/dist/test/system/_probe.js"
sendn () { inc a $PROBE sendn /run/center/services.sock "$TX" probe.hello "$B_UUID" "$1" "$2"; }
wait_active () {
  local h=$1 i
  for i in $(seq 1 300); do [ "$(inc "$h" systemctl is-active centerd 2>/dev/null)" = active ] && return 0; sleep 0.1; done
  echo "centerd on $h is not active: $(inc "$h" systemctl is-active centerd)"; return 1
}

log "restart: events sent while b's centerd restarts, and queued on a across a's restart, all arrive"
sendn before 5
restart_centerd b & RESTART=$!
sendn during-b-restart 10
wait $RESTART
wait_active b
echo "b: $(inc b systemctl is-active centerd) after systemctl restart"
sendn before-a-restart 5
restart_centerd a
wait_active a
echo "a: $(inc a systemctl is-active centerd) after systemctl restart"

log "reboot: container b reboots (systemd-nspawn exits 133), boots again from the same disk; events sent meanwhile arrive"
inc b systemctl reboot || true
wait "${NSPAWN[b]}" || echo "b's systemd-nspawn exited with $? (133 = reboot)"
PID1[b]=
sendn while-b-reboots 5
boot b; wait_booted b
wait_active b
echo "b: centerd $(inc b systemctl is-active centerd) after reboot (enabled: $(inc b systemctl is-enabled centerd))"
inc b timeout 120 $PROBE recvn /run/center/services.sock "$RX" probe.hello 25 >"$WORK/recvn.out" || { echo "not every event arrived:"; cat "$WORK/recvn.out"; exit 1; }
for t in "before 5" "during-b-restart 10" "before-a-restart 5" "while-b-reboots 5"; do
  set -- $t
  n=$(grep -c "^$1 " "$WORK/recvn.out" || true)
  echo "$1: $n of $2 arrived"
  [ "$n" = "$2" ] || { echo "lost events tagged $1"; exit 1; }
done
for i in $(seq 1 200); do ctl_json a peer list | grep -q '"connection": "open"' && break; sleep 0.1; done
ctl_json a peer list | grep -q '"connection": "open"' || { echo "a and b did not reconnect"; exit 1; }
echo "RESTART-REBOOT: nothing lost (25 of 25), peers connected again"

log "doctor on a"
inc a $SETUP doctor || true

log "stop: SIGTERM, clean exit well inside TimeoutStopSec"
s=$(date +%s%N); inc b systemctl stop centerd; e=$(date +%s%N)
echo "stopped in $(( (e - s) / 1000000 )) ms; $(inc b systemctl show -p Result,ExecMainStatus centerd | tr '\n' ' ')"
inc b systemctl show -p Result --value centerd | grep -qx success

log "watchdog: pings keep centerd alive; a frozen event loop gets it restarted"
inc a mkdir -p /etc/systemd/system/centerd.service.d
inc a sh -c 'printf "[Service]\nWatchdogSec=2s\n" > /etc/systemd/system/centerd.service.d/watchdog-test.conf'
inc a systemctl daemon-reload
restart_centerd a
sleep 5
inc a systemctl show -p ActiveState,NRestarts,WatchdogUSec centerd | tr '\n' ' '; echo
[ "$(inc a systemctl show -p NRestarts --value centerd)" = 0 ] || { echo "restarted although it pinged"; exit 1; }
inc a sh -c 'kill -STOP $(systemctl show -p MainPID --value centerd)'
for i in $(seq 1 100); do [ "$(inc a systemctl show -p NRestarts --value centerd)" = 1 ] && break; sleep 0.1; done
inc a systemctl show -p ActiveState,NRestarts,Result centerd | tr '\n' ' '; echo
[ "$(inc a systemctl show -p NRestarts --value centerd)" = 1 ] || { echo "a frozen centerd was not restarted by the watchdog"; exit 1; }
inc a journalctl -u centerd -o cat --no-pager | grep -i watchdog | head -3 || true

echo; echo "PASS: two peers under systemd, joined, event delivered, restart and reboot lose nothing"
