package wechatpay

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// seenRequest is what the fake WeChat Pay server recorded of one request.
type seenRequest struct {
	method, rawPath, query, body, acceptSerial string
	authErr                                    error
}

// fakeWeChat answers like WeChat Pay: it checks the merchant signature and
// signs its answers. answer decides status and body; sign may tamper.
type fakeWeChat struct {
	t      *testing.T
	srv    *httptest.Server
	answer func(r *http.Request) (int, string)
	sign   func(w http.ResponseWriter, body string) // default: valid platform signature

	mu   sync.Mutex
	seen []seenRequest
}

var authRe = regexp.MustCompile(`^WECHATPAY2-SHA256-RSA2048 mchid="([^"]*)",nonce_str="([^"]*)",timestamp="(\d+)",serial_no="([^"]*)",signature="([^"]*)"$`)

// checkAuthorization verifies the merchant's Authorization header.
func checkAuthorization(r *http.Request, body string, merchant *rsa.PublicKey) error {
	m := authRe.FindStringSubmatch(r.Header.Get("Authorization"))
	if m == nil {
		return fmt.Errorf("bad Authorization %q", r.Header.Get("Authorization"))
	}
	if m[1] != testMchID || m[4] != testMerchantSN {
		return fmt.Errorf("mchid %q serial %q", m[1], m[4])
	}
	msg := r.Method + "\n" + r.URL.RequestURI() + "\n" + m[3] + "\n" + m[2] + "\n" + body + "\n"
	sig, err := base64.StdEncoding.DecodeString(m[5])
	if err != nil {
		return err
	}
	sum := sha256.Sum256([]byte(msg))
	return rsa.VerifyPKCS1v15(merchant, crypto.SHA256, sum[:], sig)
}

func newFakeWeChat(t *testing.T, answer func(r *http.Request) (int, string)) *fakeWeChat {
	t.Helper()
	ks := testKeySet(t)
	f := &fakeWeChat{t: t, answer: answer}
	f.sign = func(w http.ResponseWriter, body string) {
		for k, v := range signedHeaders(t, ks.platform, CertificateSerial(ks.platformCert), time.Now().Unix(), "srvnonce", []byte(body)) {
			w.Header()[k] = v
		}
	}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.seen = append(f.seen, seenRequest{
			method: r.Method, rawPath: r.URL.EscapedPath(), query: r.URL.RawQuery, body: string(raw),
			acceptSerial: r.Header.Get(HeaderSerial),
			authErr:      checkAuthorization(r, string(raw), &ks.merchant.PublicKey),
		})
		f.mu.Unlock()
		status, body := f.answer(r)
		f.sign(w, body)
		if body != "" {
			w.Header().Set("Content-Type", "application/json")
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// last returns the last request the server saw.
func (f *fakeWeChat) last() seenRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.seen) == 0 {
		f.t.Fatal("no request reached the server")
	}
	return f.seen[len(f.seen)-1]
}

// clientConfig returns a valid Config pointing both hosts at base.
func clientConfig(ks keySet, base string) Config {
	cfg := certConfig(ks)
	cfg.MchID = testMchID
	cfg.MerchantSerial = testMerchantSN
	cfg.MerchantPrivateKey = ks.merchant
	cfg.APIv3Key = testAPIv3Key
	cfg.GlobalBaseURL = base + "/"
	cfg.DomesticBaseURL = base
	cfg.Timeout = 2 * time.Second
	return cfg
}

func newTestClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	return c
}

