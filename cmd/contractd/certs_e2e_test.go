package main

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/contractd/contractd/internal/pgtest"
	"github.com/contractd/contractd/wechatpaysim"
)

// certDownloads counts the certificate downloads the simulator received, per host.
func certDownloads(s *stack) (global, domestic int) {
	for _, r := range s.Sim.Requests() {
		switch r.Path {
		case "/v3/global/certificates":
			global++
		case "/v3/certificates":
			domestic++
		}
	}
	return global, domestic
}

// certRotate asks the simulator, through its control route, to publish a new
// platform certificate and sign with it from now on.
func certRotate(t *testing.T, s *stack) wechatpaysim.PlatformCertificate {
	t.Helper()
	resp, err := http.Post(s.SimURL+"/sim/platform-certificates/rotate", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("rotate: %d %s", resp.StatusCode, b)
	}
	var c wechatpaysim.PlatformCertificate
	response{Body: b}.JSON(t, &c)
	if !c.Signing || c.SerialNo == s.Keys.PlatformSerial {
		t.Fatalf("rotation %+v does not sign with a new certificate", c)
	}
	return c
}

// certMetric returns the /metrics line that starts with prefix ("" when absent).
func certMetric(t *testing.T, s *stack, prefix string) string {
	t.Helper()
	r := s.do(http.MethodGet, "/metrics", "", nil)
	for line := range strings.SplitSeq(string(r.Body), "\n") {
		if strings.HasPrefix(line, prefix) {
			return line
		}
	}
	return ""
}

func TestCertRotationNotificationAcceptedAtFirstDelivery(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{})
	const code = "cert-rot-1"
	ntPreSign(t, s, code)
	if g, d := certDownloads(s); g != 0 || d != 0 {
		t.Fatalf("downloads before the rotation: %d, %d", g, d)
	}

	// contractd knows only the old certificate; WeChat rotates and signs the
	// next notification with the new one.
	rotated := certRotate(t, s)
	ntSign(t, s, code)
	// The simulator records an attempt once contractd's answer is back,
	// which may be a moment after the contract reads signed.
	eventually(t, 30*time.Second, code+" signed and its delivery acknowledged", func() bool {
		ds := ntDeliveries(s, code)
		return ntState(t, s, code) == "signed" && len(ds) == 1 && ds[0].Done
	})
	ds := ntDeliveries(s, code)
	if len(ds) != 1 {
		t.Fatalf("%d deliveries, want 1", len(ds))
	}
	if st := ntStatuses(ds[0]); len(st) != 1 || st[0] != http.StatusNoContent {
		t.Fatalf("delivery attempts %v, want one answered 204", st)
	}
	sent := rotated.SerialNo
	if g, d := certDownloads(s); g != 1 || d != 1 {
		t.Errorf("the unknown serial caused %d global and %d domestic downloads, want 1 each", g, d)
	}
	// The client's answers from the global host verify under the new certificate too.
	if r := s.do(http.MethodPost, "/v1/contracts/"+code+"/sync", opsToken, nil); r.Status != http.StatusOK {
		t.Errorf("sync after the rotation: %d %s", r.Status, r.Body)
	}
	if line := certMetric(t, s, `contractd_wechatpay_platform_certificate_expiry_timestamp_seconds{host="global",serial="`+sent+`"}`); line == "" {
		t.Error("metrics do not list the new certificate's expiry")
	}
	if line := certMetric(t, s, `contractd_wechatpay_platform_certificates{host="global"}`); !strings.HasSuffix(line, " 2") {
		t.Errorf("certificates known: %q, want 2 (old and new)", line)
	}
}

// certForgedNotification posts a notification signed by key under serial.
func certForgedNotification(t testing.TB, s *stack, body []byte, key *rsa.PrivateKey, serial string) (int, error) {
	h := ntWeChatHeaders(t, s.Keys, body, key)
	h.Set("Wechatpay-Serial", serial)
	r, err := send(t, s.URL, request{Method: http.MethodPost, Path: "/v1/notifications/wechatpay", Body: body, Header: h})
	return r.Status, err
}

