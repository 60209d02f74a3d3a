package store

import (
	"context"
	"encoding/base64"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/contractd/contractd/domain"
	"github.com/contractd/contractd/internal/pgtest"
)

// A feed cursor carries the timeline, the transaction id, the row id and
// the row's event id, and reads back as written; a cursor of the older
// form f1:xid:id (issued before rows carried a timeline) still reads, as
// timeline 0 with no event id; anything else is PARAM_ERROR naming after.
func TestFeedCursorEncodeDecode(t *testing.T) {
	t.Parallel()
	p := domain.FeedPosition{Timeline: 3, XID: 1234567, ID: 42, EventID: "0b1f7c3e-6a59-4c43-9d55-2f1f0f6b9a10"}
	got, err := decodeFeedCursor(encodeFeedCursor(p))
	if err != nil || got != p {
		t.Fatalf("round trip: %+v %v, want %+v", got, err, p)
	}
	if got, err := decodeFeedCursor(""); err != nil || got != (domain.FeedPosition{Timeline: -1}) {
		t.Fatalf("empty cursor: %+v %v, want the beginning", got, err)
	}
	old := base64.RawURLEncoding.EncodeToString([]byte("f1:987:65"))
	if got, err := decodeFeedCursor(old); err != nil || got != (domain.FeedPosition{Timeline: 0, XID: 987, ID: 65}) {
		t.Fatalf("f1 cursor: %+v %v, want timeline 0, xid 987, id 65, no event id", got, err)
	}
	enc := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	for _, bad := range []string{
		"12", "not-a-cursor!", "%%%",
		enc("f1:-1:0"), enc("f1:1"), enc("f1:1:2:3"), enc("f1:x:2"),
		enc("f2:1:2:3"), enc("f2:1:2:3:"), enc("f2:1:2:3:not-a-uuid"),
		enc("f2:1:2:3:0B1F7C3E-6A59-4C43-9D55-2F1F0F6B9A10"),
		enc("f2:-1:2:3:0b1f7c3e-6a59-4c43-9d55-2f1f0f6b9a10"),
		enc("f2:1:2:3:0b1f7c3e-6a59-4c43-9d55-2f1f0f6b9a10:9"),
		enc("f3:1:2:3:0b1f7c3e-6a59-4c43-9d55-2f1f0f6b9a10"),
	} {
		_, err := decodeFeedCursor(bad)
		var de *domain.Error
		if !domain.IsCode(err, domain.CodeParamError) || !errors.As(err, &de) || len(de.Fields) != 1 || de.Fields[0].Field != "after" {
			t.Errorf("cursor %q: %v, want PARAM_ERROR on after", bad, err)
		}
	}
}

