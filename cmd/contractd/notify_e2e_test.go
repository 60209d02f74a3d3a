package main

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/contractd/contractd/internal/pgtest"
	"github.com/contractd/contractd/wechatpaysim"
	"github.com/jackc/pgx/v5"
)

// ---------------------------------------------------------------------------
// Helpers shared by the e2e tests of this package (prefix nt).

// ntPreSign opens a signing session for code (papay, app channel) and
// fails the test unless contractd answers 201.
func ntPreSign(t *testing.T, s *stack, code string) {
	t.Helper()
	ntPreSignAt(t, s.URL, code, 123)
}

// ntPreSignAt pre-signs code with plan planID against the contractd at base.
func ntPreSignAt(t *testing.T, base, code string, planID int64) {
	t.Helper()
	r := doAt(t, base, http.MethodPost, "/v1/contracts/pre-sign", appToken, map[string]any{
		"channel": "app", "out_contract_code": code, "plan_id": planID, "user_display_name": "Zhang San"})
	if r.Status != http.StatusCreated {
		t.Fatalf("pre-sign %s at %s: %d %s", code, base, r.Status, r.Body)
	}
}

// ntSign acts as the WeChat user signing code's open session.
func ntSign(t *testing.T, s *stack, code string) *wechatpaysim.Contract {
	t.Helper()
	c, err := s.Sim.Sign(t.Context(), wechatpaysim.SignRequest{OutContractCode: code})
	if err != nil {
		t.Fatalf("simulator sign %s: %v", code, err)
	}
	return c
}

// ntState is code's stored state ("" when there is no such contract).
func ntState(t *testing.T, s *stack, code string) string {
	t.Helper()
	var st string
	err := s.DB.Pool.QueryRow(context.Background(),
		`SELECT state FROM contracts WHERE sub_mchid = '' AND out_contract_code = $1`, code).Scan(&st)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		t.Fatalf("state of %s: %v", code, err)
	}
	return st
}

// ntEvent is one contract_events row.
type ntEvent struct {
	ID      int64
	From    string
	To      string
	Event   string
	Source  string
	Ignored bool
}

// ntEvents returns code's history rows in id order.
func ntEvents(t *testing.T, s *stack, code string) []ntEvent {
	t.Helper()
	rows, err := s.DB.Pool.Query(context.Background(), `SELECT id, from_state, to_state, event, source, ignored
		FROM contract_events WHERE sub_mchid = '' AND out_contract_code = $1 ORDER BY id`, code)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []ntEvent
	for rows.Next() {
		var e ntEvent
		if err := rows.Scan(&e.ID, &e.From, &e.To, &e.Event, &e.Source, &e.Ignored); err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// ntEventNames lists the events of a history.
func ntEventNames(es []ntEvent) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Event)
	}
	return out
}

// ntDeliveries returns the simulator's deliveries for code (all event types).
func ntDeliveries(s *stack, code string) []wechatpaysim.Delivery {
	var out []wechatpaysim.Delivery
	for _, d := range s.Sim.Deliveries() {
		if d.OutContractCode == code {
			out = append(out, d)
		}
	}
	return out
}

// ntStatuses lists the statuses of a delivery's attempts.
func ntStatuses(d wechatpaysim.Delivery) []int {
	var out []int
	for _, a := range d.Attempts {
		out = append(out, a.Status)
	}
	return out
}

func ntIs2xx(status int) bool { return status >= 200 && status < 300 }

// ntTCPProxy forwards loopback TCP connections to a target (Postgres). Cut
// closes its listener and every connection, as if the database went away;
// Restore listens again on the same address.
type ntTCPProxy struct {
	target string
	addr   string
	// accepted counts the connections it has passed on.
	accepted atomic.Int64
	mu       sync.Mutex
	ln       net.Listener
	conns    map[net.Conn]struct{}
	wg       sync.WaitGroup
}