func TestClientCalls(t *testing.T) {
	ks := testKeySet(t)
	tests := []struct {
		name      string
		status    int
		answer    string
		call      func(c *Client) (any, error)
		wantPath  string
		wantQuery string
		wantBody  map[string]any
		check     func(t *testing.T, got any)
	}{
		{
			name: "global pre-sign app", status: 200, answer: `{"session_id":"201710180325670965"}`,
			call: func(c *Client) (any, error) {
				return c.GlobalPreSign(context.Background(), ChannelApp, GlobalPreSignRequest{
					AppID: "wxcbda96de0b165486", PlanID: 12535, OutContractCode: "100001256",
					UserDisplayName: "Zhang San", SuccessNotifyURL: "https://example.com/n",
					ExpiredTime: "2026-11-22T13:29:35+08:00", ReturnURL: "https://example.com/back?a=1&b=2",
				})
			},
			wantPath: "/v3/global/papay/contracts/app-pre-entrust-sign",
			wantBody: map[string]any{
				"appid": "wxcbda96de0b165486", "plan_id": float64(12535), "out_contract_code": "100001256",
				"user_display_name": "Zhang San", "success_notify_url": "https://example.com/n",
				"expired_time": "2026-11-22T13:29:35+08:00", "return_url": "https://example.com/back?a=1&b=2",
			},
			check: func(t *testing.T, got any) {
				if r := got.(*GlobalPreSignResponse); r.SessionID != "201710180325670965" {
					t.Errorf("got %+v", r)
				}
			},
		},
		{
			name: "global pre-sign web with older sign_url", status: 200, answer: `{"sign_url":"https://pay.weixin.qq.com/x"}`,
			call: func(c *Client) (any, error) {
				return c.GlobalPreSign(context.Background(), ChannelWeb, GlobalPreSignRequest{PlanID: 1, OutContractCode: "w1"})
			},
			wantPath: "/v3/global/papay/contracts/web-pre-entrust-sign",
			check: func(t *testing.T, got any) {
				if u := got.(*GlobalPreSignResponse).URL(); u != "https://pay.weixin.qq.com/x" {
					t.Errorf("URL() = %q", u)
				}
			},
		},
		{
			name: "global pre-sign mini program", status: 200, answer: `{"session_id":"s"}`,
			call: func(c *Client) (any, error) {
				return c.GlobalPreSign(context.Background(), ChannelMiniProgram, GlobalPreSignRequest{PlanID: 1, OutContractCode: "m"})
			},
			wantPath: "/v3/global/papay/contracts/miniprogram-pre-entrust-sign",
		},
		{
			name: "global query by code escapes the path", status: 200,
			answer: `{"mchid":"1","contract_id":"c1","plan_id":"12535","out_contract_code":"a/b c?","state":"SIGNED"}`,
			call: func(c *Client) (any, error) {
				return c.QueryGlobalByOutContractCode(context.Background(), "a/b c?", GlobalQuery{AppID: "wxa", PlanID: 12535})
			},
			wantPath:  "/v3/global/papay/contracts/out-contract-code/a%2Fb%20c%3F",
			wantQuery: "appid=wxa&plan_id=12535",
			check: func(t *testing.T, got any) {
				if g := got.(*GlobalContract); g.PlanID != 12535 || g.State != "SIGNED" || g.OutContractCode != "a/b c?" {
					t.Errorf("got %+v", g)
				}
			},
		},
		{
			name: "global query by id, institutional", status: 200, answer: `{"sp_mchid":"sp","sub_mchid":"sub","contract_id":"c/1","plan_id":3}`,
			call: func(c *Client) (any, error) {
				return c.QueryGlobalByContractID(context.Background(), "c/1", GlobalQuery{SpAppID: "wxsp", SubMchID: "sub", SubAppID: "wxsub", PlanID: 3})
			},
			wantPath:  "/v3/global/papay/contracts/c%2F1",
			wantQuery: "sp_appid=wxsp&sub_appid=wxsub&sub_mchid=sub",
		},
		{
			name: "global terminate 204", status: 204, answer: "",
			call: func(c *Client) (any, error) {
				return nil, c.TerminateGlobal(context.Background(), "201710180325670965", GlobalTerminateRequest{AppID: "wxa", TerminationNote: "ops"})
			},
			wantPath: "/v3/global/papay/contracts/201710180325670965/terminate",
			wantBody: map[string]any{"appid": "wxa", "termination_note": "ops"},
		},
		{
			name: "domestic pre-sign service provider", status: 200,
			answer: `{"pre_entrustweb_id":"5778aadY9nltAsZzXixCkFIGYnV2V","mchid":"1","service_id":"1000000000","out_contract_code":"d1","sign_mp_appid":"wx1","sign_mp_path":"pages/x"}`,
			call: func(c *Client) (any, error) {
				return c.DomesticPreSign(context.Background(), DomesticServiceProvider, DomesticPreSignRequest{
					ServiceID: 1000000000, OutContractCode: "d1", NotifyURL: "https://e.com/n", ContractDisplayAccount: "acct",
					SpAppID: "wxsp", SubMchID: "sub", SpOpenID: "o1",
				})
			},
			wantPath: "/v3/password-exempt-contract/contracts/service-provider/pre-entrust-sign/mini-program",
			wantBody: map[string]any{
				"service_id": float64(1000000000), "out_contract_code": "d1", "notify_url": "https://e.com/n",
				"contract_display_account": "acct", "sp_appid": "wxsp", "sub_mchid": "sub", "sp_openid": "o1",
			},
			check: func(t *testing.T, got any) {
				if r := got.(*DomesticPreSignResponse); r.ServiceID != 1000000000 || r.SignMpPath != "pages/x" {
					t.Errorf("got %+v", r)
				}
			},
		},
		{
			name: "domestic query", status: 200,
			answer: `{"service_id":7,"out_contract_code":"d 1","contract_state":"TERMINATED","contract_terminate_info":{"contract_termination_mode":"USER_TERMINATE","contract_terminated_time":"2026-05-20T21:29:35+08:00"}}`,
			call: func(c *Client) (any, error) {
				return c.QueryDomestic(context.Background(), 7, "d 1", "sub")
			},
			wantPath:  "/v3/password-exempt-contract/contracts/service-id/7/out-contract-code/d%201",
			wantQuery: "sub_mchid=sub",
			check: func(t *testing.T, got any) {
				d := got.(*DomesticContract)
				if d.ServiceID != 7 || d.ContractTerminateInfo == nil || d.ContractTerminateInfo.ContractTerminationMode != "USER_TERMINATE" {
					t.Errorf("got %+v", d)
				}
			},
		},
		{
			name: "domestic terminate answered 200", status: 200, answer: `{}`,
			call: func(c *Client) (any, error) {
				return nil, c.TerminateDomestic(context.Background(), 7, "d1", DomesticTerminateRequest{ContractTerminationRemark: "bye"})
			},
			wantPath: "/v3/password-exempt-contract/contracts/service-id/7/out-contract-code/d1/terminate",
			wantBody: map[string]any{"contract_termination_remark": "bye"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeWeChat(t, func(*http.Request) (int, string) { return tt.status, tt.answer })
			c := newTestClient(t, clientConfig(ks, f.srv.URL))
			got, err := tt.call(c)
			if err != nil {
				t.Fatalf("call: %v", err)
			}
			seen := f.last()
			if seen.authErr != nil {
				t.Errorf("merchant signature: %v", seen.authErr)
			}
			if seen.rawPath != tt.wantPath || seen.query != tt.wantQuery {
				t.Errorf("request %s?%s, want %s?%s", seen.rawPath, seen.query, tt.wantPath, tt.wantQuery)
			}
			if seen.acceptSerial != CertificateSerial(ks.platformCert) {
				t.Errorf("Wechatpay-Serial sent = %q", seen.acceptSerial)
			}
			if tt.wantBody != nil {
				var body map[string]any
				if err := json.Unmarshal([]byte(seen.body), &body); err != nil {
					t.Fatalf("request body %q: %v", seen.body, err)
				}
				if fmt.Sprint(body) != fmt.Sprint(tt.wantBody) {
					t.Errorf("request body = %v\nwant %v", body, tt.wantBody)
				}
			}
			if tt.check != nil {
				tt.check(t, got)
			}
		})
	}
}

