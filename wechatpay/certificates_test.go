package wechatpay

import (
	"context"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/contractd/contractd/wechatpaysim"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// certWorld is a merchant and two simulated hosts, each with its own
// platform key: the global host and the domestic host.
type certWorld struct {
	keys      *wechatpaysim.KeySet
	hostSim   map[Host]*wechatpaysim.Simulator
	hostURL   map[Host]string
	hostCerts map[Host]*x509.Certificate
}

// newCertWorld starts both hosts. Each simulator lists its platform
// certificate unless noInitialCert, in which case it lists only what a
// rotation publishes.
func newCertWorld(t *testing.T, noInitialCert bool) *certWorld {
	t.Helper()
	w := &certWorld{hostSim: map[Host]*wechatpaysim.Simulator{}, hostURL: map[Host]string{}, hostCerts: map[Host]*x509.Certificate{}}
	var err error
	if w.keys, err = wechatpaysim.GenerateKeys(); err != nil {
		t.Fatal(err)
	}
	for _, h := range Hosts() {
		cfg := w.keys.SimConfig()
		if h == HostDomestic {
			other, err := wechatpaysim.GenerateKeys()
			if err != nil {
				t.Fatal(err)
			}
			cfg.PlatformPrivateKey, cfg.PlatformCert, cfg.PlatformSerial = other.PlatformKey, other.PlatformCert, other.PlatformSerial
		}
		w.hostCerts[h] = cfg.PlatformCert
		if noInitialCert {
			cfg.PlatformCert = nil
		}
		cfg.Logger = slog.New(slog.DiscardHandler)
		sim, err := wechatpaysim.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(sim.Handler())
		t.Cleanup(func() { srv.Close(); sim.Close() })
		w.hostSim[h], w.hostURL[h] = sim, srv.URL
	}
	return w
}

// client builds a merchant client of both hosts trusting configured.
func (w *certWorld) client(t *testing.T, configured ...*x509.Certificate) *Client {
	t.Helper()
	c, err := NewClient(Config{
		MchID: w.keys.MchID, MerchantSerial: w.keys.MerchantSerial, MerchantPrivateKey: w.keys.MerchantKey,
		APIv3Key: w.keys.APIv3Key, PlatformCerts: configured, DownloadCertificates: true,
		GlobalBaseURL: w.hostURL[HostGlobal], DomesticBaseURL: w.hostURL[HostDomestic], Timeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// manager attaches a manager with a quiet logger.
func (w *certWorld) manager(t *testing.T, c *Client, gap time.Duration) *CertificateManager {
	t.Helper()
	m, err := NewCertificateManager(c, CertificateManagerOptions{MinGap: gap, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// downloads counts the certificate downloads host received.
func (w *certWorld) downloads(h Host) int {
	n := 0
	for _, r := range w.hostSim[h].Requests() {
		if r.Path == "/v3/global/certificates" || r.Path == "/v3/certificates" {
			n++
		}
	}
	return n
}

// rotate publishes a new certificate on host and switches its signing now.
func (w *certWorld) rotate(t *testing.T, h Host, validFor time.Duration) string {
	t.Helper()
	c, err := w.hostSim[h].RotatePlatformCertificate(wechatpaysim.RotateRequest{ValidForSeconds: int64(validFor / time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	return c.SerialNo
}

// hostVerifier is the verifier a host's answers are checked with.
func hostVerifier(c *Client, h Host) *Verifier { return c.trust.verifier([]Host{h}) }

func TestCertificateManagerRefresh(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		faults wechatpaysim.Faults
		// accepted: the download is taken; otherwise refused and the
		// previous set stays.
		accepted bool
	}{
		{"valid list", wechatpaysim.Faults{}, true},
		{"signature does not verify", wechatpaysim.Faults{TamperCertificateSignature: true}, false},
		{"ciphertext does not decrypt", wechatpaysim.Faults{CorruptCertificateCiphertext: true}, false},
		{"answer is an error", wechatpaysim.Faults{ErrorCode: "SYSTEM_ERROR", ErrorCount: 1}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newCertWorld(t, false)
			c := w.client(t)
			m := w.manager(t, c, time.Minute)
			if err := m.Refresh(context.Background()); err != nil {
				t.Fatalf("first refresh: %v", err)
			}
			oldG, oldD := CertificateSerial(w.hostCerts[HostGlobal]), CertificateSerial(w.hostCerts[HostDomestic])
			newG := w.rotate(t, HostGlobal, 0)
			w.hostSim[HostGlobal].SetFaults(tc.faults)
			err := m.RefreshHost(context.Background(), HostGlobal)
			if tc.accepted != (err == nil) {
				t.Fatalf("refresh: %v, want accepted %v", err, tc.accepted)
			}
			if err != nil && !errors.Is(err, ErrCertificateDownload) {
				t.Errorf("refusal %v does not match ErrCertificateDownload", err)
			}
			g, d := hostVerifier(c, HostGlobal), hostVerifier(c, HostDomestic)
			if !g.KnowsSerial(oldG) || !d.KnowsSerial(oldD) {
				t.Error("a previous certificate was dropped")
			}
			if g.KnowsSerial(newG) != tc.accepted {
				t.Errorf("global knows the new serial: %v, want %v", g.KnowsSerial(newG), tc.accepted)
			}
			// Each host's set stays apart; notifications see every host.
			if d.KnowsSerial(newG) || d.KnowsSerial(oldG) || g.KnowsSerial(oldD) {
				t.Error("a host's certificates verify another host's answers")
			}
			if c.Verifier().KnowsSerial(newG) != tc.accepted || !c.Verifier().KnowsSerial(oldD) {
				t.Error("the notification verifier does not see every host's certificates")
			}
			want := 2.0
			if tc.accepted {
				want = 3
			}
			if got := testutil.ToFloat64(m.metrics.known.WithLabelValues("global")) + testutil.ToFloat64(m.metrics.known.WithLabelValues("domestic")); got != want {
				t.Errorf("certificates known %v, want %v", got, want)
			}
			ok := 0.0
			if tc.accepted {
				ok = 1
			}
			if got := testutil.ToFloat64(m.metrics.lastSuccess.WithLabelValues("global")); got != ok {
				t.Errorf("last refresh success %v, want %v", got, ok)
			}
			// With the faults gone the rotation is learnt.
			w.hostSim[HostGlobal].SetFaults(wechatpaysim.Faults{})
			if err := m.RefreshHost(context.Background(), HostGlobal); err != nil || !g.KnowsSerial(newG) || !g.KnowsSerial(oldG) {
				t.Errorf("refresh without faults: %v; new known %v, old kept %v", err, g.KnowsSerial(newG), g.KnowsSerial(oldG))
			}
		})
	}
}

func TestCertificateManagerUnknownSerials(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		calls int
		gap   time.Duration
		// want is the number of downloads per host the calls cause.
		want int
	}{
		{"one unknown serial downloads each host once", 1, time.Minute, 1},
		{"a hundred concurrent unknown serials share one download per host", 100, time.Minute, 1},
		{"after the gap another download is allowed", 2, time.Nanosecond, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newCertWorld(t, false)
			c := w.client(t)
			m := w.manager(t, c, tc.gap)
			if err := m.Refresh(context.Background()); err != nil {
				t.Fatal(err)
			}
			before := map[Host]int{HostGlobal: w.downloads(HostGlobal), HostDomestic: w.downloads(HostDomestic)}
			var wg sync.WaitGroup
			for i := range tc.calls {
				learn := func() {
					if c.Verifier().LearnSerial(context.Background(), "FORGED"+string(rune('A'+i%26))) {
						t.Error("a forged serial was learnt")
					}
				}
				if tc.gap < time.Millisecond {
					learn() // sequential: each call finds the gap over
					continue
				}
				wg.Go(learn)
			}
			wg.Wait()
			for _, h := range Hosts() {
				if got := w.downloads(h) - before[h]; got != tc.want {
					t.Errorf("%s: %d downloads, want %d", h, got, tc.want)
				}
			}
		})
	}
}

func TestCertificateManagerLearnsRotationOnUnknownSerial(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		startup bool // refresh before the call, as serve does
		rotate  bool // the host rotates before the call
	}{
		// No configured certificates and no refresh yet: the first answer's
		// serial is unknown, so it causes the first download, then verifies.
		{"first answer before any download", false, false},
		// An answer signed with a certificate published after start-up
		// verifies after one more download.
		{"answer after a rotation", true, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newCertWorld(t, false)
			c := w.client(t)
			m := w.manager(t, c, time.Minute)
			if tc.startup {
				if err := m.Refresh(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			if tc.rotate {
				w.rotate(t, HostGlobal, 0)
			}
			before := w.downloads(HostGlobal)
			_, err := c.GlobalPreSign(context.Background(), ChannelH5, GlobalPreSignRequest{
				AppID: w.keys.AppID, PlanID: 123, OutContractCode: "learn-1", UserDisplayName: "Zhang San",
				SuccessNotifyURL: "https://merchant.example/v1/notifications/wechatpay",
				ExpiredTime:      time.Now().Add(7 * time.Minute).Format(time.RFC3339),
			})
			if err != nil {
				t.Fatalf("pre-sign: %v", err)
			}
			if got := w.downloads(HostGlobal) - before; got != 1 {
				t.Errorf("%d downloads, want 1", got)
			}
		})
	}
}

func TestCertificateManagerWarnsBeforeExpiry(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		validFor time.Duration
		expiring float64
	}{
		{"expires within 24h without successor", time.Hour, 1},
		{"expires later", 48 * time.Hour, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newCertWorld(t, true)
			w.rotate(t, HostGlobal, tc.validFor)
			w.rotate(t, HostDomestic, 48*time.Hour)
			c := w.client(t)
			m := w.manager(t, c, time.Minute)
			if err := m.Refresh(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got := testutil.ToFloat64(m.metrics.expiring.WithLabelValues("global")); got != tc.expiring {
				t.Errorf("global expiring %v, want %v", got, tc.expiring)
			}
			if got := testutil.ToFloat64(m.metrics.expiring.WithLabelValues("domestic")); got != 0 {
				t.Errorf("domestic expiring %v, want 0", got)
			}
		})
	}
}

func TestCertificateManagerRefusesForeignCertificate(t *testing.T) {
	t.Parallel()
	// A list signed by a certificate that is neither listed nor known is refused.
	w := newCertWorld(t, true)
	serial := w.rotate(t, HostGlobal, 0)
	w.hostSim[HostGlobal].SetFaults(wechatpaysim.Faults{OverrideSerial: "0123456789ABCDEF"})
	c := w.client(t)
	m := w.manager(t, c, time.Minute)
	err := m.RefreshHost(context.Background(), HostGlobal)
	if !errors.Is(err, ErrCertificateDownload) || !errors.Is(err, ErrUnknownSerial) {
		t.Fatalf("refresh: %v, want a refusal for an unknown signer", err)
	}
	if hostVerifier(c, HostGlobal).KnowsSerial(serial) {
		t.Error("the refused list was installed")
	}
}
