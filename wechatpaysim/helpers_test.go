package wechatpaysim

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wechatpay-apiv3/wechatpay-go/core"
	"github.com/wechatpay-apiv3/wechatpay-go/core/auth/validators"
	"github.com/wechatpay-apiv3/wechatpay-go/core/auth/verifiers"
	"github.com/wechatpay-apiv3/wechatpay-go/core/notify"
	"github.com/wechatpay-apiv3/wechatpay-go/utils"
)

// testKeys is generated once per test binary: RSA key generation is slow.
var testKeys = sync.OnceValues(GenerateKeys)

func keys(t *testing.T) *KeySet {
	t.Helper()
	k, err := testKeys()
	if err != nil {
		t.Fatalf("GenerateKeys: %v", err)
	}
	return k
}

// fakeClock is a settable clock for Config.Now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// env is a simulator under test with its server, a notification receiver behind NotifyTarget
// and the credentials of both sides.
type env struct {
	t    *testing.T
	keys *KeySet
	sim  *Simulator
	srv  *httptest.Server
	recv *receiver
}

const (
	notifyURL    = "https://merchant.example.com/v1/notifications/wechatpay"
	terminateURL = "https://merchant.example.com/v1/notifications/terminate"
	testAppID    = "wxd678efh567hg6787"
)

// newEnv starts a simulator (TimeScale 0.001 unless changed by opts) and a receiver that
// acknowledges with 204 unless told otherwise.
func newEnv(t *testing.T, opts ...func(*Config)) *env {
	t.Helper()
	k := keys(t)
	recv := newReceiver(t)
	cfg := k.SimConfig()
	cfg.TerminateNotifyURL = terminateURL
	cfg.NotifyTarget = recv.srv.URL
	cfg.TimeScale = 0.001
	cfg.Logger = slog.New(slog.DiscardHandler)
	for _, o := range opts {
		o(&cfg)
	}
	sim, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(func() {
		sim.Close()
		srv.Close()
	})
	return &env{t: t, keys: k, sim: sim, srv: srv, recv: recv}
}

// signer builds merchant requests the way a merchant client does, independently of the
// simulator's code (it signs with wechatpay-go's utils).
type signer struct {
	mchID, serial string
	key           *rsa.PrivateKey
	now           func() time.Time
}

func (e *env) signer() signer {
	return signer{mchID: e.keys.MchID, serial: e.keys.MerchantSerial, key: e.keys.MerchantKey, now: time.Now}
}

func (s signer) request(t *testing.T, method, url, body string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatalf("NewRequest: %v", err)
	}
	nonce, err := utils.GenerateNonce()
	if err != nil {
		t.Fatalf("nonce: %v", err)
	}
	ts := s.now().Unix()
	msg := fmt.Sprintf("%s\n%s\n%d\n%s\n%s\n", method, req.URL.RequestURI(), ts, nonce, body)
	sig, err := utils.SignSHA256WithRSA(msg, s.key)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	req.Header.Set("Authorization", fmt.Sprintf(
		`WECHATPAY2-SHA256-RSA2048 mchid="%s",nonce_str="%s",timestamp="%d",serial_no="%s",signature="%s"`,
		s.mchID, nonce, ts, s.serial, sig))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	return req
}

// answer is a merchant API answer whose platform signature has been checked.
type answer struct {
	status int
	body   []byte
	header http.Header
}

func (a answer) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(a.body, &m); err != nil {
		t.Fatalf("answer %d is not JSON: %v: %s", a.status, err, a.body)
	}
	return m
}

// code returns the error code of an error answer.
func (a answer) code(t *testing.T) string {
	t.Helper()
	c, _ := a.json(t)["code"].(string)
	return c
}

// platformVerifier accepts both the certificate serial and the public key id, as a
// merchant in switch-over does.
func platformVerifier(k *KeySet) *verifiers.SHA256WithRSACombinedVerifier {
	return verifiers.NewSHA256WithRSACombinedVerifier(
		core.NewCertificateMapWithList([]*x509.Certificate{k.PlatformCert}), k.PublicKeyID, k.PlatformKey.PublicKey)
}

// send sends req and returns the answer after checking its platform signature with
// wechatpay-go's response validator.
func (e *env) send(req *http.Request) answer {
	e.t.Helper()
	a, err := e.sendUnchecked(req)
	if err != nil {
		e.t.Fatal(err)
	}
	return a
}

