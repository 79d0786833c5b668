#!/usr/bin/env bash
# Scale: N concurrent recorded sessions through chaperone (interactive-ish: a pty each,
# a line of output every two seconds), chaperone's RSS in all and per session; then 20
# sessions streaming 101 MB each at once, and how evenly the bandwidth was shared while
# all were streaming.
# Usage: benches/scale.sh [N] (default 200); SHOW=1 also prints each stream's rate in the
# window. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200}
source benches/lib.sh
bench_setup
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$CHAP/status"; }
# Sessions relaying now: started (upstream connected, shell running) and not ended. A
# folder alone is not enough: under this load a session may still be connecting upstream.
live() { echo $(( $(grep -c "session started" "$W/serve.log") - $(grep -c "session ended" "$W/serve.log") )); }
# Clients still running: a login that did not get through (the target's sshd, overloaded,
# gave up on the handshake) ends its client, and is not waited for.
CLIENTS=()
clients() { local n=0 p; for p in "${CLIENTS[@]}"; do kill -0 "$p" 2>/dev/null && n=$((n + 1)); done; echo "$n"; }

base=$(rss_kb)
for i in $(seq 1 "$N"); do
    ssh "${OPTS[@]}" -tt -p "$CHAP_PORT" acme:erp01@127.0.0.1 'while sleep 2; do date; done' </dev/null >/dev/null 2>&1 &
    PIDS+=($!); CLIENTS+=($!)
    # In batches of 25, each let in before the next: sshd on two cores cannot fork and
    # authenticate hundreds of logins at once (chaperone refuses a session whose target
    # does not answer within 10 s, and a burst made the target that slow).
    if (( i % 25 == 0 )); then
        for _ in $(seq 1 120); do [ "$(live)" -ge "$(clients)" ] && break; sleep 0.5; done
    fi
done
for _ in $(seq 1 600); do [ "$(live)" -ge "$(clients)" ] && break; sleep 1; done
sleep 6
loaded=$(rss_kb)
echo "$(live) concurrent recorded sessions: chaperone RSS $((loaded / 1024)) MiB (idle $((base / 1024)) MiB), $(( (loaded - base) / $(live) )) KiB per session"
echo "extrapolated to 1,000 sessions: $(( (base + (loaded - base) * 1000 / $(live)) / 1024 )) MiB (target < 2048 MiB)"
for p in "${CLIENTS[@]}"; do kill "$p" 2>/dev/null || true; done
# The target's sshd takes a while to tear a thousand sessions down; new logins meanwhile
# would time out.
for _ in $(seq 1 300); do [ "$(live)" -le 0 ] && break; sleep 1; done
sleep 5

head -c 75000000 /dev/urandom | base64 > "$W/stream"
# Each stream's output lands in memory (tmpfs); fairness is measured over a window in which
# all twenty are streaming, from what each received in it, so that staggered logins and
# the last stream running alone at the end do not count.
OUT=$(mktemp -d -p /dev/shm)
trap 'cleanup; rm -rf "$OUT"' EXIT
# The twenty log in first, then start together: each waits for the file `go` (the target
# is this machine), so that logins still under way do not skew the window.
for i in $(seq 1 20); do
    ( if via "while [ ! -e $W/go ]; do sleep 0.05; done; cat $W/stream" > "$OUT/$i"; then date +%s.%N; else echo failed; fi > "$W/t.$i" ) &
done
for _ in $(seq 1 600); do [ "$(live)" -ge 20 ] && break; sleep 0.1; done
go=$(date +%s.%N); touch "$W/go"
sizes() { for i in $(seq 1 20); do stat -c %s "$OUT/$i"; done; }
all_streaming() { for i in $(seq 1 20); do [ "$(stat -c %s "$OUT/$i")" -ge 8000000 ] || grep -qs failed "$W/t.$i" || return 1; done; }
for _ in $(seq 1 600); do all_streaming 2>/dev/null && break; sleep 0.1; done
before=$(sizes); sleep 2; after=$(sizes); [ -z "${SHOW:-}" ] || paste <(echo "$before") <(echo "$after") | awk "{printf \"%.1f \", (\$2-\$1)/2e6}"
finished=$(cat "$W"/t.* 2>/dev/null | grep -vc failed || true)
window=$(paste <(echo "$before") <(echo "$after") | awk '$2 == 0 { next } {d = $2 - $1; if (min == "" || d < min) min = d; if (d > max) max = d; sum += d}
    END { printf "in a 2 s window with all 20 streaming: slowest %.1f, fastest %.1f MB/s, fairness %.2f", min/2e6, max/2e6, (max > 0) ? min/max : 0 }')
[ "$finished" = 0 ] || window="$window (not valid: $finished streams ended inside the window)"
wait_all() { for i in $(seq 1 20); do while [ ! -s "$W/t.$i" ]; do sleep 0.2; done; done; }
wait_all
cat "$W"/t.* | awk -v size="$(stat -c %s "$W/stream")" -v window="$window" -v start="$go" '
    $1 == "failed" { failed++; next }
    { d = $1 - start; r = size / d / 1e6; sum += r; if ($1 > end) end = $1; if (lo == "" || r < lo) lo = r; if (r > hi) hi = r }
    END { n = NR - failed; printf "20 streams of %.0f MB at once%s: %.0f MB/s in all, %.1f MB/s each on average; over each whole stream slowest %.1f, fastest %.1f MB/s (%.2f); %s\n", size/1e6, failed ? sprintf(" (%d could not log in)", failed) : "", n*size/(end-start)/1e6, sum/n, lo, hi, lo/hi, window }'