func TestClientPublicKeyMode(t *testing.T) {
	ks := testKeySet(t)
	f := newFakeWeChat(t, func(*http.Request) (int, string) { return 200, `{"session_id":"s1"}` })
	f.sign = func(w http.ResponseWriter, body string) {
		for k, v := range signedHeaders(t, ks.pub, testPubKeyID, time.Now().Unix(), "n", []byte(body)) {
			w.Header()[k] = v
		}
	}
	cfg := clientConfig(ks, f.srv.URL)
	cfg.PlatformCerts = nil
	cfg.PublicKeyID, cfg.PublicKey = testPubKeyID, &ks.pub.PublicKey
	c := newTestClient(t, cfg)
	if _, err := c.GlobalPreSign(context.Background(), ChannelApp, GlobalPreSignRequest{PlanID: 1, OutContractCode: "x"}); err != nil {
		t.Fatalf("GlobalPreSign: %v", err)
	}
	if s := f.last().acceptSerial; s != testPubKeyID {
		t.Errorf("Wechatpay-Serial sent = %q, want %q", s, testPubKeyID)
	}
}

func TestClientFailures(t *testing.T) {
	ks := testKeySet(t)
	platformSerial := CertificateSerial(ks.platformCert)
	signWith := func(key *rsa.PrivateKey, serial string, at func() time.Time, mutate func(string) string) func(t *testing.T) func(http.ResponseWriter, string) {
		return func(t *testing.T) func(http.ResponseWriter, string) {
			return func(w http.ResponseWriter, body string) {
				for k, v := range signedHeaders(t, key, serial, at().Unix(), "n", []byte(mutate(body))) {
					w.Header()[k] = v
				}
			}
		}
	}
	same := func(s string) string { return s }
	tests := []struct {
		name          string
		status        int
		answer        string
		sign          func(t *testing.T) func(http.ResponseWriter, string)
		slow          bool
		ctx           func() (context.Context, context.CancelFunc)
		closed        bool
		wantCode      string
		wantStatus    int
		wantRetryable bool
		wantIs        error
		wantDetail    string
	}{
		{name: "body changed after signing", status: 200, answer: `{"session_id":"evil"}`,
			sign:     signWith(ks.platform, platformSerial, time.Now, func(string) string { return `{"session_id":"good"}` }),
			wantCode: CodeInvalidResponseSignature, wantIs: ErrBadSignature},
		{name: "unknown serial", status: 200, answer: `{"session_id":"s"}`,
			sign:     signWith(ks.stranger, CertificateSerial(ks.strangerCert), time.Now, same),
			wantCode: CodeInvalidResponseSignature, wantIs: ErrUnknownSerial},
		{name: "stale timestamp", status: 200, answer: `{"session_id":"s"}`,
			sign:     signWith(ks.platform, platformSerial, func() time.Time { return time.Now().Add(-10 * time.Minute) }, same),
			wantCode: CodeInvalidResponseSignature},
		{name: "future timestamp", status: 200, answer: `{"session_id":"s"}`,
			sign:     signWith(ks.platform, platformSerial, func() time.Time { return time.Now().Add(10 * time.Minute) }, same),
			wantCode: CodeInvalidResponseSignature},
		{name: "unsigned answer", status: 200, answer: `{"session_id":"s"}`,
			sign:     func(*testing.T) func(http.ResponseWriter, string) { return func(http.ResponseWriter, string) {} },
			wantCode: CodeInvalidResponseSignature},
		{name: "unsigned 204", status: 204, answer: "",
			sign:     func(*testing.T) func(http.ResponseWriter, string) { return func(http.ResponseWriter, string) {} },
			wantCode: CodeInvalidResponseSignature},
		{name: "signed but not JSON", status: 200, answer: `<html>`, wantCode: CodeInvalidResponse},
		{name: "signed but no session id", status: 200, answer: `{}`, wantCode: CodeInvalidResponse},
		{name: "system error", status: 500, answer: `{"code":"SYSTEM_ERROR","message":"busy","detail":{"field":"x"}}`,
			wantCode: "SYSTEM_ERROR", wantStatus: 500, wantRetryable: true, wantDetail: `{"field":"x"}`},
		{name: "old system error spelling on 4xx", status: 400, answer: `{"code":"SYSTEMERROR","message":"busy"}`,
			wantCode: "SYSTEMERROR", wantStatus: 400, wantRetryable: true},
		{name: "frequency limit", status: 429, answer: `{"code":"FREQUENCY_LIMIT_EXCEED","message":"slow down"}`,
			wantCode: "FREQUENCY_LIMIT_EXCEED", wantStatus: 429, wantRetryable: true},
		{name: "contract existed", status: 403, answer: `{"code":"CONTRACT_EXISTED","message":"signed"}`,
			wantCode: "CONTRACT_EXISTED", wantStatus: 403},
		{name: "param error", status: 400, answer: `{"code":"PARAM_ERROR","message":"bad"}`,
			wantCode: "PARAM_ERROR", wantStatus: 400},
		{name: "gateway html", status: 502, answer: `<html>bad gateway</html>`,
			wantCode: "HTTP_502", wantStatus: 502, wantRetryable: true},
		{name: "timeout", status: 200, answer: `{"session_id":"s"}`, slow: true,
			wantCode: CodeTimeout, wantRetryable: true, wantIs: context.DeadlineExceeded},
		{name: "connection refused", closed: true, wantCode: CodeNetworkError, wantRetryable: true},
		{name: "caller canceled", status: 200, answer: `{"session_id":"s"}`,
			ctx: func() (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				return ctx, cancel
			},
			wantCode: CodeCanceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeWeChat(t, func(r *http.Request) (int, string) {
				if tt.slow {
					select {
					case <-r.Context().Done():
					case <-time.After(5 * time.Second):
					}
				}
				return tt.status, tt.answer
			})
			if tt.sign != nil {
				f.sign = tt.sign(t)
			}
			cfg := clientConfig(ks, f.srv.URL)
			if tt.slow {
				cfg.Timeout = 100 * time.Millisecond
			}
			if tt.closed {
				f.srv.Close()
			}
			c := newTestClient(t, cfg)
			ctx, cancel := context.Background(), context.CancelFunc(func() {})
			if tt.ctx != nil {
				ctx, cancel = tt.ctx()
			}
			defer cancel()
			ch := ChannelApp
			if tt.status == 204 {
				err := c.TerminateGlobal(ctx, "c1", GlobalTerminateRequest{})
				assertAPIError(t, err, tt.wantCode, tt.wantStatus, tt.wantRetryable, tt.wantIs, tt.wantDetail)
				return
			}
			resp, err := c.GlobalPreSign(ctx, ch, GlobalPreSignRequest{PlanID: 1, OutContractCode: "x"})
			if resp != nil {
				t.Errorf("response %+v returned with error", resp)
			}
			assertAPIError(t, err, tt.wantCode, tt.wantStatus, tt.wantRetryable, tt.wantIs, tt.wantDetail)
		})
	}
}

