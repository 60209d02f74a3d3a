package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/contractd/contractd/webhook"
)

// The dev receiver answers on loopback, verifies every delivery with
// package webhook (204 when it verifies, 400 otherwise) and prints one line
// per event: event, contract, from→to, event_id, contract_version, marking
// an event_id seen before and a version older than one applied.
func TestDevReceiverVerifiesAndPrints(t *testing.T) {
	t.Parallel()
	var out logBuffer
	r, err := startDevReceiver(&out)
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	if !strings.HasPrefix(r.url(), "http://127.0.0.1:") {
		t.Fatalf("receiver URL %q is not on loopback", r.url())
	}
	const secret = "whsec_ZGV2LXJlY2VpdmVyLXRlc3Qtc2VjcmV0LTAwMDAwMDA"
	client := &http.Client{Timeout: 30 * time.Second}
	post := func(t *testing.T, header string, b []byte) int {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, r.url(), bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(webhook.DeliveryHeader, "d_test")
		if header != "" {
			req.Header.Set(webhook.SignatureHeader, header)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	batch := func(t *testing.T, typ string, events ...webhook.Event) []byte {
		t.Helper()
		b, err := json.Marshal(webhook.Batch{Type: typ, EndpointID: "ep_1", DeliveryID: "d_test", Events: events})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	ev := func(id string, version int64, event, from, to string) webhook.Event {
		return webhook.Event{EventID: id, ContractVersion: version, OutContractCode: "demo-1", Event: event, From: from, To: to,
			Source: "notification", Details: json.RawMessage(`{}`)}
	}
	issued := ev("e1", 1, "issue_session", "", "session_issued")
	ended := ev("e3", 3, "terminate", "signed", "terminated")
	signed := ev("e2", 2, "sign", "session_issued", "signed")
	first := batch(t, webhook.TypeEvents, issued, ended)

	steps := []struct {
		name   string
		header string
		body   []byte
		secret bool // setSecrets before this step
		status int
		lines  []string
	}{
		{name: "before the endpoint's secret is known", header: webhook.Sign(time.Now(), first, secret), body: first, status: 400,
			lines: []string{"receiver: refused a delivery (Contractd-Delivery d_test): " + webhook.ErrNoSecrets.Error()}},
		{name: "verified", header: webhook.Sign(time.Now(), first, secret), body: first, secret: true, status: 204, lines: []string{
			"receiver: issue_session demo-1 (new)→session_issued event_id=e1 contract_version=1",
			"receiver: terminate demo-1 signed→terminated event_id=e3 contract_version=3",
		}},
		{name: "sent again", header: webhook.Sign(time.Now(), first, secret), body: first, status: 204, lines: []string{
			"receiver: issue_session demo-1 (new)→session_issued event_id=e1 contract_version=1 (seen before)",
			"receiver: terminate demo-1 signed→terminated event_id=e3 contract_version=3 (seen before)",
		}},
		{name: "an older version after a newer one", header: webhook.Sign(time.Now(), batch(t, webhook.TypeEvents, signed), secret),
			body: batch(t, webhook.TypeEvents, signed), status: 204, lines: []string{
				"receiver: sign demo-1 session_issued→signed event_id=e2 contract_version=2 (v3 already applied)",
			}},
		{name: "a ping", header: webhook.Sign(time.Now(), batch(t, webhook.TypePing), secret), body: batch(t, webhook.TypePing), status: 204,
			lines: []string{"receiver: ping (delivery d_test)"}},
		{name: "wrong secret", header: webhook.Sign(time.Now(), first, "whsec_wrong"), body: first, status: 400,
			lines: []string{"receiver: refused a delivery (Contractd-Delivery d_test): " + webhook.ErrSignatureMismatch.Error()}},
		{name: "unsigned", body: first, status: 400,
			lines: []string{"receiver: refused a delivery (Contractd-Delivery d_test): " + webhook.ErrMissingHeader.Error()}},
		{name: "too old", header: webhook.Sign(time.Now().Add(-time.Hour), first, secret), body: first, status: 400,
			lines: []string{"receiver: refused a delivery (Contractd-Delivery d_test): " + webhook.ErrTimestampTooOld.Error()}},
	}
	printed := 0
	for _, s := range steps {
		if s.secret {
			r.setSecrets(secret)
		}
		if got := post(t, s.header, s.body); got != s.status {
			t.Fatalf("%s: answered %d, want %d", s.name, got, s.status)
		}
		all := out.String()
		got := all[printed:]
		printed = len(all)
		want := strings.Join(s.lines, "\n") + "\n"
		// A refusal's line goes on to say why in detail (a timestamp's
		// distance); it starts with the error's own text.
		if s.status == 400 {
			if !strings.HasPrefix(got, strings.TrimSuffix(want, "\n")) || strings.Count(got, "\n") != 1 {
				t.Fatalf("%s: printed %q, want one line starting %q", s.name, got, want)
			}
			continue
		}
		if got != want {
			t.Fatalf("%s: printed\n%s\nwant\n%s", s.name, got, want)
		}
	}
}
