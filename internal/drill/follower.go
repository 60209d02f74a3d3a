package drill

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// seenEvent is a feed row the follower read.
type seenEvent struct {
	code, event, source string
	at                  time.Time
}

// lostAnswer is a feed answer that said lost.
type lostAnswer struct {
	at           time.Time
	lostEventID  string
	resumeCursor string
}

// follower reads GET /v1/events every interval, as a downstream system
// does: it remembers every event_id it saw, and when told lost it resumes
// where the answer says.
type follower struct {
	c        *client
	interval time.Duration

	mu       sync.Mutex
	cursor   string
	seen     map[string]seenEvent
	lost     []lostAnswer
	statuses map[int]int // non-200 answers by status (0: no answer)
	polls    int
}

func newFollower(c *client, interval time.Duration) *follower {
	return &follower{c: c, interval: interval, seen: map[string]seenEvent{}, statuses: map[int]int{}}
}

type feedAnswer struct {
	Items []struct {
		EventID         string `json:"event_id"`
		OutContractCode string `json:"out_contract_code"`
		Event           string `json:"event"`
		Source          string `json:"source"`
	} `json:"items"`
	NextCursor   string `json:"next_cursor"`
	Lost         bool   `json:"lost"`
	LostPosition *struct {
		EventID string `json:"event_id"`
	} `json:"lost_position"`
}

// catchUp reads pages until one comes back empty; it reports whether the
// feed answered every page.
func (f *follower) catchUp(ctx context.Context) bool {
	for ctx.Err() == nil {
		f.mu.Lock()
		cur := f.cursor
		f.polls++
		f.mu.Unlock()
		u := f.c.env["FRONT_URL"] + "/v1/events?limit=500"
		if cur != "" {
			u += "&after=" + url.QueryEscape(cur)
		}
		st, b, _ := f.c.do(ctx, http.MethodGet, u, f.c.env["OPS_TOKEN"], nil)
		var a feedAnswer
		if st == http.StatusOK {
			if err := json.Unmarshal(b, &a); err != nil {
				st = -1
			}
		}
		if st != http.StatusOK && ctx.Err() != nil {
			// The drill ended (or gave up waiting) with this poll in
			// flight: nothing was answered, nothing failed.
			return false
		}
		if st != http.StatusOK {
			f.mu.Lock()
			f.statuses[st]++
			f.mu.Unlock()
			return false
		}
		now := time.Now()
		f.mu.Lock()
		if a.Lost {
			la := lostAnswer{at: now, resumeCursor: a.NextCursor}
			if a.LostPosition != nil {
				la.lostEventID = a.LostPosition.EventID
			}
			f.lost = append(f.lost, la)
		}
		for _, it := range a.Items {
			if _, dup := f.seen[it.EventID]; !dup {
				f.seen[it.EventID] = seenEvent{code: it.OutContractCode, event: it.Event, source: it.Source, at: now}
			}
		}
		f.cursor = a.NextCursor
		f.mu.Unlock()
		if len(a.Items) == 0 && !a.Lost {
			return true
		}
	}
	return false
}

// run follows the feed until ctx ends.
func (f *follower) run(ctx context.Context) {
	t := time.NewTicker(f.interval)
	defer t.Stop()
	for {
		f.catchUp(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