// assertAPIError checks that err carries an *APIError with the given fields.
func assertAPIError(t *testing.T, err error, code string, status int, retryable bool, is error, detail string) {
	t.Helper()
	var apiErr *APIError
	if !errors.As(err, &apiErr) {
		t.Fatalf("error %v (%T) is not an *APIError", err, err)
	}
	if apiErr.Code != code || apiErr.StatusCode != status || apiErr.Retryable != retryable || IsRetryable(err) != retryable {
		t.Errorf("APIError = %+v, want code %s status %d retryable %v", apiErr, code, status, retryable)
	}
	if is != nil && !errors.Is(err, is) {
		t.Errorf("error %v does not wrap %v", err, is)
	}
	if string(apiErr.Detail) != detail {
		t.Errorf("Detail = %s, want %s", apiErr.Detail, detail)
	}
	if !strings.Contains(err.Error(), code) {
		t.Errorf("Error() = %q lacks the code", err.Error())
	}
}

func TestClientRefusesBadArguments(t *testing.T) {
	ks := testKeySet(t)
	f := newFakeWeChat(t, func(*http.Request) (int, string) { return 200, `{}` })
	c := newTestClient(t, clientConfig(ks, f.srv.URL))
	ctx := context.Background()
	calls := []struct {
		name string
		call func() error
	}{
		{"unknown channel", func() error { _, err := c.GlobalPreSign(ctx, "fax", GlobalPreSignRequest{}); return err }},
		{"unknown mode", func() error { _, err := c.DomesticPreSign(ctx, "x", DomesticPreSignRequest{}); return err }},
		{"empty contract id", func() error { _, err := c.QueryGlobalByContractID(ctx, "", GlobalQuery{}); return err }},
		{"empty code", func() error { _, err := c.QueryGlobalByOutContractCode(ctx, "", GlobalQuery{}); return err }},
		{"empty terminate id", func() error { return c.TerminateGlobal(ctx, "", GlobalTerminateRequest{}) }},
		{"empty domestic code", func() error { _, err := c.QueryDomestic(ctx, 1, "", ""); return err }},
		{"empty domestic terminate code", func() error { return c.TerminateDomestic(ctx, 1, "", DomesticTerminateRequest{}) }},
	}
	for _, tt := range calls {
		t.Run(tt.name, func(t *testing.T) {
			assertAPIError(t, tt.call(), CodeClientError, 0, false, nil, "")
		})
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.seen) != 0 {
		t.Errorf("%d requests reached the server", len(f.seen))
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		name          string
		err           error
		wantCode      string
		wantRetryable bool
	}{
		{"deadline", fmt.Errorf("do: %w", context.DeadlineExceeded), CodeTimeout, true},
		{"canceled", context.Canceled, CodeCanceled, false},
		{"unexpected EOF", &transportError{err: io.ErrUnexpectedEOF}, CodeNetworkError, true},
		{"signature", &responseSignatureError{err: ErrBadSignature}, CodeInvalidResponseSignature, false},
		{"plain error", errors.New("generate authorization err"), CodeClientError, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := classify("op", tt.err)
			if got.Code != tt.wantCode || got.Retryable != tt.wantRetryable || !errors.Is(got, tt.err) {
				t.Errorf("classify = %+v, want %s retryable %v", got, tt.wantCode, tt.wantRetryable)
			}
		})
	}
}

