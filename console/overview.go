package console

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/contractd/contractd/domain"
	"github.com/contractd/contractd/store"
)

// overviewData is the overview page's content.
type overviewData struct {
	store.Overview
	Period     string
	Periods    []string
	States     []stateCount
	Outcomes   []stateCount
	Conversion string
	Age        time.Duration
	MaxAge     time.Duration
}

type stateCount struct {
	Name  string
	Count int64
}

var periods = map[string]time.Duration{"1h": time.Hour, "24h": 24 * time.Hour, "7d": 7 * 24 * time.Hour, "30d": 30 * 24 * time.Hour}

func (c *Console) overviewPage(w http.ResponseWriter, r *http.Request) {
	period := r.URL.Query().Get("period")
	span, ok := periods[period]
	if !ok {
		period, span = "24h", 24*time.Hour
	}
	ov, err := c.cachedOverview(r, period, span, r.URL.Query().Get("fresh") != "")
	if err != nil {
		c.fail(w, r, err)
		return
	}
	d := overviewData{Overview: ov, Period: period, Periods: []string{"1h", "24h", "7d", "30d"},
		Age: c.opt.Now().Sub(ov.At), MaxAge: c.opt.OverviewMaxAge}
	if d.Age < 0 {
		d.Age = 0
	}
	for _, s := range []domain.State{domain.StateCreated, domain.StateSessionIssued, domain.StateSigned, domain.StateExpired, domain.StateTerminated} {
		d.States = append(d.States, stateCount{Name: string(s), Count: ov.ByState[s]})
	}
	for k, n := range ov.Notifications {
		d.Outcomes = append(d.Outcomes, stateCount{Name: k, Count: n})
	}
	sort.Slice(d.Outcomes, func(i, j int) bool { return d.Outcomes[i].Name < d.Outcomes[j].Name })
	d.Conversion = "—"
	if ov.Sessions > 0 {
		d.Conversion = fmt.Sprintf("%.1f%%", 100*float64(ov.Signed)/float64(ov.Sessions))
	}
	c.render(w, r, http.StatusOK, "overview.html", page{Title: "Overview", Nav: "overview", Data: d})
}

// cachedOverview answers with the overview's figures for period. The first
// view reads them; later views get the last figures read at once, and when
// those are older than OverviewMaxAge one read starts in the background for
// the next view (so that no view waits for counting millions of rows). The
// page shows the figures' age. fresh reads them now, waiting.
func (c *Console) cachedOverview(r *http.Request, period string, span time.Duration, fresh bool) (store.Overview, error) {
	c.mu.Lock()
	e, ok := c.overview[period]
	if ok && !fresh {
		if c.opt.Now().Sub(e.ov.At) >= c.opt.OverviewMaxAge && !e.refreshing {
			e.refreshing = true
			c.overview[period] = e
			go c.refreshOverview(r, period, span)
		}
		c.mu.Unlock()
		return e.ov, nil
	}
	c.mu.Unlock()
	ov, err := c.readOverview(r.Context(), span)
	if err != nil {
		return ov, err
	}
	c.mu.Lock()
	c.overview[period] = overviewEntry{ov: ov}
	c.mu.Unlock()
	return ov, nil
}

// refreshOverview reads the figures of period in the background, on behalf
// of the view that found them old; it is bounded by a timeout, and a
// failure keeps the old figures (and is logged).
func (c *Console) refreshOverview(r *http.Request, period string, span time.Duration) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 30*time.Second)
	defer cancel()
	e := overviewEntry{}
	defer func() {
		if p := recover(); p != nil {
			c.log.ErrorContext(ctx, "panic recovered", "where", "console overview", "panic", fmt.Sprint(p))
		}
		c.mu.Lock()
		if e.ov.At.IsZero() {
			old := c.overview[period]
			old.refreshing = false
			c.overview[period] = old
		} else {
			c.overview[period] = e
		}
		c.mu.Unlock()
	}()
	ov, err := c.readOverview(ctx, span)
	if err != nil {
		c.log.WarnContext(ctx, "console overview refresh failed", "error", err.Error())
		return
	}
	e.ov = ov
}

func (c *Console) readOverview(ctx context.Context, span time.Duration) (store.Overview, error) {
	now := c.opt.Now()
	return c.opt.Reads.Overview(ctx, store.OverviewOptions{From: now.Add(-span), To: now,
		ReconcileMinAge: c.opt.ReconcileMinAge, ReconcileLookBack: c.opt.ReconcileLookBack, RecentErrors: 10})
}
