package domain

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/looplab/fsm"
)

// State is where a contract stands in its lifecycle.
type State string

// The lifecycle states.
const (
	StateCreated       State = "created"
	StateSessionIssued State = "session_issued"
	StateSigned        State = "signed"
	StateExpired       State = "expired"
	StateTerminated    State = "terminated"
)

// States lists every state in lifecycle order.
var States = []State{StateCreated, StateSessionIssued, StateSigned, StateExpired, StateTerminated}

// Valid reports whether s is one of the lifecycle states.
func (s State) Valid() bool {
	for _, v := range States {
		if v == s {
			return true
		}
	}
	return false
}

// Event is something that happens to a contract.
type Event string

// The lifecycle events.
const (
	EventIssueSession Event = "issue_session"
	EventSign         Event = "sign"
	EventExpire       Event = "expire"
	EventTerminate    Event = "terminate"
)

// Events lists every event.
var Events = []Event{EventIssueSession, EventSign, EventExpire, EventTerminate}

// Source says who drove an event.
type Source string

// The sources of events.
const (
	SourcePreSign      Source = "presign"
	SourceNotification Source = "notification"
	SourceSweeper      Source = "sweeper"
	SourceReconcile    Source = "reconcile"
	SourceOps          Source = "ops"
)

// Transition is one edge of the lifecycle: event moves a contract from From
// to To.
type Transition struct {
	Event Event
	From  []State
	To    State
}

// Transitions is THE transition table of api.md's lifecycle section. The
// looplab/fsm machine, the Mermaid diagram and the tests are all derived from
// it; nothing else in contractd lists edges.
var Transitions = []Transition{
	{Event: EventIssueSession, From: []State{StateCreated, StateExpired}, To: StateSessionIssued},
	{Event: EventSign, From: []State{StateSessionIssued, StateExpired, StateCreated}, To: StateSigned},
	{Event: EventExpire, From: []State{StateSessionIssued}, To: StateExpired},
	{Event: EventTerminate, From: []State{StateSigned, StateSessionIssued, StateExpired, StateCreated}, To: StateTerminated},
}

// Outcome is what deciding an event against a state comes to.
type Outcome int

// The possible outcomes of a decision.
const (
	// OutcomeApply: the event moves the contract; one history row is written.
	OutcomeApply Outcome = iota + 1
	// OutcomeRepeat: the contract already stands where the event leads (a
	// duplicate notification, a sign on a signed contract). Nothing changes
	// and nothing is recorded.
	OutcomeRepeat
	// OutcomeIgnore: the event arrived too late to matter (a sign reported
	// after termination). The state stays; the event is recorded in the
	// history as ignored.
	OutcomeIgnore
)

// String names the outcome.
func (o Outcome) String() string {
	switch o {
	case OutcomeApply:
		return "applied"
	case OutcomeRepeat:
		return "repeat"
	case OutcomeIgnore:
		return "ignored"
	}
	return "unknown"
}

// Decision is the lifecycle's verdict on one event.
type Decision struct {
	Outcome Outcome
	From    State
	To      State
}

// fsmEvents converts the transition table to looplab/fsm's form.
func fsmEvents() fsm.Events {
	evs := make(fsm.Events, 0, len(Transitions))
	for _, t := range Transitions {
		src := make([]string, len(t.From))
		for i, s := range t.From {
			src[i] = string(s)
		}
		evs = append(evs, fsm.EventDesc{Name: string(t.Event), Src: src, Dst: string(t.To)})
	}
	return evs
}

// target returns the state an event leads to, whatever its source.
func target(ev Event) (State, bool) {
	for _, t := range Transitions {
		if t.Event == ev {
			return t.To, true
		}
	}
	return "", false
}

// Decide returns what event does to a contract in state from. The move itself
// is decided by a looplab/fsm machine built from Transitions; an event the
// table does not allow is a repeat when the contract already stands in the
// event's target state (except issue_session, which always means a new
// session), ignored when it is a sign reported after termination, and
// refused with an INVALID_STATE error otherwise.
func Decide(ctx context.Context, from State, ev Event) (Decision, error) {
	if !from.Valid() {
		return Decision{}, Errorf(CodeInvalidState, "unknown state %q", from)
	}
	to, known := target(ev)
	if !known {
		return Decision{}, Errorf(CodeInvalidState, "unknown event %q", ev)
	}
	machine := fsm.NewFSM(string(from), fsmEvents(), nil)
	if err := machine.Event(ctx, string(ev)); err == nil {
		return Decision{Outcome: OutcomeApply, From: from, To: State(machine.Current())}, nil
	}
	switch {
	case from == to && ev != EventIssueSession:
		return Decision{Outcome: OutcomeRepeat, From: from, To: from}, nil
	case from == StateTerminated && ev == EventSign:
		return Decision{Outcome: OutcomeIgnore, From: from, To: from}, nil
	}
	return Decision{}, Errorf(CodeInvalidState, "event %s is not allowed in state %s", ev, from)
}

// Mermaid renders the transition table as a Mermaid state diagram. The
// README embeds exactly this text; `contractd fsm` prints it.
func Mermaid() string {
	var lines []string
	for _, t := range Transitions {
		for _, from := range t.From {
			lines = append(lines, fmt.Sprintf("    %s --> %s: %s", from, t.To, t.Event))
		}
	}
	sort.Strings(lines)
	var b strings.Builder
	b.WriteString("stateDiagram-v2\n")
	fmt.Fprintf(&b, "    [*] --> %s\n", StateCreated)
	for _, l := range lines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "    %s --> [*]\n", StateTerminated)
	return b.String()
}
