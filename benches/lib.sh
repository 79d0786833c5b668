# Shared by the end-to-end benchmarks: a real sshd as the target and the release
# chaperone in front of it, in a temp dir, on loopback ports. Source it, then call
# `bench_setup` (it sets W, SSHD_PORT, CHAP_PORT, CHAP, ME, direct(), via(), cpu()).
set -euo pipefail
command -v sshd >/dev/null || [ -x /usr/sbin/sshd ] || { echo "needs openssh-server (scripts/test installs it)"; exit 1; }
cargo build --release -q
BIN=$PWD/target/release/chaperone
PIDS=()
W=""
# Stops what was started and waits for it (chaperone finishes its sessions' files on
# SIGTERM) before removing the work folder.
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    [ -z "$W" ] || rm -rf "$W"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ME=$(id -un)


bench_setup() {
W=$(mktemp -d)
# Target sshd.
ssh-keygen -q -t ed25519 -N '' -f "$W/host"
ssh-keygen -q -t ed25519 -N '' -f "$W/vendor"
ssh-keygen -q -t ed25519 -N '' -f "$W/tech"
mkdir -p "$W/config" /run/sshd
cat > "$W/config/chaperone.toml" <<TOML
[server]
data_dir = "../data"
recordings_dir = "../recordings"
# Every benchmark client logs in from 127.0.0.1, up to a thousand at once (scale.sh).
max_unauthenticated = 2000
max_unauthenticated_per_address = 2000
${WORKERS:+worker_threads = $WORKERS}
[recording]
zstd_level = ${ZSTD_LEVEL:-1}
[policy]
require_supervisor = false
require_acknowledgements = false
TOML
C="$BIN --config $W/config/chaperone.toml"
$C keys | sed -n 's/^upstream key[^:]*: //p' > "$W/authorized_keys"
cat "$W/vendor.pub" >> "$W/authorized_keys"
SSHD_PORT=$(free_port)
cat > "$W/sshd_config" <<CFG
Port $SSHD_PORT
ListenAddress 127.0.0.1
HostKey $W/host
AuthorizedKeysFile $W/authorized_keys
StrictModes no
UsePAM no
PidFile none
PermitRootLogin yes
LogLevel ERROR
MaxStartups 2000:30:4000
CFG
/usr/sbin/sshd -D -e -f "$W/sshd_config" 2>"$W/sshd.log" & PIDS+=($!)

$C client add bench --email bench@example.org >/dev/null
$C tech add ops --email ops@example.org --key "$W/tech.pub" >/dev/null
$C vendor add acme --email acme@example.org --key "$W/vendor.pub" >/dev/null
$C target add erp01 --address "127.0.0.1:$SSHD_PORT" --host-key "$(cat "$W/host.pub")" --account "$ME" --client bench >/dev/null
START=$(TZ=Europe/Berlin date -d '-1 minute' '+%Y-%m-%d %H:%M')
END=$(TZ=Europe/Berlin date -d '+11 hours' '+%Y-%m-%d %H:%M')
printf '# Benchmark\n- stream the corpus\n' > "$W/plan.md"
B=$($C booking create --vendor acme --target erp01 --account "$ME" --start "$START" --end "$END" --plan "$W/plan.md" --emergency benchmark --by ops)
$C booking approve "$B" --by ops >/dev/null

$C serve --listen 127.0.0.1:0 > "$W/serve.out" 2> "$W/serve.log" & CHAP=$!; PIDS+=($CHAP)
for _ in $(seq 1 100); do grep -q "listening on" "$W/serve.out" 2>/dev/null && break; sleep 0.1; done
CHAP_PORT=$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$W/serve.out")
OPTS=(-o BatchMode=yes -o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -i "$W/vendor")
direct() { ssh "${OPTS[@]}" -p "$SSHD_PORT" "$ME@127.0.0.1" "$@"; }
via() { ssh "${OPTS[@]}" -p "$CHAP_PORT" acme:erp01@127.0.0.1 "$@"; }
cpu() { awk '{print $14 + $15}' "/proc/$CHAP/stat"; }
TICK=$(getconf CLK_TCK)
now() { date +%s.%N; }

}