// feedAll follows the feed from after, pageSize rows a page, until it has
// want rows, waiting for the horizon (other tests' transactions in the
// cluster hold it back) up to a generous deadline, and returns the rows
// and the last cursor. The external tests call it as FeedAll.
func feedAll(t *testing.T, st *Store, after string, want, pageSize int) ([]domain.HistoryEntry, string) {
	t.Helper()
	ctx := context.Background()
	var out []domain.HistoryEntry
	deadline := time.Now().Add(time.Minute)
	for len(out) < want {
		page, err := st.Feed(ctx, after, pageSize)
		if err != nil || page.Lost != nil {
			t.Fatalf("feed after %q: %+v %v", after, page, err)
		}
		out = append(out, page.Items...)
		after = page.Next
		if len(page.Items) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("the feed shows %d of %d rows after a minute", len(out), want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	return out, after
}

// Rows written before timelines were recorded are timeline 0 and come
// first, in (xid, id) order; an f1 cursor among them goes on from its row,
// through the rest of them and into the rows of the current timeline, each
// of which carries an event id.
func TestFeedOldCursorGoesOnIntoTimelines(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	st := New(db.Pool)
	c, err := st.Create(ctx, domain.Contract{OutContractCode: "old-1", Product: domain.ProductPapay,
		Channel: domain.ChannelApp, State: domain.StateSigned})
	if err != nil {
		t.Fatal(err)
	}
	// Two rows as the migration left them (timeline 0), with xids of the
	// past, then one of today.
	for i, xid := range []int64{5, 7} {
		if _, err := db.Pool.Exec(ctx, `INSERT INTO contract_events (contract_pk, sub_mchid, out_contract_code,
			to_state, event, source, occurred_at, timeline, xid) VALUES ($1, '', 'old-1', 'signed', 'sign', 'notification', now(), 0, $2)`,
			c.ID, xid); err != nil {
			t.Fatalf("row %d: %v", i, err)
		}
	}
	if _, err := st.Update(ctx, c.Key(), func(c *domain.Contract) error {
		_, err := c.Apply(ctx, domain.Change{Event: domain.EventTerminate, Source: domain.SourceNotification}, time.Now())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	all, _ := feedAll(t, st, "", 3, 2)
	var firstXID int64
	if err := db.Pool.QueryRow(ctx, `SELECT xid FROM contract_events WHERE id = $1`, all[0].ID).Scan(&firstXID); err != nil || firstXID != 5 {
		t.Fatalf("the feed's first row has xid %d (%v), want the timeline-0 row of xid 5", firstXID, err)
	}
	if all[2].Event != domain.EventTerminate {
		t.Fatalf("the feed's last row is %s, want today's terminate", all[2].Event)
	}
	for _, h := range all {
		if !isUUID(h.EventID) {
			t.Errorf("row %d has event id %q", h.ID, h.EventID)
		}
	}
	f1 := base64.RawURLEncoding.EncodeToString([]byte("f1:5:" + strconv.FormatInt(all[0].ID, 10)))
	rest, _ := feedAll(t, st, f1, 2, 2)
	if len(rest) != 2 || rest[0].ID != all[1].ID || rest[1].ID != all[2].ID {
		t.Fatalf("after the f1 cursor of the first row: %+v, want rows %d and %d", rest, all[1].ID, all[2].ID)
	}
	// FeedTail serves the same rows in the same order, and its cursor
	// goes on in Feed.
	tail, next, err := st.FeedTail(ctx, 2)
	if err != nil || len(tail) != 2 || tail[0].ID != all[1].ID || tail[1].ID != all[2].ID {
		t.Fatalf("FeedTail: %+v %v, want rows %d and %d", tail, err, all[1].ID, all[2].ID)
	}
	if page, err := st.Feed(ctx, next, 10); err != nil || len(page.Items) != 0 || page.Lost != nil || page.Next != next {
		t.Fatalf("after FeedTail's cursor: %+v %v, want nothing more", page, err)
	}
}

// A cursor whose row no longer exists (a failover lost it) answers lost,
// with no rows, the position it named, and a cursor that resumes at the
// last row still held before that position; following it serves every row
// after, none skipped. A lost position before every row resumes at the
// beginning.
func TestFeedLostCursorResumesBeforeIt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	st := New(db.Pool)
	for _, code := range []string{"lost-1", "lost-2", "lost-3"} {
		if _, err := st.Create(ctx, domain.Contract{OutContractCode: code, Product: domain.ProductPapay,
			Channel: domain.ChannelApp, State: domain.StateSigned}); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Update(ctx, domain.Key{OutContractCode: code}, func(c *domain.Contract) error {
			_, err := c.Apply(ctx, domain.Change{Event: domain.EventTerminate, Source: domain.SourceNotification}, time.Now())
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	all, _ := feedAll(t, st, "", 3, 2)
	type pos struct{ tl, xid int64 }
	var p [3]pos
	for i, h := range all {
		if err := db.Pool.QueryRow(ctx, `SELECT timeline, xid FROM contract_events WHERE id = $1`, h.ID).Scan(&p[i].tl, &p[i].xid); err != nil {
			t.Fatal(err)
		}
	}
	// A row that sorted between the first and the second, read by a
	// reader, then lost: its event id is nowhere.
	lost := domain.FeedPosition{Timeline: p[1].tl, XID: p[1].xid, ID: all[1].ID - 1, EventID: "0b1f7c3e-6a59-4c43-9d55-2f1f0f6b9a10"}
	page, err := st.Feed(ctx, encodeFeedCursor(lost), 10)
	if err != nil || page.Lost == nil || *page.Lost != lost || len(page.Items) != 0 {
		t.Fatalf("lost cursor: %+v %v, want lost at %+v and no rows", page, err, lost)
	}
	want := encodeFeedCursor(domain.FeedPosition{Timeline: p[0].tl, XID: p[0].xid, ID: all[0].ID, EventID: all[0].EventID})
	if page.Next != want {
		t.Fatalf("resume cursor %q, want the first row's %q", page.Next, want)
	}
	rest, _ := feedAll(t, st, page.Next, 2, 2)
	if rest[0].ID != all[1].ID || rest[1].ID != all[2].ID {
		t.Fatalf("after resuming: rows %d, %d; want %d, %d", rest[0].ID, rest[1].ID, all[1].ID, all[2].ID)
	}
	// Lost before every row: resume at the beginning.
	first := domain.FeedPosition{Timeline: p[0].tl, XID: p[0].xid, ID: all[0].ID - 1, EventID: "1b1f7c3e-6a59-4c43-9d55-2f1f0f6b9a10"}
	page, err = st.Feed(ctx, encodeFeedCursor(first), 10)
	if err != nil || page.Lost == nil || page.Next != "" {
		t.Fatalf("lost before every row: %+v %v, want lost and the beginning", page, err)
	}
}
