package webhook_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"

	"github.com/contractd/contractd/webhook"
)

// appServer is a merchant's app server receiving contractd's webhooks. It
// dedupes on event_id (a batch can arrive more than once) and keeps, per
// contract, the highest contract_version it has applied (for one contract,
// feed order can differ from the order its changes were applied, so an
// older change can arrive after a newer one). A real one keeps seen and
// applied in its database, in the transaction that acts on the event, and
// answers 2xx only once that transaction has committed.
type appServer struct {
	verifier webhook.Verifier

	mu      sync.Mutex
	seen    map[string]bool                // event_id handled
	applied map[webhook.ContractKey]int64  // highest contract_version applied
	state   map[webhook.ContractKey]string // the contract's state at that version
}

func newAppServer(secrets ...string) *appServer {
	return &appServer{
		verifier: webhook.Verifier{Secrets: secrets}, // Tolerance: 300 s; Now: time.Now
		seen:     map[string]bool{},
		applied:  map[webhook.ContractKey]int64{},
		state:    map[webhook.ContractKey]string{},
	}
}

func (a *appServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	batch, err := a.verifier.Read(r)
	if err != nil {
		// Not from contractd, or not intact: refuse. A genuine batch
		// refused (a secret not yet configured here) is sent again later,
		// so nothing is lost.
		fmt.Println("  refused:", err)
		http.Error(w, "invalid delivery", http.StatusBadRequest)
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, e := range batch.Events {
		if a.seen[e.EventID] {
			fmt.Printf("  %s v%d %s: seen before\n", e.Contract(), e.ContractVersion, e.Event)
			continue
		}
		a.seen[e.EventID] = true
		k := e.Contract()
		if e.ContractVersion <= a.applied[k] {
			// Also an ignored entry (a sign after termination): it carries
			// the version the contract already had.
			fmt.Printf("  %s v%d %s: v%d already applied, skipped\n", k, e.ContractVersion, e.Event, a.applied[k])
			continue
		}
		a.applied[k], a.state[k] = e.ContractVersion, e.To
		switch e.To {
		case "signed":
			fmt.Printf("  %s v%d %s: signed, start charging\n", k, e.ContractVersion, e.Event)
		case "terminated":
			fmt.Printf("  %s v%d %s: terminated, stop charging\n", k, e.ContractVersion, e.Event)
		default:
			fmt.Printf("  %s v%d %s: %s\n", k, e.ContractVersion, e.Event, e.To)
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// A merchant's handler: verify, dedupe on event_id, act per contract only
// on a higher contract_version.
func ExampleVerifier_Read() {
	const secret = "whsec_4hJ0fYkQ2nV6mX9cB1dR5tW8zL3pS7uA0eG4iK6oM2q" // as contractd answered it
	app := httptest.NewServer(newAppServer(secret))
	defer app.Close()

	// What contractd sends (here made with Sign, as contractd does).
	event := func(id string, version int64, ev, from, to string) webhook.Event {
		return webhook.Event{EventID: id, ContractVersion: version, OutContractCode: "c-1", Event: ev, From: from, To: to,
			Source: "notification", Details: json.RawMessage(`{}`)}
	}
	deliver := func(deliveryID, signWith string, events ...webhook.Event) {
		body, _ := json.Marshal(webhook.Batch{Type: webhook.TypeEvents, EndpointID: "ep_1", DeliveryID: deliveryID, Events: events})
		req, _ := http.NewRequest(http.MethodPost, app.URL, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(webhook.SignatureHeader, webhook.Sign(time.Now(), body, signWith))
		req.Header.Set(webhook.DeliveryHeader, deliveryID)
		fmt.Println(deliveryID + ":")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			fmt.Println(err)
			return
		}
		resp.Body.Close()
		fmt.Println("  answered", resp.StatusCode)
	}

	issued := event("7d0c5a1e-0000-4000-8000-000000000001", 1, "issue_session", "", "session_issued")
	signed := event("7d0c5a1e-0000-4000-8000-000000000002", 2, "sign", "session_issued", "signed")
	ended := event("7d0c5a1e-0000-4000-8000-000000000003", 3, "terminate", "signed", "terminated")

	// The terminate (version 3) reached the feed before the sign (version
	// 2) it was applied after.
	deliver("d_1", secret, issued, ended)
	deliver("d_1", secret, issued, ended) // sent again: its 2xx was lost
	deliver("d_2", secret, signed)
	deliver("d_3", "whsec_not-the-endpoints", signed)
	// Output:
	// d_1:
	//   c-1 v1 issue_session: session_issued
	//   c-1 v3 terminate: terminated, stop charging
	//   answered 204
	// d_1:
	//   c-1 v1 issue_session: seen before
	//   c-1 v3 terminate: seen before
	//   answered 204
	// d_2:
	//   c-1 v2 sign: v3 already applied, skipped
	//   answered 204
	// d_3:
	//   refused: webhook: no v1 signature matches the body under any secret
	//   answered 400
}