func TestCertForgedSerialsCauseOneDownloadPerHost(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{})
	forger, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	const n = 100
	statuses := make([]int, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		body := ntEnvelope(t, s.Keys, fmt.Sprintf("forged-%03d", i), "PAPAY.SIGN",
			ntSignResource(s.Keys, fmt.Sprintf("cert-forged-%03d", i), fmt.Sprintf("2026%016d", i)))
		serial := strings.ToUpper(ntRandom(20))
		wg.Go(func() { statuses[i], errs[i] = certForgedNotification(t, s, body, forger, serial) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil || statuses[i] != http.StatusUnauthorized {
			t.Fatalf("forged notification %d: %d %v, want 401", i, statuses[i], errs[i])
		}
	}
	if g, d := certDownloads(s); g != 1 || d != 1 {
		t.Errorf("%d forged serials caused %d global and %d domestic downloads, want 1 each (at most one per host)", n, g, d)
	}
	for _, table := range []string{"contracts", "contract_events", "wechat_notifications"} {
		if c := s.count(`SELECT count(*) FROM ` + table); c != 0 {
			t.Errorf("%d rows in %s", c, table)
		}
	}
	if line := certMetric(t, s, `contractd_wechatpay_certificate_refreshes_total{host="global",outcome="ok",reason="unknown_serial"}`); !strings.HasSuffix(line, " 1") {
		t.Errorf("refresh metric %q, want 1 download for unknown serials", line)
	}
}

func TestCertStartWithoutCertificateFiles(t *testing.T) {
	t.Parallel()
	// Certificate mode without files: the first download provides them.
	s := startStack(t, stackOptions{Env: map[string]string{
		"WECHATPAY_PLATFORM_CERT_FILES": "", "WECHATPAY_PUBLIC_KEY_ID": "", "WECHATPAY_PUBLIC_KEY_FILE": "",
	}})
	const code = "cert-nofiles-1"
	ntPreSign(t, s, code) // the answer verifies against the downloaded certificate
	ntSign(t, s, code)
	eventually(t, 30*time.Second, code+" signed", func() bool { return ntState(t, s, code) == "signed" })
	if g, d := certDownloads(s); g != 0 || d != 0 {
		t.Errorf("%d, %d downloads after start-up, want none: the start-up download was enough", g, d)
	}
	for _, host := range []string{"global", "domestic"} {
		if line := certMetric(t, s, `contractd_wechatpay_platform_certificates{host="`+host+`"}`); !strings.HasSuffix(line, " 1") {
			t.Errorf("%s certificates known: %q, want 1", host, line)
		}
		if line := certMetric(t, s, `contractd_wechatpay_certificate_refresh_success{host="`+host+`"}`); !strings.HasSuffix(line, " 1") {
			t.Errorf("%s last refresh: %q, want success", host, line)
		}
	}
}

func TestCertStartFailsWhenTheFirstDownloadFails(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	env := cliServeEnv(t, db.URL) // WeChat's hosts point where nothing listens
	env["WECHATPAY_PLATFORM_CERT_FILES"], env["WECHATPAY_PUBLIC_KEY_ID"], env["WECHATPAY_PUBLIC_KEY_FILE"] = "", "", ""
	var stdout, stderr bytes.Buffer
	code := run(t.Context(), []string{"serve"}, func(k string) string { return env[k] }, &stdout, &stderr)
	out := stderr.String()
	if code == 0 || strings.Count(out, "\n") != 1 || !strings.Contains(out, "WECHATPAY_PLATFORM_CERT_FILES is not set and the first download failed") {
		t.Fatalf("exit %d, stderr %q: want one line saying the first certificate download failed", code, out)
	}
	if strings.Contains(out, env["WECHATPAY_APIV3_KEY"]) {
		t.Fatal("the APIv3 key leaked")
	}
}

func TestCertBadRefreshSettingStopsStartUp(t *testing.T) {
	t.Parallel()
	cases := []struct{ name, value string }{
		{"WECHATPAY_CERT_REFRESH_INTERVAL", "twice a day"},
		{"WECHATPAY_CERT_REFRESH_MIN_GAP", "0"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := cliServeEnv(t, "postgres://127.0.0.1:1/none")
			env[tc.name] = tc.value
			var stdout, stderr bytes.Buffer
			code := run(t.Context(), []string{"serve"}, func(k string) string { return env[k] }, &stdout, &stderr)
			if out := stderr.String(); code != 2 || strings.Count(out, "\n") != 1 || !strings.Contains(out, tc.name) {
				t.Fatalf("exit %d, stderr %q: want one line naming %s", code, out, tc.name)
			}
		})
	}
}