// ntStartTCPProxy starts a proxy to target and closes it when the test ends.
func ntStartTCPProxy(t *testing.T, target string) *ntTCPProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &ntTCPProxy{target: target, addr: ln.Addr().String(), conns: map[net.Conn]struct{}{}}
	p.serve(ln)
	t.Cleanup(p.close)
	return p
}

// ntStartDBProxy starts a proxy to the test Postgres server.
func ntStartDBProxy(t *testing.T) *ntTCPProxy {
	t.Helper()
	u, err := url.Parse(pgtest.URL())
	if err != nil {
		t.Fatal(err)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "5432")
	}
	return ntStartTCPProxy(t, host)
}

// URL rewrites a Postgres URL to connect through the proxy.
func (p *ntTCPProxy) URL(pgURL string) string {
	u, err := url.Parse(pgURL)
	if err != nil {
		panic(err)
	}
	u.Host = p.addr
	return u.String()
}

func (p *ntTCPProxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			target := p.target
			p.mu.Unlock()
			up, err := net.DialTimeout("tcp", target, 5*time.Second)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			if p.ln != ln { // cut meanwhile
				p.mu.Unlock()
				c.Close()
				up.Close()
				continue
			}
			p.conns[c], p.conns[up] = struct{}{}, struct{}{}
			p.accepted.Add(1)
			p.wg.Add(2)
			p.mu.Unlock()
			go p.pipe(c, up)
			go p.pipe(up, c)
		}
	}()
}

func (p *ntTCPProxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	_, _ = io.Copy(dst, src)
	dst.Close()
	src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}

// Open is how many connections it passes on now.
func (p *ntTCPProxy) Open() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns) / 2
}

// Cut closes the listener and every proxied connection.
func (p *ntTCPProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}

// Retarget sends the connections accepted from now on to target, as a
// load balancer in front of a Postgres cluster does after a failover.
func (p *ntTCPProxy) Retarget(target string) {
	p.mu.Lock()
	p.target = target
	p.mu.Unlock()
}

// Restore listens again on the proxy's address.
func (p *ntTCPProxy) Restore(t *testing.T) {
	t.Helper()
	var (
		ln  net.Listener
		err error
	)
	for range 100 {
		if ln, err = net.Listen("tcp", p.addr); err == nil {
			p.serve(ln)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("proxy: listen again on %s: %v", p.addr, err)
}

func (p *ntTCPProxy) close() {
	p.Cut()
	p.wg.Wait()
}

// ntEnvelope builds a notification body as WeChat does: the resource
// encrypted with AEAD_AES_256_GCM under the APIv3 key.
func ntEnvelope(t testing.TB, keys *wechatpaysim.KeySet, id, eventType string, resource any) []byte {
	t.Helper()
	plain, err := json.Marshal(resource)
	if err != nil {
		t.Fatal(err)
	}
	return hostileEnvelope(t, keys, id, eventType, plain)
}

// ntSignResource is a global PAPAY.SIGN resource for code.
func ntSignResource(keys *wechatpaysim.KeySet, code, contractID string) map[string]any {
	now := time.Now()
	return map[string]any{
		"mchid": keys.MchID, "appid": keys.AppID, "out_contract_code": code, "contract_id": contractID,
		"plan_id": 123, "openid": "o" + ntRandom(13), "operate_time": now.Format(time.RFC3339),
		"contract_expired_time": now.AddDate(10, 0, 0).Format(time.RFC3339),
	}
}

func ntRandom(nBytes int) string {
	b := make([]byte, nBytes)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// ntPostNotification posts body to the notification route with WeChat's
// headers, signed with key, and checks the answer against openapi.yaml.
func ntPostNotification(t *testing.T, s *stack, body []byte, key *rsa.PrivateKey) response {
	t.Helper()
	return hostilePostNotificationAs(t, s, body, key, "application/json")
}

// ntWeChatHeaders are the headers WeChat sends with a notification body:
// a fresh timestamp and nonce, and key's signature over
// "ts\nnonce\nbody\n" naming the platform serial.
func ntWeChatHeaders(t testing.TB, keys *wechatpaysim.KeySet, body []byte, key *rsa.PrivateKey) http.Header {
	t.Helper()
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	nonce := ntRandom(16)
	sum := sha256.Sum256([]byte(ts + "\n" + nonce + "\n" + string(body) + "\n"))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	h.Set("Wechatpay-Timestamp", ts)
	h.Set("Wechatpay-Nonce", nonce)
	h.Set("Wechatpay-Signature", base64.StdEncoding.EncodeToString(sig))
	h.Set("Wechatpay-Serial", keys.PlatformSerial)
	return h
}

// ntExpectFail checks a refused notification: status and {"code":"FAIL","message":...}.
func ntExpectFail(t *testing.T, r response, status int) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status %d, want %d: %s", r.Status, status, r.Body)
	}
	var body struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	r.JSON(t, &body)
	if body.Code != "FAIL" || body.Message == "" {
		t.Fatalf(`body %s, want {"code":"FAIL","message":"..."}`, r.Body)
	}
}

// ---------------------------------------------------------------------------

func TestNotifySignedContractIsSignedWithinOneSecond(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{})
	ntPreSign(t, s, "nt-fast-1")
	start := time.Now()
	ntSign(t, s, "nt-fast-1")
	eventually(t, time.Second, "nt-fast-1 signed within 1s of the user signing", func() bool {
		return ntState(t, s, "nt-fast-1") == "signed"
	})
	t.Logf("signed %s after the user signed", time.Since(start).Round(time.Millisecond))
	es := ntEvents(t, s, "nt-fast-1")
	if got := ntEventNames(es); strings.Join(got, ",") != "issue_session,sign" || es[1].Source != "notification" {
		t.Fatalf("history %+v, want issue_session then sign (source notification)", es)
	}
}

