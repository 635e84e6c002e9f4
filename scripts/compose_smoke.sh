#!/usr/bin/env bash
# Follows README "Deploy": `docker compose up` (PostgreSQL + the sidecar against the built-in
# emulators), waits until the sidecar is healthy and ready (its first HubSpot poll succeeded), checks
# `sidecar status` inside the container, then removes everything it started. Bounded: 5 minutes.
# Without a docker engine it says so and exits 0 (tests/unit/test_deploy_files.py checks the files).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v docker >/dev/null 2>&1 || ! docker info >/dev/null 2>&1; then
  echo "skipped: no docker engine"
  exit 0
fi

PROJECT=sidecar-smoke
compose() { docker compose -p "$PROJECT" -f compose.yaml "$@"; }
trap 'compose down -v --remove-orphans >/dev/null 2>&1 || true' EXIT

compose up -d --build
deadline=$((SECONDS + 300))
until [ "$(docker inspect -f '{{.State.Health.Status}}' "$(compose ps -q sidecar)")" = healthy ]; do
  [ $SECONDS -lt $deadline ] || { compose logs --tail 50; echo "FAIL: sidecar not healthy"; exit 1; }
  sleep 3
done
until curl -fsS http://127.0.0.1:8080/readyz >/dev/null; do
  [ $SECONDS -lt $deadline ] || { curl -sS http://127.0.0.1:8080/readyz || true; echo "FAIL: not ready"; exit 1; }
  sleep 3
done
compose exec -T sidecar sidecar status | tee /dev/stderr | grep -q "last hubspot poll: 20" \
  || { echo "FAIL: no HubSpot poll recorded"; exit 1; }
if compose logs sidecar | grep -q Traceback; then echo "FAIL: traceback in the logs"; exit 1; fi
echo "compose smoke: ok (healthy, ready, polled the emulated HubSpot on PostgreSQL)"
