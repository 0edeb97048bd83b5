#!/usr/bin/env bash
# Two txchat processes sharing one Redis, behind nginx, all on this machine (README, "Several
# processes, one chat"). Debian's redis-server and nginx; txchat installed by deploy/install.sh.
#
#   bash deploy/cluster.sh start     # then open http://127.0.0.1:8080/
#   bash deploy/cluster.sh stop      # stops nginx, both txchat processes and Redis
#
# Run files (pid files, logs, nginx's temporary files) go to $TXCHAT_RUN, by default
# /tmp/txchat-cluster, never into the checkout. Ports: FRONT_PORT (8080), NODE_PORTS
# ("8081 8082"), REDIS_PORT (6379); everything listens on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
run="${TXCHAT_RUN:-/tmp/txchat-cluster}"
twistd="${TXCHAT_VENV:-$PWD/.venv}/bin/twistd"
front="${FRONT_PORT:-8080}"
read -r -a nodes <<< "${NODE_PORTS:-8081 8082}"
redisPort="${REDIS_PORT:-6379}"

start() {
    mkdir -p "$run/nginx/tmp"
    redis-server --bind 127.0.0.1 --port "$redisPort" --save '' --appendonly no --daemonize yes \
        --pidfile "$run/redis.pid" --logfile "$run/redis.log" --dir "$run"
    for i in "${!nodes[@]}"; do
        # nginx is the only client these processes see: --trusted-proxy makes the per-address
        # limit and the logs use the visitor's address from X-Forwarded-For.
        "$twistd" --pidfile="$run/node$i.pid" --logfile="$run/node$i.log" txchat \
            --port "${nodes[$i]}" --interface 127.0.0.1 --redis "redis://127.0.0.1:$redisPort" \
            --trusted-proxy 127.0.0.1
    done
    sed -e "s/listen 127.0.0.1:8080;/listen 127.0.0.1:$front;/" \
        -e "s/server 127.0.0.1:8081;/server 127.0.0.1:${nodes[0]};/" \
        -e "s/server 127.0.0.1:8082;/server 127.0.0.1:${nodes[1]};/" \
        deploy/nginx-txchat.conf > "$run/nginx/nginx.conf"
    nginx -e stderr -c "$run/nginx/nginx.conf" -p "$run/nginx/"
    echo "txchat cluster: open http://127.0.0.1:$front/ (run files in $run)"
}

stop() {
    [ -f "$run/nginx/nginx.pid" ] && nginx -e stderr -s quit -c "$run/nginx/nginx.conf" -p "$run/nginx/" || true
    for pidfile in "$run"/node*.pid "$run/redis.pid"; do
        [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
    done
    echo "txchat cluster: stopped (logs stay in $run)"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: bash deploy/cluster.sh start|stop" >&2; exit 2 ;;
esac
