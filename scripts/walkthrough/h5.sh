#!/usr/bin/env bash
# Walkthrough: the h5 channel (README.md, "Walkthrough: h5"). The lines
# between the README markers are the README's block, character for character.
. "$(dirname "$0")/lib.sh"
# README:begin
CODE=h5-$(date +%s%N)
# 1. The web server asks contractd for a signing session.
ANSWER=$(curl -sS --fail-with-body -H "Authorization: Bearer $APP_TOKEN" -H 'Content-Type: application/json' \
  -d '{"channel":"h5","out_contract_code":"'"$CODE"'","plan_id":123,"user_display_name":"Zhang San"}' \
  "$API/v1/contracts/pre-sign")
echo "$ANSWER" | jq .launch
# 2. The mobile page redirects the browser to launch.url: WeChat's signing
#    page (here the simulator's, which a browser on this machine opens).
URL=$(echo "$ANSWER" | jq -r .launch.url)
# 3. The simulated WeChat user presses "Agree and sign": the page posts its form.
curl -sS --fail-with-body "$URL" | grep -o 'Agree and sign'
curl -sS --fail-with-body -X POST -d openid= "$URL" | grep -o 'Signed\. Contract [^ ]* is SIGNED'
# 4. WeChat's PAPAY.SIGN notification reaches contractd: the contract is signed.
until curl -sS --fail-with-body -H "Authorization: Bearer $APP_TOKEN" "$API/v1/contracts/$CODE" | jq -e 'select(.state == "signed") | .state'; do sleep 0.2; done
# 5. contractd tells the app server: a signed webhook delivers the sign event
#    (contractd dev's receiver prints "receiver: sign $CODE session_issued→signed ...").
# README:end
# Not in the README's block: check that the app server was told the sign, then
# terminate the contract as an operator and check that it was told that too.
app_server_told "$CODE"
