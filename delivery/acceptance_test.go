package delivery_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/contractd/contractd/delivery"
	"github.com/contractd/contractd/domain"
)

// Issue 21, acceptance 1: a receiver that refuses every delivery for a
// while (a real HTTP server), while 1,000 contracts are signed and 100 of
// them terminated by concurrent writers: once it accepts again it has
// received every event of the feed since its endpoint was created, in feed
// order, each at least once, and no event_id twice except in a batch sent
// again after a failure (the same delivery_id, byte for byte the same
// body).
func TestRefusingReceiverGetsTheWholeFeedOnceItAccepts(t *testing.T) {
	t.Parallel()
	clk := &clock{}
	e := newEnv(t, delivery.Options{Now: clk.now})
	ctx := context.Background()
	var accepting atomic.Bool
	rcv := newReceiver(t)
	rcv.answer = func(*request) int {
		if accepting.Load() {
			return http.StatusOK
		}
		return http.StatusInternalServerError
	}
	created, err := e.svc.Create(ctx, "ops:test", domain.EndpointInput{URL: rcv.URL})
	if err != nil {
		t.Fatal(err)
	}
	e.run()

	const signed, terminated, writers = 1000, 100, 8
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := w; i < signed; i += writers {
				code := fmt.Sprintf("acc-%d", i)
				exp := time.Now().Add(time.Hour)
				c := domain.Contract{OutContractCode: code, Product: domain.ProductPapay, Channel: domain.ChannelApp,
					PlanID: i64(123), UserDisplayName: "Zhang San", State: domain.StateSessionIssued,
					SessionID: "sess-" + code, SessionExpiresAt: &exp}
				if _, err := e.st.Create(ctx, c); err != nil {
					t.Error(err)
					return
				}
				for _, ch := range []domain.Change{
					{Event: domain.EventSign, Source: domain.SourceNotification, ContractID: "wx-" + code, OpenID: "o"},
					{Event: domain.EventTerminate, Source: domain.SourceOps, TerminationMode: "MERCHANT"},
				} {
					if ch.Event == domain.EventTerminate && i%(signed/terminated) != 0 {
						continue
					}
					if _, err := e.st.Update(ctx, c.Key(), func(c *domain.Contract) error {
						ch.Details = map[string]any{}
						_, err := c.Apply(ctx, ch, time.Now())
						return err
					}); err != nil {
						t.Error(err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	want := e.feedFrom(created.Endpoint.Cursor, signed+terminated)
	if len(want) != signed+terminated {
		t.Fatalf("the feed holds %d rows since the endpoint, want %d", len(want), signed+terminated)
	}
	waitFor(t, "three refused attempts", func() bool { return len(rcv.deliveries()) >= 3 })
	accepting.Store(true)
	// The batch waits out its back-off; move the service's clock past the
	// longest.
	clk.advance(domain.MaxRetryDelay)
	waitFor(t, "the endpoint to catch up", func() bool {
		ep, err := e.svc.Get(ctx, created.Endpoint.ID)
		return err == nil && ep.LagEvents == 0 && !ep.InFlight() && ep.Cursor != created.Endpoint.Cursor
	})

	all := rcv.deliveries()
	bodies := map[string][]byte{}      // delivery id -> its body
	carriers := map[string]string{}    // event id -> the delivery that carried it
	var accepted []domain.HistoryEntry // the accepted batches' events, each batch once
	seenAccepted := map[string]bool{}
	refused := 0
	for _, d := range all {
		id := d.Batch.DeliveryID
		if n := len(d.Batch.Events); n < 1 || n > domain.MaxBatchEvents {
			t.Fatalf("delivery %s holds %d events", id, n)
		}
		if b, ok := bodies[id]; ok && !bytes.Equal(b, d.Body) {
			t.Fatalf("delivery %s was sent again with another body", id)
		}
		bodies[id] = d.Body
		for _, ev := range d.Batch.Events {
			if other, ok := carriers[ev.EventID]; ok && other != id {
				t.Fatalf("event %s came in two batches, %s and %s", ev.EventID, other, id)
			}
			carriers[ev.EventID] = id
		}
		if d.Status != http.StatusOK {
			refused++
			continue
		}
		if !seenAccepted[id] {
			seenAccepted[id] = true
			accepted = append(accepted, d.Batch.Events...)
		}
	}
	if refused < 3 {
		t.Fatalf("%d refused attempts", refused)
	}
	if !slices.Equal(eventIDs(accepted), eventIDs(want)) {
		t.Fatalf("received %d events (%d distinct), want the feed's %d in feed order", len(accepted), len(carriers), len(want))
	}
	if len(carriers) != signed+terminated {
		t.Fatalf("%d distinct events received, want %d", len(carriers), signed+terminated)
	}
	// The first batch was refused, then accepted unchanged.
	firstID := all[0].Batch.DeliveryID
	if all[0].Status == http.StatusOK || !seenAccepted[firstID] {
		t.Fatalf("the first batch %s: refused first and accepted later? %v", firstID, seenAccepted[firstID])
	}
	t.Logf("%d requests, %d refused, %d batches accepted", len(all), refused, len(seenAccepted))
}
