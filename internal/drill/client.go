package drill

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"sync"
	"time"

	"github.com/contractd/contractd/wechatpaysim"
)

// client speaks to the front port and the simulator.
type client struct {
	env  Env
	http *http.Client
}

// newClient's requests wait longer than the front's own server timeout
// (60 s in scripts/cluster's HAProxy), so that a request that hangs is
// answered by the front (504, a failure the drill reports with its status)
// rather than given up on by the client without an answer.
func newClient(env Env) *client {
	tr := &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second}
	return &client{env: env, http: &http.Client{Transport: tr, Timeout: 75 * time.Second}}
}

// do sends one request and answers its status (0 when no answer came) and
// body.
func (c *client) do(ctx context.Context, method, u, token string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, fmt.Errorf("encode: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return 0, nil, fmt.Errorf("request: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return resp.StatusCode, nil, fmt.Errorf("%s %s: read: %w", method, u, err)
	}
	return resp.StatusCode, b, nil
}

// presign asks contractd, through the front, for an app signing session.
func (c *client) presign(ctx context.Context, code string) int {
	st, _, _ := c.do(ctx, http.MethodPost, c.env["FRONT_URL"]+"/v1/contracts/pre-sign", c.env["APP_TOKEN"],
		map[string]any{"channel": "app", "out_contract_code": code, "plan_id": 123, "user_display_name": "Drill"})
	return st
}

// simSign signs as the WeChat user: the simulator then delivers PAPAY.SIGN
// to the front port, retrying until it is acknowledged.
func (c *client) simSign(ctx context.Context, code string) int {
	st, _, _ := c.do(ctx, http.MethodPost, c.env["SIM_URL"]+"/sim/sign", "", map[string]string{"out_contract_code": code})
	return st
}

// getContract reads a contract through the front.
func (c *client) getContract(ctx context.Context, code string) int {
	st, _, _ := c.do(ctx, http.MethodGet, c.env["FRONT_URL"]+"/v1/contracts/"+url.PathEscape(code), c.env["APP_TOKEN"], nil)
	return st
}

// deliveries reads every notification delivery of the simulator.
func (c *client) deliveries(ctx context.Context) ([]wechatpaysim.Delivery, error) {
	st, b, err := c.do(ctx, http.MethodGet, c.env["SIM_URL"]+"/sim/deliveries", "", nil)
	if err != nil {
		return nil, err
	}
	if st != http.StatusOK {
		return nil, fmt.Errorf("GET /sim/deliveries: %d", st)
	}
	var ds []wechatpaysim.Delivery
	if err := json.Unmarshal(b, &ds); err != nil {
		return nil, fmt.Errorf("GET /sim/deliveries: %w", err)
	}
	return ds, nil
}

// request is one request the load made.
type request struct {
	op         string
	start, end time.Time
	status     int // 0: no answer
}

// recorder keeps every request the load made.
type recorder struct {
	mu   sync.Mutex
	reqs []request
}

func (r *recorder) add(op string, start time.Time, status int) {
	r.mu.Lock()
	r.reqs = append(r.reqs, request{op: op, start: start, end: time.Now(), status: status})
	r.mu.Unlock()
}

func (r *recorder) all() []request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]request(nil), r.reqs...)
}

// percentile returns the p-th percentile (0 < p <= 1) of ds, 0 when empty.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(float64(len(s))*p+0.999999) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(s) {
		i = len(s) - 1
	}
	return s[i]
}

func ok2xx(status int) bool { return status >= 200 && status < 300 }
