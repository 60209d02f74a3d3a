package drill

import (
	"testing"
	"time"

	"github.com/contractd/contractd/wechatpaysim"
)

// A signing counts as acknowledged before the kill only when a 2xx answer
// to its PAPAY.SIGN ended before it: not a 503, not a 2xx that ended after
// the kill, not another run's contract, not a termination.
func TestAckedSignsCountsOnlyTwoHundredsEndedBeforeTheKill(t *testing.T) {
	kill := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return kill.Add(d) }
	ds := []wechatpaysim.Delivery{
		{EventType: "PAPAY.SIGN", OutContractCode: "run-1", Attempts: []wechatpaysim.Attempt{
			{At: at(-3 * time.Second), Status: 503, DurationMS: 5}, {At: at(-time.Second), Status: 204, DurationMS: 10}}},
		{EventType: "PAPAY.SIGN", OutContractCode: "run-2", Attempts: []wechatpaysim.Attempt{
			{At: at(-5 * time.Millisecond), Status: 204, DurationMS: 10}}}, // answered after the kill
		{EventType: "PAPAY.SIGN", OutContractCode: "run-3", Attempts: []wechatpaysim.Attempt{
			{At: at(-time.Second), Status: 503, DurationMS: 5}, {At: at(time.Second), Status: 204, DurationMS: 5}}},
		{EventType: "PAPAY.SIGN", OutContractCode: "other-4", Attempts: []wechatpaysim.Attempt{
			{At: at(-time.Second), Status: 204, DurationMS: 5}}},
		{EventType: "PAPAY.TERMINATE", OutContractCode: "run-5", Attempts: []wechatpaysim.Attempt{
			{At: at(-time.Second), Status: 204, DurationMS: 5}}},
		{EventType: "PAPAY.SIGN", OutContractCode: "run-6", Attempts: []wechatpaysim.Attempt{
			{At: at(-time.Second), Status: 0, Err: "timeout", DurationMS: 5000}}},
	}
	got := ackedSigns(ds, "run-", kill)
	if len(got) != 1 || !got["run-1"].Equal(at(-time.Second+10*time.Millisecond)) {
		t.Errorf("acknowledged before the kill: %v, want run-1 alone, acknowledged 990ms before", got)
	}
}

// A failed request belongs to the switch when it overlapped the freeze,
// the kill or the election: it ended after the freeze and started before
// writes were accepted again.
func TestPhaseOfARequest(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	p := phases{freezeAt: t0, killAt: t0.Add(2 * time.Second), resumedAt: t0.Add(12 * time.Second)}
	for _, tc := range []struct {
		start, end time.Duration
		want       string
	}{
		{-2 * time.Second, -time.Second, "before"},
		{-time.Second, time.Second, "switch"}, // started before the freeze, answered during it
		{5 * time.Second, 6 * time.Second, "switch"},
		{11 * time.Second, 13 * time.Second, "switch"}, // started before writes came back
		{13 * time.Second, 14 * time.Second, "after"},
	} {
		if got := p.of(t0.Add(tc.start), t0.Add(tc.end)); got != tc.want {
			t.Errorf("request %s..%s: %s, want %s", tc.start, tc.end, got, tc.want)
		}
	}
	if got := (phases{freezeAt: t0}).of(t0.Add(time.Hour), t0.Add(time.Hour)); got != "switch" {
		t.Errorf("before writes came back at all: %s, want switch", got)
	}
}

// percentile picks the nearest rank.
func TestPercentile(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	if p := percentile(ds, 0.99); p != 99*time.Millisecond {
		t.Errorf("p99 of 1..100ms: %s", p)
	}
	if p := percentile(ds, 1); p != 100*time.Millisecond {
		t.Errorf("p100 of 1..100ms: %s", p)
	}
	if p := percentile(nil, 0.99); p != 0 {
		t.Errorf("p99 of nothing: %s", p)
	}
}