func TestIsRetryable(t *testing.T) {
	tests := []struct {
		name   string
		status int
		code   string
		want   bool
	}{
		{"SYSTEM_ERROR", 500, "SYSTEM_ERROR", true},
		{"SYSTEMERROR on 200-ish status", 400, "SYSTEMERROR", true},
		{"frequency limit", 429, "FREQUENCY_LIMIT_EXCEED", true},
		{"429 without code", 429, "", true},
		{"503 unknown code", 503, "WHATEVER", true},
		{"sign error", 401, "SIGN_ERROR", false},
		{"contract not exist", 403, "CONTRACT_NOT_EXIST", false},
		{"invalid request", 400, "INVALID_REQUEST", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := isRetryableAnswer(tt.status, tt.code); got != tt.want {
				t.Errorf("isRetryableAnswer(%d, %q) = %v, want %v", tt.status, tt.code, got, tt.want)
			}
			wrapped := fmt.Errorf("sync: %w", &APIError{StatusCode: tt.status, Code: tt.code, Retryable: tt.want})
			if IsRetryable(wrapped) != tt.want {
				t.Errorf("IsRetryable(wrapped) != %v", tt.want)
			}
		})
	}
	if IsRetryable(errors.New("plain")) || IsRetryable(nil) {
		t.Error("IsRetryable true for a non-APIError")
	}
}