func TestNotifyFiveConcurrentDuplicatesApplyOnceAndAllAcknowledged(t *testing.T) {
	t.Parallel()
	notifyFiveConcurrentDuplicatesApplyOnce(t, startStack(t, stackOptions{}))
}

// notifyFiveConcurrentDuplicatesApplyOnce has WeChat deliver one
// PAPAY.SIGN five times at once: every copy is acknowledged, one applies.
func notifyFiveConcurrentDuplicatesApplyOnce(t *testing.T, s *stack) {
	const code = "nt-dup-1"
	ntPreSign(t, s, code)
	s.Sim.SetFaults(wechatpaysim.Faults{DuplicateDeliveries: 4})
	ntSign(t, s, code)
	eventually(t, 5*time.Second, "all 5 deliveries acknowledged", func() bool {
		ds := ntDeliveries(s, code)
		if len(ds) != 5 {
			return false
		}
		for _, d := range ds {
			if !d.Done && !d.GaveUp {
				return false
			}
		}
		return true
	})
	ds := ntDeliveries(s, code)
	for _, d := range ds {
		if d.EventType != "PAPAY.SIGN" || d.ID != ds[0].ID {
			t.Fatalf("delivery %s %s, want 5 copies of one PAPAY.SIGN", d.ID, d.EventType)
		}
		if !d.Done || len(d.Attempts) != 1 || !ntIs2xx(d.Attempts[0].Status) {
			t.Errorf("copy %d: attempts %v (done %v), want one 2xx answer", d.Copy, ntStatuses(d), d.Done)
		}
	}
	if n := s.count(`SELECT count(*) FROM contract_events WHERE out_contract_code = $1 AND event = 'sign'`, code); n != 1 {
		t.Errorf("%d sign history rows, want exactly 1", n)
	}
	if ntState(t, s, code) != "signed" {
		t.Errorf("state %s, want signed", ntState(t, s, code))
	}
	var deliveries int
	if err := s.DB.Pool.QueryRow(t.Context(), `SELECT delivery_count FROM wechat_notifications WHERE notification_id = $1`,
		ds[0].ID).Scan(&deliveries); err != nil {
		t.Fatal(err)
	}
	if deliveries != 5 {
		t.Errorf("wechat_notifications.delivery_count = %d, want 5", deliveries)
	}
}

