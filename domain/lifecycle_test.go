package domain

import (
	"context"
	"strings"
	"testing"
	"time"
)

// expected is written out by hand from api.md's lifecycle table, so that the
// test checks Transitions against the spec rather than against itself.
var expected = map[State]map[Event]struct {
	outcome Outcome
	to      State
}{
	StateCreated: {
		EventIssueSession: {OutcomeApply, StateSessionIssued},
		EventSign:         {OutcomeApply, StateSigned},
		EventTerminate:    {OutcomeApply, StateTerminated},
	},
	StateSessionIssued: {
		EventSign:      {OutcomeApply, StateSigned},
		EventExpire:    {OutcomeApply, StateExpired},
		EventTerminate: {OutcomeApply, StateTerminated},
	},
	StateSigned: {
		EventSign:      {OutcomeRepeat, StateSigned},
		EventTerminate: {OutcomeApply, StateTerminated},
	},
	StateExpired: {
		EventIssueSession: {OutcomeApply, StateSessionIssued},
		EventSign:         {OutcomeApply, StateSigned},
		EventExpire:       {OutcomeRepeat, StateExpired},
		EventTerminate:    {OutcomeApply, StateTerminated},
	},
	StateTerminated: {
		EventSign:      {OutcomeIgnore, StateTerminated},
		EventTerminate: {OutcomeRepeat, StateTerminated},
	},
}

func TestDecideEveryStateEventPair(t *testing.T) {
	ctx := context.Background()
	for _, from := range States {
		for _, ev := range Events {
			t.Run(string(from)+"/"+string(ev), func(t *testing.T) {
				want, allowed := expected[from][ev]
				d, err := Decide(ctx, from, ev)
				if !allowed {
					if !IsCode(err, CodeInvalidState) {
						t.Fatalf("Decide(%s, %s) = %+v, %v; want INVALID_STATE", from, ev, d, err)
					}
					return
				}
				if err != nil {
					t.Fatalf("Decide(%s, %s): %v", from, ev, err)
				}
				if d.Outcome != want.outcome || d.To != want.to || d.From != from {
					t.Fatalf("Decide(%s, %s) = %+v; want outcome %s to %s", from, ev, d, want.outcome, want.to)
				}
			})
		}
	}
}

func TestDecideRejectsUnknownStateAndEvent(t *testing.T) {
	ctx := context.Background()
	if _, err := Decide(ctx, "limbo", EventSign); !IsCode(err, CodeInvalidState) {
		t.Fatalf("unknown state: %v", err)
	}
	if _, err := Decide(ctx, StateCreated, "explode"); !IsCode(err, CodeInvalidState) {
		t.Fatalf("unknown event: %v", err)
	}
}

func TestMermaidListsEveryEdge(t *testing.T) {
	m := Mermaid()
	if !strings.HasPrefix(m, "stateDiagram-v2\n") {
		t.Fatalf("not a Mermaid state diagram:\n%s", m)
	}
	edges := 0
	for from, evs := range expected {
		for ev, want := range evs {
			if want.outcome != OutcomeApply {
				continue
			}
			edges++
			line := "    " + string(from) + " --> " + string(want.to) + ": " + string(ev) + "\n"
			if !strings.Contains(m, line) {
				t.Errorf("diagram lacks %q", line)
			}
		}
	}
	if got := strings.Count(m, ": "); got != edges {
		t.Errorf("diagram has %d labelled edges, the spec %d", got, edges)
	}
}

func TestApplyRecordsFacts(t *testing.T) {
	ctx := context.Background()
	c := Contract{State: StateSessionIssued, Version: 3}
	d, err := c.Apply(ctx, Change{Event: EventSign, Source: SourceNotification, ContractID: "wx-1", OpenID: "o-1"}, time.Now())
	if err != nil || d.Outcome != OutcomeApply {
		t.Fatalf("apply sign: %+v %v", d, err)
	}
	if c.State != StateSigned || c.ContractID != "wx-1" || c.OpenID != "o-1" || c.SignedAt == nil || c.Version != 4 {
		t.Fatalf("contract after sign: %+v", c)
	}
	d, err = c.Apply(ctx, Change{Event: EventSign, ContractID: "wx-2"}, time.Now())
	if err != nil || d.Outcome != OutcomeRepeat || c.ContractID != "wx-1" || c.Version != 4 {
		t.Fatalf("repeat sign changed the contract: %+v %+v %v", c, d, err)
	}
	if _, err := (&Contract{State: StateCreated, Version: 1}).Apply(ctx, Change{Event: EventIssueSession}, time.Now()); !IsCode(err, CodeInvalidState) {
		t.Fatalf("issue_session without a session: %v", err)
	}
}

func TestAttributeGivesAPendingOperatorTerminationItsTerminate(t *testing.T) {
	req := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	pending := &Contract{State: StateSigned, OpsTermination: &OpsTermination{Note: "customer asked", RequestedAt: req}}
	cases := []struct {
		name   string
		c      *Contract
		ch     Change
		source Source
	}{
		{"merchant terminate reported by WeChat", pending, Change{Event: EventTerminate, Source: SourceNotification, TerminationMode: "MERCHANT", OccurredAt: req.Add(time.Second)}, SourceOps},
		{"user terminate stays WeChat's", pending, Change{Event: EventTerminate, Source: SourceNotification, TerminationMode: "USER", OccurredAt: req.Add(time.Second)}, SourceNotification},
		{"stale marker claims nothing", pending, Change{Event: EventTerminate, Source: SourceNotification, OccurredAt: req.Add(OpsTerminationTTL + time.Second)}, SourceNotification},
		{"sign is not a termination", pending, Change{Event: EventSign, Source: SourceNotification, OccurredAt: req}, SourceNotification},
		{"no marker", &Contract{State: StateSigned}, Change{Event: EventTerminate, Source: SourceReconcile, OccurredAt: req}, SourceReconcile},
	}
	for _, tc := range cases {
		c := *tc.c
		c.Version = 1
		if _, err := c.Apply(context.Background(), tc.ch, req); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		rows := c.Decided()
		if len(rows) != 1 {
			t.Fatalf("%s: %d decisions, want 1", tc.name, len(rows))
		}
		got := rows[0].Change
		if got.Source != tc.source {
			t.Errorf("%s: source %s, want %s", tc.name, got.Source, tc.source)
		}
		if tc.source == SourceOps && (got.Details["note"] != "customer asked" || got.Details["reported_by"] != "notification") {
			t.Errorf("%s: details %v", tc.name, got.Details)
		}
	}
	c := *pending
	if _, err := c.Apply(context.Background(), Change{Event: EventTerminate, Source: SourceOps, OccurredAt: req}, req); err != nil || c.OpsTermination != nil {
		t.Fatalf("terminate left the marker: %v %+v", err, c.OpsTermination)
	}
}
