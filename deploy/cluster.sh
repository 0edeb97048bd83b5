#!/usr/bin/env bash
# txchat processes sharing one Redis, behind nginx, all on this machine (docs/cluster.md).
# Debian's redis-server and nginx; txchat installed by deploy/install.sh.
#
#   bash deploy/cluster.sh start     # then open http://127.0.0.1:8080/
#   bash deploy/cluster.sh stop      # stops nginx, every txchat process and Redis
#
# Run files (pid files, logs, nginx's configuration and temporary files) go to $TXCHAT_RUN, by
# default /tmp/txchat-cluster, never into the checkout. Ports: FRONT_PORT (8080), NODE_PORTS
# ("8081 8082": one txchat process each), REDIS_PORT (6379); everything listens on 127.0.0.1
# only. TXCHAT_VENV names the virtual environment whose twistd runs (.venv).
set -euo pipefail
cd "$(dirname "$0")/.."
run="${TXCHAT_RUN:-/tmp/txchat-cluster}"
twistd="${TXCHAT_VENV:-$PWD/.venv}/bin/twistd"
front="${FRONT_PORT:-8080}"
read -r -a nodes <<< "${NODE_PORTS:-8081 8082}"
redisPort="${REDIS_PORT:-6379}"

say() { echo "txchat cluster: $*" >&2; }

alive() {  # the process a pid file names is running
    [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

nginxConfig() {
    # The sample configuration with this run's ports: each upstream gets one server line per
    # node, in place of the sample's.
    awk -v front="$front" -v nodes="${nodes[*]}" '
        /^[[:space:]]*upstream / { inUpstream = 1; written = 0 }
        inUpstream && /^[[:space:]]*server 127\.0\.0\.1:[0-9]+;/ {
            if (!written) {
                indent = $0; sub(/server.*/, "", indent)
                count = split(nodes, ports, " ")
                for (i = 1; i <= count; i++) print indent "server 127.0.0.1:" ports[i] ";"
                written = 1
            }
            next
        }
        inUpstream && /^[[:space:]]*}/ { inUpstream = 0 }
        { sub(/listen 127\.0\.0\.1:8080;/, "listen 127.0.0.1:" front ";"); print }
    ' deploy/nginx-txchat.conf
}

start() {
    if [ "${#nodes[@]}" -eq 0 ]; then
        say "NODE_PORTS names no port"; exit 2
    fi
    for pidfile in "$run/nginx/nginx.pid" "$run/redis.pid" "$run"/node*.pid; do
        if alive "$pidfile"; then
            say "already running ($pidfile names process $(cat "$pidfile")): bash deploy/cluster.sh stop first"
            exit 1
        fi
    done
    mkdir -p "$run/nginx/tmp"
    rm -f "$run/nginx/nginx.pid" "$run/redis.pid" "$run"/node*.pid  # (stale: nothing runs)
    trap 'say "start failed: stopping what started"; stop >/dev/null; exit 1' ERR

    # Daemonised, redis-server returns before it binds; it writes its pid file only once it
    # listens, and exits if it cannot.
    redis-server --bind 127.0.0.1 --port "$redisPort" --save '' --appendonly no --daemonize yes \
        --pidfile "$run/redis.pid" --logfile "$run/redis.log" --dir "$run"
    for _ in $(seq 50); do
        alive "$run/redis.pid" && break
        sleep 0.1
    done
    if ! alive "$run/redis.pid"; then
        say "Redis did not start on 127.0.0.1:$redisPort: $(tail -n 1 "$run/redis.log" 2>/dev/null)"
        exit 1
    fi

    for i in "${!nodes[@]}"; do
        # nginx is the only client these processes see: --trusted-proxy makes the per-address
        # limit and the logs use the visitor's address from X-Forwarded-For.
        "$twistd" --pidfile="$run/node$i.pid" --logfile="$run/node$i.log" txchat \
            --port "${nodes[$i]}" --interface 127.0.0.1 --redis "redis://127.0.0.1:$redisPort" \
            --trusted-proxy 127.0.0.1
    done
    nginxConfig > "$run/nginx/nginx.conf"
    nginx -e stderr -c "$run/nginx/nginx.conf" -p "$run/nginx/"
    trap - ERR
    echo "txchat cluster: open http://127.0.0.1:$front/ (${#nodes[@]} nodes on ports ${nodes[*]}; run files in $run)"
}

stop() {
    alive "$run/nginx/nginx.pid" && nginx -e stderr -s quit -c "$run/nginx/nginx.conf" -p "$run/nginx/" || true
    for pidfile in "$run"/node*.pid "$run/redis.pid"; do
        alive "$pidfile" && kill "$(cat "$pidfile")" 2>/dev/null || true
    done
    echo "txchat cluster: stopped (logs stay in $run)"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: bash deploy/cluster.sh start|stop" >&2; exit 2 ;;
esac