func TestNotifyTerminateBeforeSignEndsTerminatedWithSignIgnored(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{})
	const code = "nt-reorder-1"
	ntPreSign(t, s, code)
	s.Sim.SetFaults(wechatpaysim.Faults{ReorderSignTerminate: true})
	c := ntSign(t, s, code)
	if _, err := s.Sim.TerminateAsUser(t.Context(), c.ContractID); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "terminate then sign delivered", func() bool {
		ds := ntDeliveries(s, code)
		done := 0
		for _, d := range ds {
			if d.Done {
				done++
			}
		}
		return len(ds) == 2 && done == 2
	})
	// The terminate went first.
	ds := ntDeliveries(s, code)
	var signAt, termAt time.Time
	for _, d := range ds {
		if d.EventType == "PAPAY.SIGN" {
			signAt = d.Attempts[len(d.Attempts)-1].At
		} else {
			termAt = d.Attempts[len(d.Attempts)-1].At
		}
	}
	if !termAt.Before(signAt) && !termAt.Equal(signAt) {
		t.Fatalf("the simulator delivered the sign (%s) before the terminate (%s)", signAt, termAt)
	}
	if st := ntState(t, s, code); st != "terminated" {
		t.Fatalf("state %s, want terminated", st)
	}
	es := ntEvents(t, s, code)
	var ignoredSign, terminate int
	for _, e := range es {
		switch {
		case e.Event == "sign" && e.Ignored && e.From == "terminated" && e.To == "terminated":
			ignoredSign++
		case e.Event == "sign":
			t.Errorf("sign row %+v, want it recorded as ignored", e)
		case e.Event == "terminate" && !e.Ignored:
			terminate++
		}
	}
	if ignoredSign != 1 || terminate != 1 {
		t.Fatalf("history %+v, want one terminate and one ignored sign", es)
	}
}

func TestNotifyProbeSignatureIsRefusedAndNotStored(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{})
	const code = "nt-probe-1"
	ntPreSign(t, s, code)
	s.Sim.SetFaults(wechatpaysim.Faults{ProbeSignatures: true})
	ntSign(t, s, code)
	eventually(t, 5*time.Second, "probe answered and real notification acknowledged", func() bool {
		ds := ntDeliveries(s, code)
		if len(ds) != 2 {
			return false
		}
		for _, d := range ds {
			if len(d.Attempts) == 0 || (!d.Probe && !d.Done) {
				return false
			}
		}
		return true
	})
	for _, d := range ntDeliveries(s, code) {
		if d.Probe {
			if st := ntStatuses(d); len(st) != 1 || st[0] != http.StatusUnauthorized {
				t.Errorf("probe answered %v, want one 401", st)
			}
		} else if st := ntStatuses(d); !ntIs2xx(st[len(st)-1]) {
			t.Errorf("real delivery answered %v, want 2xx", st)
		}
	}
	if n := s.count(`SELECT count(*) FROM wechat_notifications`); n != 1 {
		t.Errorf("%d inbox rows, want 1 (the real notification only)", n)
	}
	if n := s.count(`SELECT count(*) FROM wechat_notifications WHERE out_contract_code = $1 AND delivery_count = 1`, code); n != 1 {
		t.Errorf("the inbox row counts the probe as a delivery (want delivery_count 1)")
	}
	if st := ntState(t, s, code); st != "signed" {
		t.Errorf("state %s, want signed", st)
	}
}

