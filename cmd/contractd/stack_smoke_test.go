package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/contractd/contractd/wechatpaysim"
)

// The app channel's launch object carries the session WeChat opened, as
// "sessionId=<session_id>" in launch.query; signing exactly that session in
// WeChat makes the contract signed.
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
			Type         string `json:"type"`
			BusinessType string `json:"business_type"`
			Query        string `json:"query"`
		} `json:"launch"`
	}
	r.JSON(t, &out)
	if out.Launch.Type != "app_sdk" || out.Launch.BusinessType == "" {
		t.Errorf("launch %+v, want type app_sdk with a business_type", out.Launch)
	}
	session, ok := strings.CutPrefix(out.Launch.Query, "sessionId=")
	if !ok || session == "" || strings.ContainsAny(session, "&=") {
		t.Fatalf("launch.query %q, want sessionId=<session_id>", out.Launch.Query)
	}
	// The session in the query is the one the simulator opened for the code.
	var opened []string
	for _, ses := range s.Sim.Sessions() {
		if ses.OutContractCode == "smoke-1" {
			opened = append(opened, ses.ID)
		}
	}
	if len(opened) != 1 || opened[0] != session {
		t.Fatalf("launch.query names session %q; the simulator opened %q", session, opened)
	}
	// Signing that very session (not "the code's latest") signs the contract.
	c, err := s.Sim.Sign(t.Context(), wechatpaysim.SignRequest{SessionID: session})
	if err != nil {
		t.Fatalf("sign session %q from launch.query: %v", session, err)
	}
	if c.SessionID != session || c.OutContractCode != "smoke-1" {
		t.Fatalf("signed %+v, want session %q of smoke-1", c, session)
	}
	eventually(t, 30*time.Second, "signed", func() bool {
		return s.count(`SELECT count(*) FROM contracts WHERE out_contract_code = 'smoke-1' AND state = 'signed'`) == 1
	})
}
