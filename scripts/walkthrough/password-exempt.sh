#!/usr/bin/env bash
# Walkthrough: the password-exempt mini program (domestic; README.md,
# "Walkthrough: password-exempt mini program"). The lines between the README
# markers are the README's block, character for character.
. "$(dirname "$0")/lib.sh"
# README:begin
CODE=pe-$(date +%s%N)
# 1. The mini program's server asks contractd for a signing session.
ANSWER=$(curl -sS --fail-with-body -H "Authorization: Bearer $APP_TOKEN" -H 'Content-Type: application/json' \
  -d '{"product":"password_exempt","channel":"mini_program","out_contract_code":"'"$CODE"'","service_id":500001,"contract_display_account":"Zhang San","openid":"o-demo-user"}' \
  "$API/v1/contracts/pre-sign")
echo "$ANSWER" | jq .launch
# 2. The mini program opens WeChat's signing mini program: navigateToMiniProgram
#    with appId = launch.appid and path = launch.path (which carries
#    launch.pre_entrustweb_id).
SESSION=$(echo "$ANSWER" | jq -r .launch.pre_entrustweb_id)
# 3. The simulated WeChat user agrees.
curl -sS --fail-with-body -H 'Content-Type: application/json' -d '{"session_id":"'"$SESSION"'"}' "$SIM/sim/sign" | jq '{contract_id, state}'
# 4. WeChat's ENTRUST.SIGN notification reaches contractd: the contract is signed.
until curl -sS --fail-with-body -H "Authorization: Bearer $APP_TOKEN" "$API/v1/contracts/$CODE" | jq -e 'select(.state == "signed") | .state'; do sleep 0.2; done
# 5. contractd tells the app server: a signed webhook delivers the sign event
#    (contractd dev's receiver prints "receiver: sign $CODE session_issued→signed ...").
# README:end
# Not in the README's block: check that the app server was told the sign, then
# terminate the contract as an operator and check that it was told that too.
app_server_told "$CODE"