func TestNotifyDatabaseDownDeliveryFailsThenRetryLandsOnce(t *testing.T) {
	t.Parallel()
	proxy := ntStartDBProxy(t)
	s := startStack(t, stackOptions{DatabaseURL: proxy.URL})
	const code = "nt-dbdown-1"
	ntPreSign(t, s, code)

	proxy.Cut()
	ntSign(t, s, code)
	eventually(t, 5*time.Second, "two failed delivery attempts while the database is away", func() bool {
		ds := ntDeliveries(s, code)
		return len(ds) == 1 && len(ds[0].Attempts) >= 2
	})
	d := ntDeliveries(s, code)[0]
	for _, a := range d.Attempts {
		if a.Status < 500 || a.Status > 599 {
			t.Fatalf("attempts while the database is away answered %v (err %q), want 5xx", ntStatuses(d), a.Err)
		}
	}
	if n := s.count(`SELECT count(*) FROM wechat_notifications`); n != 0 {
		t.Fatalf("%d inbox rows stored while the database was away", n)
	}
	if n := s.count(`SELECT count(*) FROM contract_events WHERE out_contract_code = $1`, code); n != 1 {
		t.Fatalf("%d history rows while the database was away, want 1 (issue_session)", n)
	}
	if st := ntState(t, s, code); st != "session_issued" {
		t.Fatalf("state %s while the database was away, want session_issued", st)
	}
	t.Logf("attempts while down: %v", ntStatuses(d))

	proxy.Restore(t)
	eventually(t, 10*time.Second, "the retry signs the contract", func() bool {
		return ntState(t, s, code) == "signed"
	})
	eventually(t, 5*time.Second, "the delivery acknowledged", func() bool {
		return ntDeliveries(s, code)[0].Done
	})
	if n := s.count(`SELECT count(*) FROM contract_events WHERE out_contract_code = $1 AND event = 'sign'`, code); n != 1 {
		t.Errorf("%d sign history rows, want 1", n)
	}
	if n := s.count(`SELECT count(*) FROM wechat_notifications`); n != 1 {
		t.Errorf("%d inbox rows, want 1", n)
	}
}

func TestNotifyRouteRefusesBadInputAndCreatesUnknownContracts(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{})
	inbox := func() int { return s.count(`SELECT count(*) FROM wechat_notifications`) }

	t.Run("MalformedBodyWithABadSignatureIs401AndNotStored", func(t *testing.T) {
		// A signed malformed body is kept as rejected
		// (TestNotificationsThatCanNeverApplyAreKeptAsRejected); one that
		// does not verify is refused and forgotten.
		before := inbox()
		ntExpectFail(t, ntPostNotification(t, s, []byte(`{"id":"x", "event_type":`), s.Keys.MerchantKey), http.StatusUnauthorized)
		if inbox() != before {
			t.Error("a malformed notification was stored")
		}
	})

	t.Run("BadSignatureIs401FAIL", func(t *testing.T) {
		before := inbox()
		body := ntEnvelope(t, s.Keys, "nt-badsig-"+ntRandom(4), "PAPAY.SIGN", ntSignResource(s.Keys, "nt-badsig", "2026"+ntRandom(7)))
		// Signed with the merchant's key, not WeChat's platform key.
		ntExpectFail(t, ntPostNotification(t, s, body, s.Keys.MerchantKey), http.StatusUnauthorized)
		if inbox() != before || ntState(t, s, "nt-badsig") != "" {
			t.Error("a notification with a bad signature was stored or applied")
		}
	})

	t.Run("UnknownEventTypeIs400AndNotStored", func(t *testing.T) {
		before := inbox()
		id := "nt-unknown-" + ntRandom(4)
		body := ntEnvelope(t, s.Keys, id, "PAPAY.SOMETHING_NEW", ntSignResource(s.Keys, "nt-unknown-event", "2026"+ntRandom(7)))
		ntExpectFail(t, ntPostNotification(t, s, body, s.Keys.PlatformKey), http.StatusBadRequest)
		if inbox() != before || s.count(`SELECT count(*) FROM wechat_notifications WHERE notification_id = $1`, id) != 0 {
			t.Error("a notification of an unknown event type was stored")
		}
		if ntState(t, s, "nt-unknown-event") != "" {
			t.Error("a notification of an unknown event type created a contract")
		}
	})

	t.Run("OversizeBodyIs413AndNotStored", func(t *testing.T) {
		before := inbox()
		res := ntSignResource(s.Keys, "nt-oversize", "2026"+ntRandom(7))
		res["padding"] = strings.Repeat("x", 70<<10)
		body := ntEnvelope(t, s.Keys, "nt-oversize-"+ntRandom(4), "PAPAY.SIGN", res)
		if len(body) <= 64<<10 {
			t.Fatalf("body is only %d bytes", len(body))
		}
		ntExpectFail(t, ntPostNotification(t, s, body, s.Keys.PlatformKey), http.StatusRequestEntityTooLarge)
		if inbox() != before || ntState(t, s, "nt-oversize") != "" {
			t.Error("an oversize notification was stored or applied")
		}
	})

	t.Run("NeverStoredContractIsCreatedSigned", func(t *testing.T) {
		const code = "nt-stranger-1"
		contractID := "2026" + ntRandom(7)
		id := "nt-stranger-" + ntRandom(4)
		r := ntPostNotification(t, s, ntEnvelope(t, s.Keys, id, "PAPAY.SIGN", ntSignResource(s.Keys, code, contractID)), s.Keys.PlatformKey)
		if r.Status != http.StatusNoContent && r.Status != http.StatusOK {
			t.Fatalf("status %d: %s, want 2xx", r.Status, r.Body)
		}
		if st := ntState(t, s, code); st != "signed" {
			t.Fatalf("state %q, want signed", st)
		}
		if n := s.count(`SELECT count(*) FROM contracts WHERE out_contract_code = $1 AND contract_id = $2`, code, contractID); n != 1 {
			t.Errorf("the created contract does not carry WeChat's contract id")
		}
		es := ntEvents(t, s, code)
		if len(es) != 1 || es[0].From != "" || es[0].To != "signed" || es[0].Event != "sign" || es[0].Ignored {
			t.Fatalf("history %+v, want exactly one row sign from \"\" to signed", es)
		}
		if n := s.count(`SELECT count(*) FROM wechat_notifications WHERE notification_id = $1`, id); n != 1 {
			t.Errorf("inbox has %d rows for the notification, want 1", n)
		}
	})
}

