package drill

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/contractd/contractd/wechatpaysim"
)

// Options configure a failover drill.
type Options struct {
	// EnvFile is the cluster's cluster.env.
	EnvFile string
	// Warmup is how long the load runs before replication is frozen.
	Warmup time.Duration
	// Freeze is how long the leader goes on committing with its
	// walsenders stopped before it is killed.
	Freeze time.Duration
	// SignLag: the user signs only contracts pre-signed at least this long
	// before (longer than Freeze, so that no contract is pre-signed and
	// signed within the window the failover loses).
	SignLag time.Duration
	// AfterResume is how long the load goes on once writes are accepted
	// again.
	AfterResume time.Duration
	// Workers pre-sign and sign; Getters read contracts.
	Workers, Getters int
	// FeedInterval is how often the feed follower reads GET /v1/events.
	FeedInterval time.Duration
	// ResumeTimeout bounds the wait for writes after the kill; HealTimeout
	// the wait for every signed contract to be signed in contractd.
	ResumeTimeout, HealTimeout time.Duration
	// Out receives the report.
	Out io.Writer
}

// Result is what the drill measured.
type Result struct {
	// Sync reports that the cluster ran with synchronous_mode_strict.
	Sync bool
	// Failures by operation, phase ("before", "switch", "after") and
	// status (0: no answer).
	Failures map[string]map[string]map[int]int
	// Status500 counts answers 500 of every kind.
	Status500 int
	// NotOK503 counts failed answers to app servers (pre-sign, GET, the
	// feed) whose status was not 503.
	NotOK503 int
	// AckedBeforeKill counts sign notifications acknowledged (2xx) before
	// the kill.
	AckedBeforeKill int
	// AckedLost counts those whose signing the new leader lacked (history:
	// no sign row of source notification); AckedLostAtSwitch those not
	// signed when the drill first read the new leader.
	AckedLost, AckedLostAtSwitch int
	// LostForGood counts contracts signed at WeChat that are not signed in
	// contractd at the end; AckedLostForGood those of AckedLost.
	LostForGood, AckedLostForGood int
	// HealedAfter is the time from the kill until reconciliation had
	// signed the last of AckedLost (0 when none).
	HealedAfter time.Duration
	// WritesAfter is the time from the kill until a pre-sign was
	// accepted again.
	WritesAfter time.Duration
	// LastFailureAfter is the time from the kill until the last failed
	// answer of any kind (0 when none came after the kill).
	LastFailureAfter time.Duration
	// FeedMissed counts history rows the new leader holds that the
	// follower never saw; FeedSeenLost rows it saw that are gone;
	// FeedToldLost the answers that said lost.
	FeedMissed, FeedSeenLost, FeedToldLost int
	// PreSignsLost counts pre-signs answered 201 whose contract the new
	// leader does not hold (never signed afterwards).
	PreSignsLost int
	// NotifyRate and NotifyP99 are the notifications acknowledged per
	// second before the freeze and the 99th percentile of their POST.
	NotifyRate float64
	NotifyP99  time.Duration
	// Problems lists every invariant the run broke.
	Problems []string
}

// phases of a request: "before" when it ended before the freeze, "after"
// when it started once writes were accepted again, else "switch" (it
// overlapped the freeze, the kill or the election).
type phases struct{ freezeAt, killAt, resumedAt time.Time }

func (p phases) of(start, end time.Time) string {
	switch {
	case end.Before(p.freezeAt):
		return "before"
	case !p.resumedAt.IsZero() && start.After(p.resumedAt):
		return "after"
	}
	return "switch"
}

