package wechatpaysim_test

import (
	"context"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/contractd/contractd/wechatpay"
	"github.com/contractd/contractd/wechatpaysim"
)

// The merchant client (package wechatpay) against the simulator: two independent
// implementations of the two sides of the protocol.

var generateOnce = sync.OnceValues(wechatpaysim.GenerateKeys)

func rtKeys() *wechatpaysim.KeySet {
	k, err := generateOnce()
	if err != nil {
		panic(err)
	}
	return k
}

const (
	rtNotifyURL = "https://merchant.example.com/v1/notifications/wechatpay"
	rtAppID     = "wxd678efh567hg6787"
)

// parsed is one notification as the merchant's parser saw it.
type parsed struct {
	n   *wechatpay.Notification
	err error
	sig string
}

// rt is a simulator, a client and a merchant notification endpoint that parses every
// notification with wechatpay.NotificationParser and answers 204 or 401.
type rt struct {
	t      *testing.T
	keys   *wechatpaysim.KeySet
	sim    *wechatpaysim.Simulator
	srv    *httptest.Server
	client *wechatpay.Client
	got    chan parsed
}

func newRT(t *testing.T, simOpt func(*wechatpaysim.Config), clientOpt func(*wechatpay.Config)) *rt {
	t.Helper()
	k := rtKeys()
	r := &rt{t: t, keys: k, got: make(chan parsed, 50)}

	clientCfg := wechatpay.Config{
		MchID:              k.MchID,
		MerchantSerial:     k.MerchantSerial,
		MerchantPrivateKey: k.MerchantKey,
		APIv3Key:           k.APIv3Key,
		PlatformCerts:      []*x509.Certificate{k.PlatformCert},
		PublicKeyID:        k.PublicKeyID,
		PublicKey:          &k.PlatformKey.PublicKey,
		Timeout:            5 * time.Second,
	}
	if clientOpt != nil {
		clientOpt(&clientCfg)
	}
	verifier, err := wechatpay.NewVerifier(clientCfg)
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	parser, err := wechatpay.NewNotificationParser(clientCfg.APIv3Key, verifier)
	if err != nil {
		t.Fatalf("NewNotificationParser: %v", err)
	}
	merchant := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(req.Body)
		if err != nil {
			w.WriteHeader(400)
			return
		}
		n, err := parser.Parse(req.Context(), req.Header, body)
		r.got <- parsed{n: n, err: err, sig: req.Header.Get("Wechatpay-Signature")}
		if err != nil {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"code":"FAIL","message":"bad notification"}`))
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(merchant.Close)

	simCfg := k.SimConfig()
	simCfg.TerminateNotifyURL = "https://merchant.example.com/v1/notifications/wechatpay"
	simCfg.NotifyTarget = merchant.URL
	simCfg.TimeScale = 0.001
	simCfg.Logger = slog.New(slog.DiscardHandler)
	if simOpt != nil {
		simOpt(&simCfg)
	}
	r.sim, err = wechatpaysim.New(simCfg)
	if err != nil {
		t.Fatalf("wechatpaysim.New: %v", err)
	}
	r.srv = httptest.NewServer(r.sim.Handler())
	t.Cleanup(func() {
		r.sim.Close()
		r.srv.Close()
	})

	clientCfg.GlobalBaseURL, clientCfg.DomesticBaseURL = r.srv.URL, r.srv.URL
	r.client, err = wechatpay.NewClient(clientCfg)
	if err != nil {
		t.Fatalf("wechatpay.NewClient: %v", err)
	}
	return r
}

// next returns the next notification the merchant endpoint parsed.
func (r *rt) next() parsed {
	r.t.Helper()
	select {
	case p := <-r.got:
		return p
	case <-time.After(5 * time.Second):
		r.t.Fatal("no notification within 5s")
		return parsed{}
	}
}

// nextOK returns the next notification, which must have parsed.
func (r *rt) nextOK() *wechatpay.Notification {
	r.t.Helper()
	p := r.next()
	if p.err != nil {
		r.t.Fatalf("notification refused by the parser: %v", p.err)
	}
	return p.n
}

func (r *rt) sign(req wechatpaysim.SignRequest) *wechatpaysim.Contract {
	r.t.Helper()
	c, err := r.sim.Sign(context.Background(), req)
	if err != nil {
		r.t.Fatalf("Sign %+v: %v", req, err)
	}
	return c
}

func apiError(t *testing.T, err error) *wechatpay.APIError {
	t.Helper()
	var ae *wechatpay.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("error %v (%T) is not a *wechatpay.APIError", err, err)
	}
	return ae
}

func globalReq(code string) wechatpay.GlobalPreSignRequest {
	return wechatpay.GlobalPreSignRequest{
		AppID: rtAppID, PlanID: 123, OutContractCode: code, UserDisplayName: "张三",
		SuccessNotifyURL: rtNotifyURL, OpenID: "ouFhd5X9s9WteC3eWRjXV3lea123",
	}
}

func TestClientRoundTripGlobal(t *testing.T) {
	modes := []struct {
		name   string
		serial func(*wechatpaysim.KeySet) string
	}{
		{"sim signs with the certificate serial", func(k *wechatpaysim.KeySet) string { return k.PlatformSerial }},
		{"sim signs with the public key id", func(k *wechatpaysim.KeySet) string { return k.PublicKeyID }},
	}
	channels := []wechatpay.Channel{wechatpay.ChannelApp, wechatpay.ChannelMiniProgram, wechatpay.ChannelH5, wechatpay.ChannelJSAPI, wechatpay.ChannelWeb}
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			r := newRT(t, func(c *wechatpaysim.Config) { c.PlatformSerial = mode.serial(rtKeys()) }, nil)
			ctx := context.Background()
			for _, ch := range channels {
				t.Run(string(ch), func(t *testing.T) {
					code := "RT-" + string(ch)
					req := globalReq(code)
					if ch == wechatpay.ChannelH5 || ch == wechatpay.ChannelWeb {
						req.ExpiredTime = time.Now().Add(8 * time.Minute).Format(time.RFC3339)
					}
					resp, err := r.client.GlobalPreSign(ctx, ch, req)
					if err != nil {
						t.Fatalf("GlobalPreSign: %v", err)
					}
					sessionID := resp.SessionID
					if !ch.ReturnsSession() {
						if !strings.HasPrefix(resp.URL(), r.srv.URL+"/sim/sign-page/") {
							t.Fatalf("URL %q", resp.URL())
						}
						sessionID = path.Base(resp.URL())
					}
					if sessionID == "" {
						t.Fatalf("answer %+v", resp)
					}
					c := r.sign(wechatpaysim.SignRequest{SessionID: sessionID})
					n := r.nextOK()
					if n.EventType != wechatpay.EventTypePapaySign || n.Contract.Kind != wechatpay.EventSign ||
						n.Contract.Family != wechatpay.FamilyGlobal || n.Contract.ContractID != c.ContractID ||
						n.Contract.OutContractCode != code || n.Contract.PlanID != 123 || n.Contract.MchID != r.keys.MchID ||
						n.Contract.AppID != rtAppID || n.Contract.OpenID != c.OpenID || !n.Contract.OperateTime.Equal(c.SignedTime.Truncate(time.Second)) {
						t.Errorf("sign notification %+v", n.Contract)
					}

					byID, err := r.client.QueryGlobalByContractID(ctx, c.ContractID, wechatpay.GlobalQuery{AppID: rtAppID})
					if err != nil {
						t.Fatalf("QueryGlobalByContractID: %v", err)
					}
					byCode, err := r.client.QueryGlobalByOutContractCode(ctx, code, wechatpay.GlobalQuery{AppID: rtAppID, PlanID: 123})
					if err != nil {
						t.Fatalf("QueryGlobalByOutContractCode: %v", err)
					}
					for _, g := range []*wechatpay.GlobalContract{byID, byCode} {
						if g.ContractID != c.ContractID || g.State != "SIGNED" || g.PlanID != 123 || g.OutContractCode != code ||
							g.UserDisplayName != "张三" || g.MchID != r.keys.MchID || g.AppID != rtAppID || g.SignedTime == "" {
							t.Errorf("query %+v", g)
						}
					}

					_, err = r.client.GlobalPreSign(ctx, wechatpay.ChannelApp, globalReq(code))
					if ae := apiError(t, err); ae.StatusCode != 403 || ae.Code != "CONTRACT_EXISTED" {
						t.Errorf("pre-sign of a signed code: %+v", ae)
					}

					if err := r.client.TerminateGlobal(ctx, c.ContractID, wechatpay.GlobalTerminateRequest{AppID: rtAppID, TerminationNote: "done"}); err != nil {
						t.Fatalf("TerminateGlobal: %v", err)
					}
					n = r.nextOK()
					if n.EventType != wechatpay.EventTypePapayTerminate || n.Contract.Kind != wechatpay.EventTerminate ||
						n.Contract.ContractID != c.ContractID || n.Contract.TerminationMode != "MERCHANT" {
						t.Errorf("terminate notification %+v", n.Contract)
					}
					g, err := r.client.QueryGlobalByContractID(ctx, c.ContractID, wechatpay.GlobalQuery{AppID: rtAppID})
					if err != nil || g.State != "TERMINATED" || g.TerminationMode != "MERCHANT" || g.TerminationNote != "done" || g.TerminatedTime == "" {
						t.Errorf("query after terminate: %+v, %v", g, err)
					}
					err = r.client.TerminateGlobal(ctx, c.ContractID, wechatpay.GlobalTerminateRequest{AppID: rtAppID, TerminationNote: "again"})
					if ae := apiError(t, err); ae.StatusCode != 403 || ae.Code != "CONTRACT_NOT_EXIST" {
						t.Errorf("terminate twice: %+v", ae)
					}
				})
			}

			// A user termination reaches the merchant too.
			resp, err := r.client.GlobalPreSign(ctx, wechatpay.ChannelApp, globalReq("RT-USER"))
			if err != nil {
				t.Fatal(err)
			}
			c := r.sign(wechatpaysim.SignRequest{SessionID: resp.SessionID})
			r.nextOK()
			if _, err := r.sim.TerminateAsUser(ctx, c.ContractID); err != nil {
				t.Fatal(err)
			}
			if n := r.nextOK(); n.EventType != wechatpay.EventTypePapayTerminate || n.Contract.TerminationMode != "USER" {
				t.Errorf("user termination %+v", n.Contract)
			}

			_, err = r.client.QueryGlobalByContractID(ctx, "12345678901234567890", wechatpay.GlobalQuery{AppID: rtAppID})
			if ae := apiError(t, err); ae.StatusCode != 403 || ae.Code != "CONTRACT_NOT_EXIST" {
				t.Errorf("unknown contract: %+v", ae)
			}
			bad := globalReq("RT-BAD")
			bad.SuccessNotifyURL = "http://merchant.example.com/n"
			_, err = r.client.GlobalPreSign(ctx, wechatpay.ChannelApp, bad)
			if ae := apiError(t, err); ae.StatusCode != 400 || ae.Code != "PARAM_ERROR" || !strings.Contains(string(ae.Detail), "success_notify_url") {
				t.Errorf("http notify url: %+v", ae)
			}
		})
	}
}

func TestClientRoundTripInstitutional(t *testing.T) {
	r := newRT(t, nil, nil)
	ctx := context.Background()
	req := globalReq("RT-INST")
	req.AppID, req.SpAppID, req.SubMchID, req.SubAppID = "", "wxsp00000001", "1900000001", "wxsub0000001"
	resp, err := r.client.GlobalPreSign(ctx, wechatpay.ChannelMiniProgram, req)
	if err != nil {
		t.Fatal(err)
	}
	c := r.sign(wechatpaysim.SignRequest{SessionID: resp.SessionID})
	n := r.nextOK()
	if n.Contract.SpMchID != r.keys.MchID || n.Contract.SubMchID != "1900000001" || n.Contract.SpAppID != "wxsp00000001" ||
		n.Contract.SubAppID != "wxsub0000001" || n.Contract.SpOpenID != c.OpenID || n.Contract.SubOpenID == "" {
		t.Errorf("institutional notification %+v", n.Contract)
	}
	q := wechatpay.GlobalQuery{SpAppID: "wxsp00000001", SubMchID: "1900000001", SubAppID: "wxsub0000001", PlanID: 123}
	for _, get := range []func() (*wechatpay.GlobalContract, error){
		func() (*wechatpay.GlobalContract, error) {
			return r.client.QueryGlobalByContractID(ctx, c.ContractID, q)
		},
		func() (*wechatpay.GlobalContract, error) {
			return r.client.QueryGlobalByOutContractCode(ctx, "RT-INST", q)
		},
	} {
		g, err := get()
		if err != nil || g.ContractID != c.ContractID || g.SpMchID != r.keys.MchID || g.SubMchID != "1900000001" || g.State != "SIGNED" {
			t.Errorf("institutional query %+v, %v", g, err)
		}
	}
	err = r.client.TerminateGlobal(ctx, c.ContractID, wechatpay.GlobalTerminateRequest{
		SpAppID: "wxsp00000001", SubMchID: "1900000001", SubAppID: "wxsub0000001", TerminationNote: "n"})
	if err != nil {
		t.Fatal(err)
	}
	if n := r.nextOK(); n.Contract.Kind != wechatpay.EventTerminate || n.Contract.SubMchID != "1900000001" {
		t.Errorf("institutional termination %+v", n.Contract)
	}
}

func TestClientRoundTripDomestic(t *testing.T) {
	modes := []wechatpay.DomesticMode{wechatpay.DomesticNormal, wechatpay.DomesticEcommerce, wechatpay.DomesticServiceProvider}
	for _, serialMode := range []string{"certificate", "public key id"} {
		t.Run(serialMode, func(t *testing.T) {
			r := newRT(t, func(c *wechatpaysim.Config) {
				if serialMode == "public key id" {
					c.PlatformSerial = rtKeys().PublicKeyID
				}
			}, nil)
			ctx := context.Background()
			for _, mode := range modes {
				t.Run(string(mode), func(t *testing.T) {
					code := "RTD" + strings.ReplaceAll(string(mode), "-", "")
					req := wechatpay.DomesticPreSignRequest{
						AppID: rtAppID, ServiceID: 12535, OutContractCode: code, NotifyURL: rtNotifyURL,
						ContractDisplayAccount: "微信代扣用户A", OpenID: "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
					}
					subMchID := ""
					if mode == wechatpay.DomesticServiceProvider {
						subMchID = "1900000002"
						req.AppID, req.OpenID = "", ""
						req.SpAppID, req.SubMchID, req.SpOpenID = "wxsp00000001", subMchID, "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
					}
					resp, err := r.client.DomesticPreSign(ctx, mode, req)
					if err != nil {
						t.Fatalf("DomesticPreSign: %v", err)
					}
					if resp.PreEntrustwebID == "" || resp.MchID != r.keys.MchID || resp.ServiceID != 12535 || resp.OutContractCode != code ||
						resp.SignMpAppID == "" || !strings.Contains(resp.SignMpPath, resp.PreEntrustwebID) {
						t.Fatalf("pre-sign answer %+v", resp)
					}
					c := r.sign(wechatpaysim.SignRequest{SessionID: resp.PreEntrustwebID})
					n := r.nextOK()
					if n.EventType != wechatpay.EventTypeEntrustSign || n.Contract.Family != wechatpay.FamilyDomestic ||
						n.Contract.ContractState != "SIGNED" || n.Contract.ContractID != c.ContractID || n.Contract.ServiceID != 12535 ||
						n.Contract.SubMchID != subMchID || n.Contract.OperateTime.IsZero() {
						t.Errorf("sign notification %+v", n.Contract)
					}
					d, err := r.client.QueryDomestic(ctx, 12535, code, subMchID)
					if err != nil || d.ContractID != c.ContractID || d.ContractState != "SIGNED" || d.ContractSignedTime == "" {
						t.Fatalf("QueryDomestic: %+v, %v", d, err)
					}
					err = r.client.TerminateDomestic(ctx, 12535, code, wechatpay.DomesticTerminateRequest{ContractTerminationRemark: "bye", SubMchID: subMchID})
					if err != nil {
						t.Fatalf("TerminateDomestic: %v", err)
					}
					n = r.nextOK()
					if n.EventType != wechatpay.EventTypeEntrustTerminate || n.Contract.ContractState != "TERMINATED" ||
						n.Contract.TerminationMode != "MERCHANT" || n.Contract.TerminationNote != "bye" {
						t.Errorf("terminate notification %+v", n.Contract)
					}
					d, err = r.client.QueryDomestic(ctx, 12535, code, subMchID)
					if err != nil || d.ContractState != "TERMINATED" || d.ContractTerminateInfo == nil ||
						d.ContractTerminateInfo.ContractTerminationMode != "MERCHANT" || d.ContractTerminateInfo.ContractTerminationRemark != "bye" {
						t.Errorf("query after terminate: %+v, %v", d, err)
					}
				})
			}
			_, err := r.client.QueryDomestic(ctx, 12535, "RTD-NONE", "")
			if ae := apiError(t, err); ae.StatusCode != 403 || ae.Code != "CONTRACT_NOT_EXIST" {
				t.Errorf("unknown domestic contract: %+v", ae)
			}
		})
	}
}

func TestClientRefusedBySimulator(t *testing.T) {
	other, err := wechatpaysim.GenerateKeys()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		simOpt    func(*wechatpaysim.Config)
		clientOpt func(*wechatpay.Config)
	}{
		{"wrong merchant key", nil, func(c *wechatpay.Config) { c.MerchantPrivateKey = other.MerchantKey }},
		{"wrong merchant serial", nil, func(c *wechatpay.Config) { c.MerchantSerial = other.MerchantSerial }},
		{"wrong mchid", nil, func(c *wechatpay.Config) { c.MchID = other.MchID }},
		// wechatpay-go signs with time.Now, so the skew is put on the simulator's clock.
		{"client clock 6 minutes behind", func(c *wechatpaysim.Config) {
			c.Now = func() time.Time { return time.Now().Add(6 * time.Minute) }
		}, nil},
		{"client clock 6 minutes ahead", func(c *wechatpaysim.Config) {
			c.Now = func() time.Time { return time.Now().Add(-6 * time.Minute) }
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRT(t, tt.simOpt, tt.clientOpt)
			_, err := r.client.GlobalPreSign(context.Background(), wechatpay.ChannelApp, globalReq("REFUSED"))
			if ae := apiError(t, err); ae.StatusCode != 401 || ae.Code != "SIGN_ERROR" || ae.Retryable {
				t.Errorf("error %+v, want 401 SIGN_ERROR", ae)
			}
			if reqs := r.sim.Requests(); len(reqs) != 1 || reqs[0].Verified {
				t.Errorf("recorded %+v", reqs)
			}
		})
	}
	t.Run("within 4 minutes", func(t *testing.T) {
		r := newRT(t, func(c *wechatpaysim.Config) { c.Now = func() time.Time { return time.Now().Add(4 * time.Minute) } }, nil)
		if _, err := r.client.GlobalPreSign(context.Background(), wechatpay.ChannelApp, globalReq("SKEW4")); err != nil {
			t.Errorf("4 minutes of skew refused: %v", err)
		}
	})
}

func TestClientRefusesBadAnswers(t *testing.T) {
	tests := []struct {
		name      string
		simOpt    func(*wechatpaysim.Config)
		clientOpt func(*wechatpay.Config)
		faults    wechatpaysim.Faults
	}{
		{"tampered body", nil, nil, wechatpaysim.Faults{TamperResponses: true}},
		{"unknown serial", nil, nil, wechatpaysim.Faults{OverrideSerial: "5157F09EFDC096DE15EBE81A47057A7232F1B8E1"}},
		{"unknown public key id", nil, nil, wechatpaysim.Faults{OverrideSerial: "PUB_KEY_ID_0000000000000000000000000000000"}},
		{"platform key unknown to the client", func(c *wechatpaysim.Config) { c.PlatformSerial = "PUB_KEY_ID_1111" }, nil, wechatpaysim.Faults{}},
		{"sim on public key id, client on certificates only", func(c *wechatpaysim.Config) { c.PlatformSerial = rtKeys().PublicKeyID },
			func(c *wechatpay.Config) { c.PublicKeyID, c.PublicKey = "", nil }, wechatpaysim.Faults{}},
		{"sim on certificate, client on public key only", nil,
			func(c *wechatpay.Config) { c.PlatformCerts = nil }, wechatpaysim.Faults{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRT(t, tt.simOpt, tt.clientOpt)
			ctx := context.Background()
			r.sim.SetFaults(tt.faults)
			_, err := r.client.GlobalPreSign(ctx, wechatpay.ChannelApp, globalReq("BADANS"))
			if ae := apiError(t, err); ae.Code != wechatpay.CodeInvalidResponseSignature || ae.Retryable {
				t.Errorf("pre-sign answer accepted or misread: %+v", ae)
			}
			// Sign with the faults off, to have a contract to query and terminate.
			r.sim.SetFaults(wechatpaysim.Faults{})
			c := r.sign(wechatpaysim.SignRequest{OutContractCode: "BADANS"})
			r.next()
			r.sim.SetFaults(tt.faults)
			_, err = r.client.QueryGlobalByContractID(ctx, c.ContractID, wechatpay.GlobalQuery{AppID: rtAppID})
			if ae := apiError(t, err); ae.Code != wechatpay.CodeInvalidResponseSignature {
				t.Errorf("query answer: %+v", ae)
			}
			err = r.client.TerminateGlobal(ctx, c.ContractID, wechatpay.GlobalTerminateRequest{AppID: rtAppID, TerminationNote: "n"})
			if ae := apiError(t, err); ae.Code != wechatpay.CodeInvalidResponseSignature {
				t.Errorf("204 terminate answer: %+v", ae)
			}
		})
	}
}

func TestClientSeesInjectedErrors(t *testing.T) {
	r := newRT(t, nil, nil)
	ctx := context.Background()
	r.sim.SetFaults(wechatpaysim.Faults{ErrorCode: "SYSTEM_ERROR", ErrorCount: 2})
	for i := range 2 {
		_, err := r.client.GlobalPreSign(ctx, wechatpay.ChannelApp, globalReq("FAULTY"))
		if ae := apiError(t, err); ae.StatusCode != 500 || ae.Code != "SYSTEM_ERROR" || !ae.Retryable {
			t.Errorf("call %d: %+v", i+1, ae)
		}
	}
	if _, err := r.client.GlobalPreSign(ctx, wechatpay.ChannelApp, globalReq("FAULTY")); err != nil {
		t.Errorf("third call: %v", err)
	}
	r.sim.SetFaults(wechatpaysim.Faults{ErrorCode: "FREQUENCY_LIMIT_EXCEED", ErrorCount: 1})
	_, err := r.client.QueryGlobalByOutContractCode(ctx, "FAULTY", wechatpay.GlobalQuery{AppID: rtAppID, PlanID: 123})
	if ae := apiError(t, err); ae.StatusCode != 429 || ae.Code != "FREQUENCY_LIMIT_EXCEED" {
		t.Errorf("429: %+v", ae)
	}
}

func TestParserAgainstNotificationFaults(t *testing.T) {
	t.Run("probe", func(t *testing.T) {
		r := newRT(t, nil, nil)
		r.sim.SetFaults(wechatpaysim.Faults{ProbeSignatures: true, DuplicateDeliveries: 1})
		resp, err := r.client.GlobalPreSign(context.Background(), wechatpay.ChannelApp, globalReq("PROBE"))
		if err != nil {
			t.Fatal(err)
		}
		r.sign(wechatpaysim.SignRequest{SessionID: resp.SessionID})
		probe := r.next()
		if !errors.Is(probe.err, wechatpay.ErrProbeSignature) {
			t.Errorf("probe: %v (signature %.30s)", probe.err, probe.sig)
		}
		a, b := r.nextOK(), r.nextOK()
		if a.ID != b.ID {
			t.Errorf("duplicates with ids %s and %s", a.ID, b.ID)
		}
	})
	t.Run("unknown serial", func(t *testing.T) {
		r := newRT(t, nil, nil)
		resp, err := r.client.GlobalPreSign(context.Background(), wechatpay.ChannelApp, globalReq("SERIAL"))
		if err != nil {
			t.Fatal(err)
		}
		r.sim.SetFaults(wechatpaysim.Faults{OverrideSerial: "PUB_KEY_ID_9999"})
		r.sign(wechatpaysim.SignRequest{SessionID: resp.SessionID})
		if p := r.next(); !errors.Is(p.err, wechatpay.ErrUnknownSerial) {
			t.Errorf("unknown serial: %v", p.err)
		}
		if p := r.next(); !errors.Is(p.err, wechatpay.ErrUnknownSerial) {
			t.Errorf("retry: %v", p.err) // refused with 401, so WeChat retries
		}
	})
	t.Run("stale clock", func(t *testing.T) {
		var mu sync.Mutex
		offset := time.Duration(0)
		r := newRT(t, func(c *wechatpaysim.Config) {
			c.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return time.Now().Add(offset) }
		}, nil)
		resp, err := r.client.GlobalPreSign(context.Background(), wechatpay.ChannelApp, globalReq("STALE"))
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		offset = -10 * time.Minute
		mu.Unlock()
		r.sign(wechatpaysim.SignRequest{SessionID: resp.SessionID})
		if p := r.next(); !errors.Is(p.err, wechatpay.ErrStaleTimestamp) {
			t.Errorf("stale notification: %v", p.err)
		}
	})
}