func TestNotifyDroppedNotificationsReconcileSignsContract(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{Env: map[string]string{
		"CONTRACTD_RECONCILE_INTERVAL": "100ms", "CONTRACTD_RECONCILE_AFTER": "200ms"}})
	const code = "nt-dropped-1"
	s.Sim.SetFaults(wechatpaysim.Faults{DropDeliveries: true})
	ntPreSign(t, s, code)
	ntSign(t, s, code)
	eventually(t, 10*time.Second, "reconciliation signs the contract", func() bool {
		return ntState(t, s, code) == "signed"
	})
	for _, d := range ntDeliveries(s, code) {
		if !d.Dropped || len(d.Attempts) != 0 {
			t.Fatalf("delivery %+v was not dropped", d)
		}
	}
	es := ntEvents(t, s, code)
	if len(es) != 2 || es[1].Event != "sign" || es[1].Source != "reconcile" || es[1].To != "signed" {
		t.Fatalf("history %+v, want issue_session then sign (source reconcile)", es)
	}
	if n := s.count(`SELECT count(*) FROM wechat_notifications`); n != 0 {
		t.Errorf("%d inbox rows, want 0 (every notification was dropped)", n)
	}
}

// inboxRow reads the inbox row of notification id: its outcome, the reason
// it was rejected ("" otherwise) and how many deliveries it counted.
func inboxRow(t testing.TB, s *stack, id string) (outcome, reason string, deliveries int) {
	t.Helper()
	if err := s.DB.Pool.QueryRow(t.Context(), `SELECT outcome, coalesce(reason, ''), delivery_count FROM wechat_notifications
		WHERE notification_id = $1`, id).Scan(&outcome, &reason, &deliveries); err != nil {
		t.Fatal(err)
	}
	return outcome, reason, deliveries
}