func TestConfigValidate(t *testing.T) {
	ks := testKeySet(t)
	valid := clientConfig(ks, "http://127.0.0.1:1")
	tests := []struct {
		name    string
		mutate  func(c *Config)
		wantErr string
	}{
		{"valid", func(*Config) {}, ""},
		{"defaults", func(c *Config) { c.GlobalBaseURL, c.DomesticBaseURL, c.Timeout = "", "", 0 }, ""},
		{"public key only", func(c *Config) { c.PlatformCerts, c.PublicKeyID, c.PublicKey = nil, testPubKeyID, &ks.pub.PublicKey }, ""},
		{"missing mchid", func(c *Config) { c.MchID = "" }, "MchID"},
		{"missing serial", func(c *Config) { c.MerchantSerial = "" }, "MerchantSerial"},
		{"missing private key", func(c *Config) { c.MerchantPrivateKey = nil }, "MerchantPrivateKey"},
		{"short APIv3 key", func(c *Config) { c.APIv3Key = "abc" }, "APIv3Key"},
		{"no verification material", func(c *Config) { c.PlatformCerts = nil }, "PlatformCerts"},
		{"nil certificate", func(c *Config) { c.PlatformCerts = append(c.PlatformCerts, nil) }, "is nil"},
		{"key id without key", func(c *Config) { c.PublicKeyID = testPubKeyID }, "without PublicKey"},
		{"key without key id", func(c *Config) { c.PublicKey = &ks.pub.PublicKey }, "without PublicKeyID"},
		{"key id with wrong prefix", func(c *Config) { c.PublicKeyID, c.PublicKey = "ABC", &ks.pub.PublicKey }, "PUB_KEY_ID_"},
		{"relative base URL", func(c *Config) { c.GlobalBaseURL = "/v3" }, "GlobalBaseURL"},
		{"ftp base URL", func(c *Config) { c.DomesticBaseURL = "ftp://x" }, "DomesticBaseURL"},
		{"base URL with query", func(c *Config) { c.DomesticBaseURL = "http://x/?a=1" }, "DomesticBaseURL"},
		{"negative timeout", func(c *Config) { c.Timeout = -time.Second }, "Timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := valid
			cfg.PlatformCerts = append([]*x509.Certificate(nil), valid.PlatformCerts...)
			tt.mutate(&cfg)
			_, err := NewClient(cfg)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("NewClient: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("NewClient error = %v, want it to mention %q", err, tt.wantErr)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	cfg := Config{}.withDefaults()
	if cfg.GlobalBaseURL != DefaultGlobalBaseURL || cfg.DomesticBaseURL != DefaultDomesticBaseURL || cfg.Timeout != DefaultTimeout {
		t.Errorf("defaults = %+v", cfg)
	}
	if got := endpoint("http://h", nil, "a", escape("x/y z")); got != "http://h/a/x%2Fy%20z" {
		t.Errorf("endpoint = %q", got)
	}
}
