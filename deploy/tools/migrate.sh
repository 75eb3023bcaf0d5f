#!/usr/bin/env bash
# Run a release's schema migrations to completion before its Deployments are applied:
#   deploy/tools/migrate.sh prod && kubectl apply -k deploy/overlays/prod
# `crm migrate` is idempotent and takes an advisory lock, so re-running is always safe.
set -euo pipefail
overlay=${1:?usage: migrate.sh OVERLAY (dev or prod)}
dir="$(cd "$(dirname "$0")/.." && pwd)/overlays/${overlay}/migrations"
rendered=$(kubectl kustomize "$dir")
ns=$(printf '%s\n' "$rendered" | sed -n 's/^  namespace: //p' | head -n 1)
selector=app.kubernetes.io/component=migration

# A Job's pod template is immutable: the previous release's Jobs make way for this one's.
printf '%s\n' "$rendered" | kubectl delete --ignore-not-found --wait=true -l "$selector" -f -
printf '%s\n' "$rendered" | kubectl apply -f -

deadline=$((SECONDS + 1800))
while :; do
  jobs=$(kubectl -n "$ns" get jobs -l "$selector" \
    -o jsonpath='{range .items[*]}{.metadata.name}={.status.succeeded}/{.status.conditions[?(@.type=="Failed")].status}{"\n"}{end}')
  pending=0
  while IFS='=' read -r job counts; do
    [ -n "$job" ] || continue
    IFS=/ read -r succeeded failed <<<"$counts"
    if [ "${succeeded:-0}" -ge 1 ]; then
      continue
    elif [ "$failed" = True ]; then
      echo "migration $job failed; its logs:" >&2
      kubectl -n "$ns" logs "job/$job" --tail=50 >&2 || true
      exit 1
    fi
    pending=$((pending + 1))
  done <<<"$jobs"
  if [ "$pending" -eq 0 ]; then
    echo "migrations complete"
    exit 0
  fi
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "migrations still running after 30 minutes" >&2
    exit 1
  fi
  sleep 5
done
