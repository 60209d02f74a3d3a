package domain

import (
	"context"
	"testing"
	"time"
)

// TestTerminationMarkCarriesTheActor checks that a named operator's mark
// names them in the history of the terminate WeChat reports while the mark
// stands, and that an unnamed operator's names nobody.
func TestTerminationMarkCarriesTheActor(t *testing.T) {
	cases := []struct {
		name, actor string
	}{
		{"named operator", "alice"},
		{"unnamed token", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := signedContract(ProductPapay)
			plan, err := c.BeginTermination(tc.actor, "customer asked", t0, 5*time.Second, t0)
			if err != nil || plan.Step != TerminationCall || c.OpsTermination.Actor != tc.actor {
				t.Fatalf("plan %+v, mark %+v, err %v", plan, c.OpsTermination, err)
			}
			// WeChat's notification overtakes the terminate call's answer.
			ch := Change{Event: EventTerminate, Source: SourceNotification, OccurredAt: t0.Add(time.Second),
				TerminationMode: "MERCHANT", Details: map[string]any{"notification_id": "n1"}}
			if _, err := c.Apply(context.Background(), ch, t0.Add(time.Second)); err != nil {
				t.Fatal(err)
			}
			rec := c.Pending()
			if len(rec) != 1 {
				t.Fatalf("records %+v", rec)
			}
			got := rec[0].Change
			actor, named := got.Details["actor"]
			if got.Source != SourceOps || got.Details["note"] != "customer asked" || named != (tc.actor != "") || named && actor != tc.actor {
				t.Fatalf("recorded %+v", got)
			}
		})
	}
}
