package drill

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
)

// A feed poll the drill itself cancels when its load ends is not a failed
// answer: the follower counts no status for it. (A CI run of the drill
// under the whole suite's load failed on one such poll, counted as "no
// answer".) A poll the front really fails is still counted.
func TestFollowerDoesNotCountAPollItsOwnEndCancelled(t *testing.T) {
	arrived := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("after") == "broken" {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		close(arrived)
		<-r.Context().Done() // the poll is in flight when the drill ends
	}))
	defer srv.Close()
	f := newFollower(newClient(Env{"FRONT_URL": srv.URL, "OPS_TOKEN": "t"}), 0)

	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-arrived; cancel() }()
	if f.catchUp(ctx) {
		t.Fatal("a cancelled poll caught up")
	}
	if len(f.statuses) != 0 {
		t.Fatalf("a poll cancelled by the drill's end was counted as failed: %v", f.statuses)
	}

	f.cursor = "broken"
	if f.catchUp(context.Background()) {
		t.Fatal("a 503 caught up")
	}
	if f.statuses[http.StatusServiceUnavailable] != 1 || len(f.statuses) != 1 {
		t.Fatalf("failed answers %v, want one 503", f.statuses)
	}
}
