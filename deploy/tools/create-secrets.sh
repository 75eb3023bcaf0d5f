#!/usr/bin/env bash
# Create the Secrets the manifests reference that no operator generates, in NAMESPACE.
# Never overwrites: a new master key would make every customer's personal data unreadable.
#   deploy/tools/create-secrets.sh crm
#   deploy/tools/create-secrets.sh crm-dev "$(.venv/bin/crm home)/issuer/jwks.json"   # dev: the local issuer's JWKS
# Not created here (provider-specific, see deploy/README.md): crm-backup-s3 (object storage
# credentials for the backups) and crm-query-api-tls (the Ingress certificate, e.g. cert-manager).
set -euo pipefail
ns=${1:?usage: create-secrets.sh NAMESPACE [JWKS_FILE]}
jwks=${2:-}

exists() { kubectl -n "$ns" get "$1" "$2" >/dev/null 2>&1; }

# Runtime roles' passwords, used by CloudNativePG (managed roles) and by the services. Hex, so
# they need no escaping inside the postgresql:// URLs the Deployments compose.
for service in contacts deals support projections; do
  name="crm-${service}-db-credentials"
  if exists secret "$name"; then
    echo "kept    secret/$name"
    continue
  fi
  kubectl -n "$ns" create secret generic "$name" --type=kubernetes.io/basic-auth \
    --from-literal=username="crm_${service}" --from-literal=password="$(openssl rand -hex 32)"
  kubectl -n "$ns" label secret "$name" cnpg.io/reload=true
done

if exists secret crm-master-key; then
  echo "kept    secret/crm-master-key"
else
  kubectl -n "$ns" create secret generic crm-master-key --from-literal=master-key="$(openssl rand -base64 32)"
  echo "BACK UP secret/crm-master-key NOW, outside this cluster (deploy/README.md, \"The master key\")."
fi

if [ -n "$jwks" ]; then
  kubectl -n "$ns" create configmap crm-dev-jwks --from-file=jwks.json="$jwks" --dry-run=client -o yaml \
    | kubectl -n "$ns" apply -f -
fi

for name in crm-backup-s3 crm-query-api-tls; do
  exists secret "$name" || echo "missing secret/$name: create it as deploy/README.md describes"
done