// Run runs the failover drill on the cluster of opt.EnvFile and reports.
func Run(ctx context.Context, opt Options) (*Result, error) {
	out := opt.Out
	logf := func(format string, a ...any) {
		fmt.Fprintf(out, "drill: %s %s\n", time.Now().UTC().Format("15:04:05.000"), fmt.Sprintf(format, a...))
	}
	env, err := LoadEnv(ctx, opt.EnvFile)
	if err != nil {
		return nil, err
	}
	nodes, err := env.nodes()
	if err != nil {
		return nil, err
	}
	c := newClient(env)
	res := &Result{Sync: env["CLUSTER_SYNC"] == "1", Failures: map[string]map[string]map[int]int{}}

	if err := waitFor(ctx, time.Minute, func() bool {
		st, _, _ := c.do(ctx, http.MethodGet, env["FRONT_URL"]+"/readyz", "", nil)
		return st == http.StatusOK
	}); err != nil {
		return nil, fmt.Errorf("the front does not answer /readyz: %w", err)
	}
	leader, ok := c.leader(ctx, nodes)
	if !ok {
		return nil, fmt.Errorf("no Patroni node answers GET /primary")
	}
	lv, _ := c.patroni(ctx, leader)
	logf("cluster %s: leader %s (timeline %d), synchronous mode %v, maximum_lag_on_failover %s bytes",
		env["CLUSTER_DIR"], leader.name, lv.Timeline, res.Sync, env["CLUSTER_MAX_LAG"])

	prefix := "drill-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	ld := newLoad(c, prefix, opt.SignLag)
	fctx, stopFollower := context.WithCancel(ctx)
	defer stopFollower()
	fol := newFollower(c, opt.FeedInterval)
	followerDone := make(chan struct{})
	go func() { defer close(followerDone); fol.run(fctx) }()

	loadStart := time.Now()
	ld.start(ctx, opt.Workers, opt.Getters)
	defer ld.halt()
	logf("load: %d workers pre-sign and sign (the simulator delivers PAPAY.SIGN to the front), %d read contracts, the feed is followed every %s; %s before the freeze",
		opt.Workers, opt.Getters, opt.FeedInterval, opt.Warmup)
	pause(ctx, opt.Warmup)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}

	// Freeze replication, keep committing, kill the leader.
	ld.freezeCodes()
	ws, err := freeze(leader)
	if err != nil {
		return nil, err
	}
	var ph phases
	ph.freezeAt = time.Now()
	logf("froze replication: SIGSTOP the leader's %d walsenders %v; committing on for %s", len(ws), ws, opt.Freeze)
	pause(ctx, opt.Freeze)
	lag := c.lags(ctx, nodes, leader)
	killed, err := kill(ctx, leader)
	ph.killAt = time.Now()
	if err != nil {
		return nil, err
	}
	logf("killed the leader %s: SIGKILL Patroni, its postmaster and its children %v; WAL bytes each standby lacked just before:%s (maximum_lag_on_failover %s)",
		leader.name, killed, lag, env["CLUSTER_MAX_LAG"])

	// What WeChat had acknowledged when the leader died.
	ds, err := c.deliveries(ctx)
	if err != nil {
		return nil, err
	}
	acked := ackedSigns(ds, prefix, ph.killAt)
	res.AckedBeforeKill = len(acked)

	// The new leader, read as soon as it takes connections: which of
	// these acknowledged signings does it lack?
	var snapshot map[string]string
	var snapAt time.Time
	if err := waitFor(ctx, opt.ResumeTimeout, func() bool {
		conn, err := connectLeader(ctx, env["DB_RW_URL"])
		if err != nil {
			return false
		}
		defer conn.Close(context.Background())
		snapshot, err = statesOf(ctx, conn, keys(acked))
		snapAt = time.Now()
		return err == nil
	}); err != nil {
		return nil, fmt.Errorf("no new leader took connections within %s of the kill: %w", opt.ResumeTimeout, err)
	}
	var unsignedAtSwitch []string
	for code := range acked {
		if snapshot[code] != "signed" {
			unsignedAtSwitch = append(unsignedAtSwitch, code)
		}
	}
	res.AckedLostAtSwitch = len(unsignedAtSwitch)
	logf("the new leader took connections %s after the kill: %d of the %d signings acknowledged before the kill are not signed there",
		snapAt.Sub(ph.killAt).Round(time.Millisecond), len(unsignedAtSwitch), len(acked))

	// Writes again: the first pre-sign accepted that started after the kill.
	if err := waitFor(ctx, opt.ResumeTimeout, func() bool {
		for _, r := range ld.rec.all() {
			if r.op == opPreSign && r.status == http.StatusCreated && !r.start.Before(ph.killAt) {
				if ph.resumedAt.IsZero() || r.end.Before(ph.resumedAt) {
					ph.resumedAt = r.end
				}
			}
		}
		return !ph.resumedAt.IsZero()
	}); err != nil {
		return nil, fmt.Errorf("no pre-sign was accepted within %s of the kill", opt.ResumeTimeout)
	}
	res.WritesAfter = ph.resumedAt.Sub(ph.killAt)
	logf("writes accepted again %s after the kill; load goes on for %s", res.WritesAfter.Round(time.Millisecond), opt.AfterResume)
	pause(ctx, opt.AfterResume)
	ld.halt()
	signed := ld.signedCodes()

	// Healing: every contract the user signed must be signed in contractd
	// (acknowledged ones lost by reconciliation; the others by WeChat's
	// retries).
	healDeadline := opt.HealTimeout - time.Since(ph.killAt)
	waitErr := waitFor(ctx, healDeadline, func() bool {
		conn, err := connectLeader(ctx, env["DB_RW_URL"])
		if err != nil {
			return false
		}
		defer conn.Close(context.Background())
		st, err := statesOf(ctx, conn, keys(signed))
		if err != nil {
			return false
		}
		return allSigned(st, keys(signed))
	})
	if waitErr != nil {
		logf("not every signed contract is signed in contractd %s after the kill", opt.HealTimeout)
	}

	// The feed: read it to its end, then compare with the new leader.
	stopFollower()
	<-followerDone
	if err := waitFor(ctx, time.Minute, func() bool { return fol.catchUp(ctx) }); err != nil {
		return nil, fmt.Errorf("the feed follower cannot read to the end: %w", err)
	}
	rows, err := contractsLike(ctx, env["DB_RW_URL"], prefix)
	if err != nil {
		return nil, err
	}
	events, err := eventsLike(ctx, env["DB_RW_URL"], prefix)
	if err != nil {
		return nil, err
	}
	ds, err = c.deliveries(ctx)
	if err != nil {
		return nil, err
	}

	// Reckon.
	for code := range acked {
		r := rows[code]
		if !r.signedByNotification {
			res.AckedLost++
			if r.state != "signed" {
				res.AckedLostForGood++
			} else if d := r.reconcileSignAt.Sub(ph.killAt); d > res.HealedAfter {
				res.HealedAfter = d
			}
		}
	}
	for code := range signed {
		if rows[code].state != "signed" {
			res.LostForGood++
		}
	}
	for _, code := range ld.preSigned() {
		if _, ok := rows[code]; !ok {
			res.PreSignsLost++
		}
	}
	fol.mu.Lock()
	for id := range events {
		if _, ok := fol.seen[id]; !ok {
			res.FeedMissed++
		}
	}
	for id, s := range fol.seen {
		if _, ok := events[id]; !ok && strings.HasPrefix(s.code, prefix) {
			res.FeedSeenLost++
		}
	}
	res.FeedToldLost = len(fol.lost)
	feedStatuses := fol.statuses
	feedSeen, feedPolls := len(fol.seen), fol.polls
	fol.mu.Unlock()

	// Failures, by operation and phase.
	addFailure := func(op, phase string, status int) {
		if res.Failures[op] == nil {
			res.Failures[op] = map[string]map[int]int{}
		}
		if res.Failures[op][phase] == nil {
			res.Failures[op][phase] = map[int]int{}
		}
		res.Failures[op][phase][status]++
		if status == http.StatusInternalServerError {
			res.Status500++
		}
	}
	reqs := ld.rec.all()
	count := map[string]int{}
	lastFailure := func(end time.Time) {
		if d := end.Sub(ph.killAt); d > res.LastFailureAfter {
			res.LastFailureAfter = d
		}
	}
	for _, r := range reqs {
		count[r.op]++
		if !ok2xx(r.status) {
			lastFailure(r.end)
			addFailure(r.op, ph.of(r.start, r.end), r.status)
			if r.op != opSimSign && r.status != http.StatusServiceUnavailable {
				res.NotOK503++
			}
		}
	}
	for st, n := range feedStatuses {
		for range n {
			addFailure("GET /v1/events", "any", st)
			if st != http.StatusServiceUnavailable {
				res.NotOK503++
			}
		}
	}
	const opNotify = "notification (WeChat's POST)"
	notifyAttempts := 0
	var notifyLat []time.Duration
	winStart := loadStart.Add(2 * time.Second)
	if opt.Warmup <= 4*time.Second {
		winStart = loadStart
	}
	for _, d := range ds {
		if d.EventType != "PAPAY.SIGN" || !strings.HasPrefix(d.OutContractCode, prefix) {
			continue
		}
		for _, a := range d.Attempts {
			notifyAttempts++
			end := a.At.Add(time.Duration(a.DurationMS * float64(time.Millisecond)))
			if !ok2xx(a.Status) {
				lastFailure(end)
				addFailure(opNotify, ph.of(a.At, end), a.Status)
				continue
			}
			if !a.At.Before(winStart) && end.Before(ph.freezeAt) {
				notifyLat = append(notifyLat, time.Duration(a.DurationMS*float64(time.Millisecond)))
			}
		}
	}
	win := ph.freezeAt.Sub(winStart).Seconds()
	res.NotifyRate = float64(len(notifyLat)) / win
	res.NotifyP99 = percentile(notifyLat, 0.99)
	rate := func(op string) (float64, time.Duration) {
		var lat []time.Duration
		for _, r := range reqs {
			if r.op == op && ok2xx(r.status) && !r.start.Before(winStart) && r.end.Before(ph.freezeAt) {
				lat = append(lat, r.end.Sub(r.start))
			}
		}
		return float64(len(lat)) / win, percentile(lat, 0.99)
	}

	// Invariants.
	problem := func(format string, a ...any) { res.Problems = append(res.Problems, fmt.Sprintf(format, a...)) }
	if res.Status500 > 0 {
		problem("%d answers were 500", res.Status500)
	}
	if res.NotOK503 > 0 {
		problem("%d failed answers to app servers or the feed were not 503", res.NotOK503)
	}
	if res.Sync && res.AckedLost > 0 {
		problem("synchronous mode lost %d acknowledged notifications", res.AckedLost)
	}
	if !res.Sync && res.AckedLost == 0 {
		problem("asynchronous mode lost no acknowledged notification: healing was not tested (freeze longer?)")
	}
	if res.LostForGood > 0 || waitErr != nil {
		problem("%d contracts signed at WeChat are not signed in contractd %s after the kill", res.LostForGood, opt.HealTimeout)
	}
	if res.FeedMissed > 0 {
		problem("the feed follower missed %d rows the new leader holds", res.FeedMissed)
	}
	if res.FeedSeenLost > 0 && res.FeedToldLost == 0 {
		problem("the follower saw %d rows that are gone and was never told lost", res.FeedSeenLost)
	}

	// Report.
	nv := ""
	for _, n := range nodes {
		if v, ok := c.patroni(ctx, n); ok {
			nv += fmt.Sprintf(" %s=%s/%s/tl%d", n.name, v.Role, v.State, v.Timeline)
		} else {
			nv += " " + n.name + "=down"
		}
	}
	w := out
	fmt.Fprintf(w, "\n==== failover drill (%s replication) ====\n", map[bool]string{true: "synchronous (synchronous_mode_strict)", false: "asynchronous"}[res.Sync])
	fmt.Fprintf(w, "killed leader %s after %s of load and %s of frozen replication; Patroni now:%s\n", leader.name, opt.Warmup, opt.Freeze, nv)
	fmt.Fprintf(w, "before the freeze (%.1fs window):\n", win)
	fmt.Fprintf(w, "  notifications acknowledged  %7.1f/s  p99 %s\n", res.NotifyRate, res.NotifyP99.Round(100*time.Microsecond))
	for _, op := range []string{opPreSign, opGet} {
		r, p := rate(op)
		fmt.Fprintf(w, "  %-28s %7.1f/s  p99 %s\n", op, r, p.Round(100*time.Microsecond))
	}
	fmt.Fprintf(w, "requests: %d pre-signs, %d signings, %d GETs, %d notification POSTs, %d feed polls (%d rows seen)\n",
		count[opPreSign], count[opSimSign], count[opGet], notifyAttempts, feedPolls, feedSeen)
	fmt.Fprintf(w, "failed requests by phase (before: ended before the freeze; switch: overlapped freeze, kill or election; after: started once writes were accepted) and status (0 = no answer):\n")
	ops := make([]string, 0, len(res.Failures))
	for op := range res.Failures {
		ops = append(ops, op)
	}
	sort.Strings(ops)
	if len(ops) == 0 {
		fmt.Fprintf(w, "  none\n")
	}
	for _, op := range ops {
		for _, phase := range []string{"before", "switch", "after", "any"} {
			if m := res.Failures[op][phase]; len(m) > 0 {
				fmt.Fprintf(w, "  %-30s %-7s %s\n", op, phase, statusList(m))
			}
		}
	}
	fmt.Fprintf(w, "writes accepted again            %s after the kill; the last failed answer %s after it\n",
		res.WritesAfter.Round(time.Millisecond), res.LastFailureAfter.Round(time.Millisecond))
	fmt.Fprintf(w, "acknowledged signings lost       %d of %d acknowledged before the kill (%d not signed on the new leader when first read)\n",
		res.AckedLost, res.AckedBeforeKill, res.AckedLostAtSwitch)
	if res.AckedLost > 0 {
		fmt.Fprintf(w, "healed by reconciliation         all but %d, the last %s after the kill\n", res.AckedLostForGood, res.HealedAfter.Round(time.Millisecond))
	}
	fmt.Fprintf(w, "signed at WeChat, not in contractd at the end: %d of %d\n", res.LostForGood, len(signed))
	fmt.Fprintf(w, "pre-signs answered 201 whose contract is gone (never signed): %d\n", res.PreSignsLost)
	fmt.Fprintf(w, "feed: %d rows on the new leader, missed %d; seen then lost %d; told lost %d times\n",
		len(events), res.FeedMissed, res.FeedSeenLost, res.FeedToldLost)
	if len(res.Problems) == 0 {
		fmt.Fprintf(w, "RESULT: PASS\n")
	} else {
		for _, p := range res.Problems {
			fmt.Fprintf(w, "FAIL: %s\n", p)
		}
	}
	pr, pp := rate(opPreSign)
	gr, gp := rate(opGet)
	fmt.Fprintf(w, "DRILL mode=%s status_500=%d failed_not_503=%d acked_before_kill=%d acked_lost=%d acked_lost_at_switch=%d acked_lost_for_good=%d healed_ms=%d lost_for_good=%d writes_after_ms=%d last_failure_ms=%d feed_rows=%d feed_missed=%d feed_seen_lost=%d feed_told_lost=%d presigns_lost=%d notify_per_s=%.1f notify_p99_ms=%.1f presign_per_s=%.1f presign_p99_ms=%.1f get_per_s=%.1f get_p99_ms=%.1f result=%s\n",
		map[bool]string{true: "sync", false: "async"}[res.Sync], res.Status500, res.NotOK503, res.AckedBeforeKill, res.AckedLost, res.AckedLostAtSwitch,
		res.AckedLostForGood, res.HealedAfter.Milliseconds(), res.LostForGood, res.WritesAfter.Milliseconds(), res.LastFailureAfter.Milliseconds(), len(events), res.FeedMissed,
		res.FeedSeenLost, res.FeedToldLost, res.PreSignsLost, res.NotifyRate, ms(res.NotifyP99), pr, ms(pp), gr, ms(gp),
		map[bool]string{true: "pass", false: "fail"}[len(res.Problems) == 0])
	for _, op := range ops {
		for _, phase := range []string{"before", "switch", "after", "any"} {
			for st, n := range res.Failures[op][phase] {
				fmt.Fprintf(w, "DRILL_FAILED op=%q phase=%s status=%d count=%d\n", op, phase, st, n)
			}
		}
	}
	return res, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// ackedSigns returns the codes (under prefix) whose PAPAY.SIGN got a 2xx
