package main

import (
	"net/http"
	"testing"
	"time"

	"github.com/contractd/contractd/wechatpaysim"
)

func TestStackSignsEndToEnd(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{})
	r := s.do(http.MethodPost, "/v1/contracts/pre-sign", appToken, map[string]any{
		"channel": "app", "out_contract_code": "smoke-1", "plan_id": 123, "user_display_name": "Zhang San"})
	if r.Status != http.StatusCreated {
		t.Fatalf("pre-sign: %d %s", r.Status, r.Body)
	}
	var out struct {
		Launch struct {
			Query string `json:"query"`
		} `json:"launch"`
	}
	r.JSON(t, &out)
	if _, err := s.Sim.Sign(t.Context(), wechatpaysim.SignRequest{OutContractCode: "smoke-1"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Second, "signed", func() bool {
		return s.count(`SELECT count(*) FROM contracts WHERE out_contract_code = 'smoke-1' AND state = 'signed'`) == 1
	})
}
