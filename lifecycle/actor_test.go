package lifecycle_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/contractd/contractd/domain"
	"github.com/contractd/contractd/wechatpaysim"
)

// lastDetails decodes the details of code's last history row of event.
func (e *env) lastDetails(code string, event domain.Event) map[string]any {
	e.t.Helper()
	var out map[string]any
	for _, h := range e.history(code) {
		if h.Event == event {
			out = nil
			if err := json.Unmarshal(h.Details, &out); err != nil {
				e.t.Fatal(err)
			}
		}
	}
	if out == nil {
		e.t.Fatalf("%s has no %s row: %+v", code, event, e.history(code))
	}
	return out
}

// The operator is an argument of Terminate and Sync, and the history names
// exactly that operator: the context carries no actor at all here.
func TestTerminateAndSyncRecordTheActorTheyAreGiven(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, 5*time.Second, 3*time.Second)

	e.signed("actor-term")
	if _, err := e.svc.Terminate(ctx, domain.Key{OutContractCode: "actor-term"}, "alice", "customer asked"); err != nil {
		t.Fatal(err)
	}
	if d := e.lastDetails("actor-term", domain.EventTerminate); d["actor"] != "alice" || d["note"] != "customer asked" {
		t.Fatalf("terminate details %v, want actor alice and the note", d)
	}

	e.signed("actor-anon")
	if _, err := e.svc.Terminate(ctx, domain.Key{OutContractCode: "actor-anon"}, "", "customer asked"); err != nil {
		t.Fatal(err)
	}
	if d := e.lastDetails("actor-anon", domain.EventTerminate); d["actor"] != nil {
		t.Fatalf("terminate details %v name an actor; none was given", d)
	}

	// Sync: WeChat's sign notification is dropped, the operator asks.
	if _, err := e.svc.PreSign(ctx, e.request("actor-sync"), ""); err != nil {
		t.Fatal(err)
	}
	e.sim.SetFaults(wechatpaysim.Faults{DropDeliveries: true})
	if _, err := e.sim.Sign(ctx, wechatpaysim.SignRequest{OutContractCode: "actor-sync"}); err != nil {
		t.Fatal(err)
	}
	c, err := e.svc.Sync(ctx, domain.Key{OutContractCode: "actor-sync"}, "bob")
	if err != nil || c.State != domain.StateSigned {
		t.Fatalf("sync: %+v %v, want signed", c, err)
	}
	if d := e.lastDetails("actor-sync", domain.EventSign); d["actor"] != "bob" {
		t.Fatalf("sign details %v, want actor bob", d)
	}
}
