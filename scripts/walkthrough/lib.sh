# Shared by the walkthrough scripts: where `contractd dev` answers and its
# tokens (the defaults `contractd dev` prints), overridable from the
# environment. Every walkthrough needs curl and jq.
set -euo pipefail
: "${API:=http://127.0.0.1:8080}"
: "${SIM:=http://127.0.0.1:8090}"
: "${APP_TOKEN:=dev-app-token}"
: "${OPS_TOKEN:=dev-ops-token}"