// answer before t.
func ackedSigns(ds []wechatpaysim.Delivery, prefix string, t time.Time) map[string]time.Time {
	out := map[string]time.Time{}
	for _, d := range ds {
		if d.EventType != "PAPAY.SIGN" || !strings.HasPrefix(d.OutContractCode, prefix) {
			continue
		}
		for _, a := range d.Attempts {
			end := a.At.Add(time.Duration(a.DurationMS * float64(time.Millisecond)))
			if ok2xx(a.Status) && end.Before(t) {
				out[d.OutContractCode] = end
			}
		}
	}
	return out
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func allSigned(states map[string]string, codes []string) bool {
	for _, c := range codes {
		if states[c] != "signed" {
			return false
		}
	}
	return true
}

func statusList(m map[int]int) string {
	sts := make([]int, 0, len(m))
	for st := range m {
		sts = append(sts, st)
	}
	sort.Ints(sts)
	parts := make([]string, len(sts))
	for i, st := range sts {
		parts[i] = fmt.Sprintf("%d x%d", st, m[st])
	}
	return strings.Join(parts, ", ")
}

// waitFor polls cond every 200ms until it holds, for at most limit.
func waitFor(ctx context.Context, limit time.Duration, cond func() bool) error {
	deadline := time.Now().Add(limit)
	for {
		if cond() {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s", limit)
		}
		pause(ctx, 200*time.Millisecond)
	}
}
