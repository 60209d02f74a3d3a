package wechatpay

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/wechatpay-apiv3/wechatpay-go/core"
	"github.com/wechatpay-apiv3/wechatpay-go/core/auth/signers"
	"github.com/wechatpay-apiv3/wechatpay-go/core/auth/validators"
)

// Client calls WeChat Pay's contract endpoints. It signs every request with
// the merchant key and verifies the signature of every 2xx answer. A Client
// is safe for concurrent use.
type Client struct {
	api          map[Host]*core.Client // per host: answers verify against that host's certificates
	download     *core.Client          // signs certificate downloads, whose answers the manager verifies
	trust        *trustStore
	verifier     *Verifier
	apiV3Key     []byte
	globalBase   string
	domesticBase string
	timeout      time.Duration
}

// NewClient validates cfg and builds a Client on wechatpay-go's core.Client
// with a SHA256WithRSA signer and response validation through a Verifier of
// the host called.
func NewClient(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	trust, err := newTrustStore(cfg)
	if err != nil {
		return nil, err
	}
	httpClient := cfg.HTTPClient
	if httpClient == nil {
		// The per-call context deadline bounds each call; no client timeout.
		httpClient = &http.Client{Transport: newTransport()}
	}
	signer := &signers.SHA256WithRSASigner{
		MchID:               cfg.MchID,
		CertificateSerialNo: cfg.MerchantSerial,
		PrivateKey:          cfg.MerchantPrivateKey,
	}
	download, err := core.NewClientWithDialSettings(context.Background(), &core.DialSettings{
		HTTPClient: httpClient,
		Signer:     signer,
		Validator:  &validators.NullValidator{},
	})
	if err != nil {
		return nil, fmt.Errorf("wechatpay: build core client: %w", err)
	}
	api := map[Host]*core.Client{}
	for _, h := range Hosts() {
		v := trust.verifier([]Host{h})
		api[h] = core.NewClientWithValidator(download, &responseValidator{inner: validators.NewWechatPayResponseValidator(v)})
	}
	return &Client{
		api:          api,
		download:     download,
		trust:        trust,
		verifier:     trust.verifier(nil),
		apiV3Key:     []byte(cfg.APIv3Key),
		globalBase:   cfg.GlobalBaseURL,
		domesticBase: cfg.DomesticBaseURL,
		timeout:      cfg.Timeout,
	}, nil
}

// Verifier returns the verifier of every host's certificates, for a
// NotificationParser built from the same Config: a notification verifies
// against the certificate its serial names, whichever host it came from.
func (c *Client) Verifier() *Verifier { return c.verifier }

// responseValidator reads a 2xx answer's body, then lets wechatpay-go's
// validator check it, marking each failure as transport or signature so that
// classify can tell them apart.
type responseValidator struct {
	inner *validators.WechatPayResponseValidator
}

// Validate checks the answer's Wechatpay-* headers, clock and signature.
func (v *responseValidator) Validate(ctx context.Context, resp *http.Response) error {
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return &transportError{err: err}
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if err := v.inner.Validate(ctx, resp); err != nil {
		return &responseSignatureError{err: err}
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return nil
}

// GetAcceptSerial returns the serial sent in the request's Wechatpay-Serial header.
func (v *responseValidator) GetAcceptSerial(ctx context.Context) (string, error) {
	return v.inner.GetAcceptSerial(ctx)
}

// get performs a signed GET on host and decodes the verified JSON answer into out.
func (c *Client) get(ctx context.Context, host Host, op, rawURL string, out any) error {
	return c.do(ctx, host, op, http.MethodGet, rawURL, nil, out)
}

// post performs a signed POST of body as JSON on host and decodes the
// verified answer into out, unless out is nil.
func (c *Client) post(ctx context.Context, host Host, op, rawURL string, body, out any) error {
	return c.do(ctx, host, op, http.MethodPost, rawURL, body, out)
}

// do runs one call under the configured timeout and maps every failure to an
// *APIError. The answer must verify against host's certificates.
func (c *Client) do(ctx context.Context, host Host, op, method, rawURL string, body, out any) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()

	var (
		result *core.APIResult
		err    error
	)
	api := c.api[host]
	if api == nil {
		return clientError(op, "unknown host "+string(host))
	}
	switch method {
	case http.MethodGet:
		result, err = api.Get(ctx, rawURL)
	case http.MethodPost:
		payload, mErr := json.Marshal(body)
		if mErr != nil {
			return &APIError{Op: op, Code: CodeClientError, Message: "encode request body", Err: mErr}
		}
		result, err = api.Post(ctx, rawURL, payload)
	default:
		return clientError(op, "unsupported method "+method)
	}
	if err != nil {
		return classify(op, err)
	}
	defer result.Response.Body.Close()
	if out == nil {
		return nil
	}
	raw, err := io.ReadAll(result.Response.Body)
	if err != nil {
		return classify(op, &transportError{err: err})
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		return invalidResponse(op, fmt.Sprintf("HTTP %d with an empty body", result.Response.StatusCode), nil)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return invalidResponse(op, "decode response body", err)
	}
	return nil
}

// endpoint joins a base URL, path segments (each escaped) and a query.
func endpoint(base string, query url.Values, segments ...string) string {
	var b strings.Builder
	b.WriteString(base)
	for _, s := range segments {
		b.WriteByte('/')
		b.WriteString(s)
	}
	if len(query) > 0 {
		b.WriteByte('?')
		b.WriteString(query.Encode())
	}
	return b.String()
}

// escape escapes one path segment, including any '/'.
func escape(segment string) string { return url.PathEscape(segment) }

// newTransport is the HTTP transport of calls to WeChat: Go's default
// (proxy from the environment, HTTP/2, dial and TLS handshake timeouts) but
// keeping enough idle connections per host for the concurrent calls of a
// busy replica. The default keeps two, so that under load most calls
// opened, and then threw away, a new TCP and TLS connection.
func newTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 256
	t.MaxIdleConnsPerHost = 64
	return t
}
