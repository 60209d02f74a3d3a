# Shared by the walkthrough scripts: where `contractd dev` answers and its
# tokens (the defaults `contractd dev` prints), overridable from the
# environment. Every walkthrough needs curl and jq.
set -euo pipefail
: "${API:=http://127.0.0.1:8080}"
: "${SIM:=http://127.0.0.1:8090}"
: "${APP_TOKEN:=dev-app-token}"
: "${OPS_TOKEN:=dev-ops-token}"

# told CODE EVENT: wait until contractd dev's webhook receiver has printed
# EVENT for contract CODE in DEV_LOG (contractd dev's output, which
# scripts/walkthroughs sets), and show the line. Run by hand, without
# DEV_LOG, it only says where to look: the terminal running contractd dev.
told() {
  if [ -z "${DEV_LOG:-}" ]; then
    echo "the app server is told: contractd dev prints \"receiver: $2 $1 ...\""
    return 0
  fi
  for _ in $(seq 1 150); do
    if grep -q "^receiver: $2 $1 " "$DEV_LOG"; then
      grep "^receiver: $2 $1 " "$DEV_LOG"
      return 0
    fi
    sleep 0.2
  done
  echo "contractd dev's webhook receiver did not print a $2 event for $1 within 30 s" >&2
  return 1
}

# app_server_told CODE: the app server was told that CODE was signed; an
# operator terminates the contract, and the app server is told that too.
app_server_told() {
  told "$1" sign
  curl -sS --fail-with-body -H "Authorization: Bearer $OPS_TOKEN" -H 'Content-Type: application/json' \
    -d '{"note":"the walkthrough ends"}' "$API/v1/contracts/$1/terminate" | jq -e 'select(.state == "terminated") | .state'
  told "$1" terminate
}
