package main

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/contractd/contractd/domain"
	"github.com/contractd/contractd/webhook"
)

// jsonFields lists the JSON names of a struct type's fields.
func jsonFields(t reflect.Type) []string {
	var out []string
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name != "" && name != "-" {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// The receivers' package cannot import the domain (merchants import it
// alone), so its Event copies domain.HistoryEntry's wire form: the same
// JSON fields, and a history entry as GET /v1/events answers it decodes
// into an Event holding every value.
func TestWebhookEventMirrorsTheHistoryEntry(t *testing.T) {
	t.Parallel()
	if h, e := jsonFields(reflect.TypeFor[domain.HistoryEntry]()), jsonFields(reflect.TypeFor[webhook.Event]()); !slices.Equal(h, e) {
		t.Fatalf("domain.HistoryEntry's JSON fields %v;\nwebhook.Event's %v", h, e)
	}
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	h := domain.HistoryEntry{ID: 7, EventID: "1f0e2d3c-4b5a-4978-8695-a4b3c2d1e0f9", ContractVersion: 3, SubMchID: "1900000109",
		OutContractCode: "c-1", FromState: domain.StateSigned, ToState: domain.StateTerminated, Event: domain.EventTerminate,
		Source: domain.SourceOps, Ignored: true, Details: json.RawMessage(`{"note":"moved away"}`), OccurredAt: at, RecordedAt: at.Add(time.Second)}
	b, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	var e webhook.Event
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatal(err)
	}
	want := webhook.Event{ID: 7, EventID: h.EventID, ContractVersion: 3, SubMchID: "1900000109", OutContractCode: "c-1",
		From: "signed", To: "terminated", Event: "terminate", Source: "ops", Ignored: true,
		Details: json.RawMessage(`{"note":"moved away"}`), OccurredAt: at, RecordedAt: at.Add(time.Second)}
	if !reflect.DeepEqual(e, want) {
		t.Fatalf("decoded %+v,\nwant %+v", e, want)
	}
	if k := e.Contract(); k.String() != "1900000109/c-1" {
		t.Fatalf("contract key %q", k)
	}
}