func (e *env) sendUnchecked(req *http.Request) (answer, error) {
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		return answer{}, fmt.Errorf("%s %s: %w", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{}, fmt.Errorf("read answer: %w", err)
	}
	a := answer{status: resp.StatusCode, body: body, header: resp.Header}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if err := validators.NewWechatPayResponseValidator(platformVerifier(e.keys)).Validate(context.Background(), resp); err != nil {
		return a, fmt.Errorf("answer %d to %s %s does not verify: %w (body %s)", resp.StatusCode, req.Method, req.URL.Path, err, body)
	}
	if resp.Header.Get("Request-ID") == "" {
		return a, fmt.Errorf("answer to %s has no Request-ID", req.URL.Path)
	}
	return a, nil
}

// call signs and sends a merchant request to path (with query) on the simulator.
func (e *env) call(method, path, body string) answer {
	e.t.Helper()
	return e.send(e.signer().request(e.t, method, e.srv.URL+path, body))
}

// mustJSON marshals v.
func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// globalBody is a valid common-mode global pre-sign body for code, with changes applied.
func globalBody(t *testing.T, code string, change func(map[string]any)) string {
	t.Helper()
	m := map[string]any{
		"appid":              testAppID,
		"plan_id":            123,
		"out_contract_code":  code,
		"user_display_name":  "Zhang San",
		"success_notify_url": notifyURL,
		"openid":             "ouFhd5X9s9WteC3eWRjXV3lea123",
	}
	if change != nil {
		change(m)
	}
	return mustJSON(t, m)
}

// preSign runs an app pre-sign for code and returns the session id.
func (e *env) preSign(code string) string {
	e.t.Helper()
	a := e.call("POST", "/v3/global/papay/contracts/app-pre-entrust-sign", globalBody(e.t, code, nil))
	if a.status != http.StatusOK {
		e.t.Fatalf("pre-sign %s: %d %s", code, a.status, a.body)
	}
	id, _ := a.json(e.t)["session_id"].(string)
	if id == "" {
		e.t.Fatalf("pre-sign %s: no session_id in %s", code, a.body)
	}
	return id
}

// signed runs a pre-sign and signs it as the user.
func (e *env) signed(code string) *Contract {
	e.t.Helper()
	c, err := e.sim.Sign(context.Background(), SignRequest{SessionID: e.preSign(code)})
	if err != nil {
		e.t.Fatalf("Sign %s: %v", code, err)
	}
	return c
}

// received is one notification POST seen by the receiver.
type received struct {
	at     time.Time
	path   string
	header http.Header
	body   []byte
}

// receiver is a merchant notification endpoint: it records every POST and answers 204, or
// what a custom respond function says.
type receiver struct {
	t       *testing.T
	srv     *httptest.Server
	mu      sync.Mutex
	got     []received
	respond func(n int, r received) int // n counts requests from 1
	arrived chan received
}

func newReceiver(t *testing.T) *receiver {
	rc := &receiver{t: t, arrived: make(chan received, 100)}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got := received{at: time.Now(), path: r.URL.Path, header: r.Header.Clone(), body: body}
		rc.mu.Lock()
		rc.got = append(rc.got, got)
		n, respond := len(rc.got), rc.respond
		rc.mu.Unlock()
		status := http.StatusNoContent
		if respond != nil {
			status = respond(n, got)
		}
		rc.arrived <- got
		w.WriteHeader(status)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) setRespond(f func(n int, r received) int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.respond = f
}

func (rc *receiver) all() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.got...)
}

// wait returns the next notification POST, failing after a timeout.
func (rc *receiver) wait() received {
	rc.t.Helper()
	select {
	case r := <-rc.arrived:
		return r
	case <-time.After(5 * time.Second):
		rc.t.Fatal("no notification arrived within 5s")
		return received{}
	}
}

// parseNotification verifies and decrypts a received notification with wechatpay-go's
// notify handler and returns the envelope and the decrypted resource.
func parseNotification(t *testing.T, k *KeySet, r received) (*notify.Request, map[string]any) {
	t.Helper()
	h, err := notify.NewRSANotifyHandler(k.APIv3Key, platformVerifier(k))
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodPost, r.path, bytes.NewReader(r.body))
	req.Header = r.header.Clone()
	content := map[string]any{}
	n, err := h.ParseNotifyRequest(context.Background(), req, &content)
	if err != nil {
		t.Fatalf("notification does not parse: %v", err)
	}
	return n, content
}

func ioNop(s string) io.ReadCloser { return io.NopCloser(strings.NewReader(s)) }

// waitFor polls cond until it holds or a timeout passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
