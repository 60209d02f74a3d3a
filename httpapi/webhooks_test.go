package httpapi

import (
	"testing"
	"time"

	"github.com/contractd/contractd/delivery"
	"github.com/contractd/contractd/domain"
)

// A replay's body names exactly one of after and from; anything else is a
// PARAM_ERROR naming the field to fix.
func TestReplayBodyTakesExactlyOneTarget(t *testing.T) {
	str := func(s string) *string { return &s }
	from := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name  string
		body  replayBody
		want  delivery.ReplayTarget
		field string
	}{
		{name: "after", body: replayBody{After: str("abc")}, want: delivery.ReplayTarget{After: "abc"}},
		{name: "after the beginning", body: replayBody{After: str("")}, want: delivery.ReplayTarget{}},
		{name: "from", body: replayBody{From: str("2026-01-02T03:04:05Z")}, want: delivery.ReplayTarget{From: from}},
		{name: "from with an offset", body: replayBody{From: str("2026-01-02T11:04:05+08:00")}, want: delivery.ReplayTarget{From: from}},
		{name: "neither", body: replayBody{}, field: "after"},
		{name: "both", body: replayBody{After: str(""), From: str("2026-01-02T03:04:05Z")}, field: "from"},
		{name: "from not a time", body: replayBody{From: str("yesterday")}, field: "from"},
		{name: "from without a zone", body: replayBody{From: str("2026-01-02T03:04:05")}, field: "from"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.body.target()
			if tc.field == "" {
				if err != nil || got.After != tc.want.After || !got.From.Equal(tc.want.From) {
					t.Fatalf("target %+v %v, want %+v", got, err, tc.want)
				}
				return
			}
			de, ok := err.(*domain.Error)
			if !ok || de.Code != domain.CodeParamError || len(de.Fields) != 1 || de.Fields[0].Field != tc.field {
				t.Fatalf("error %v, want PARAM_ERROR naming %s", err, tc.field)
			}
		})
	}
}
