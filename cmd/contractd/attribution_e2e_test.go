package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/contractd/contractd/wechatpaysim"
)

// atLogLines decodes the JSON log lines whose msg is msg.
func atLogLines(t *testing.T, logs, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(logs))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", sc.Text())
		}
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// atMetricSample matches one contractd_transitions_total sample.
var atMetricSample = regexp.MustCompile(`(?m)^contractd_transitions_total\{event="([a-z_]+)",outcome="([a-z]+)",source="([a-z]+)"\} (\d+)$`)

// atHoldTerminateAnswersUntilNotified holds the simulator's answers to
// merchant terminate calls until the PAPAY.TERMINATE delivery WeChat sends as
// it terminates has been acknowledged: WeChat's notification overtakes its
// answer, every time.
func atHoldTerminateAnswersUntilNotified(sim *atomic.Pointer[wechatpaysim.Simulator]) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !strings.HasPrefix(r.URL.Path, "/v3/") || !strings.HasSuffix(r.URL.Path, "/terminate") {
				next.ServeHTTP(w, r)
				return
			}
			rec := httptest.NewRecorder()
			next.ServeHTTP(rec, r)
			deadline := time.Now().Add(20 * time.Second)
		wait:
			for time.Now().Before(deadline) {
				for _, d := range sim.Load().Deliveries() {
					if d.EventType == "PAPAY.TERMINATE" && d.Done {
						break wait
					}
				}
				time.Sleep(10 * time.Millisecond)
			}
			maps.Copy(w.Header(), rec.Header())
			w.WriteHeader(rec.Code)
			_, _ = w.Write(rec.Body.Bytes())
		})
	}
}

// atTerminateGate stands where WeChat delivers notifications and forwards
// them to contractd, holding PAPAY.TERMINATE deliveries until it is opened:
// so that WeChat's answer to the terminate call reaches contractd first.
type atTerminateGate struct {
	target atomic.Pointer[string]
	open   chan struct{}
}

func (g *atTerminateGate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if bytes.Contains(body, []byte(`"event_type":"PAPAY.TERMINATE"`)) {
		select {
		case <-g.open:
		case <-time.After(20 * time.Second):
		}
	}
	req, _ := http.NewRequestWithContext(r.Context(), r.Method, *g.target.Load()+r.URL.RequestURI(), bytes.NewReader(body))
	req.Header = r.Header.Clone()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	maps.Copy(w.Header(), resp.Header)
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}

// An operator's terminate is the operator's in the history row, in the
// contractd_transitions_total labels and in the log line of the transition,
// whether WeChat's answer or its PAPAY.TERMINATE notification reaches
// contractd first.
func TestOpsTerminateIsAttributedToOpsInHistoryMetricsAndLogsAlike(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name              string
		notificationFirst bool
	}{
		{name: "AnswerFirst"},
		{name: "NotificationFirst", notificationFirst: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var sim atomic.Pointer[wechatpaysim.Simulator]
			logs := &logBuffer{}
			gate := &atTerminateGate{open: make(chan struct{})}
			front := httptest.NewServer(gate)
			defer front.Close()
			o := stackOptions{LogOut: logs, NotifyTarget: front.URL}
			if tt.notificationFirst {
				o.WrapSim = atHoldTerminateAnswersUntilNotified(&sim)
				close(gate.open)
			}
			s := startStack(t, o)
			gate.target.Store(&s.URL)
			sim.Store(s.Sim)
			const code = "attr-1"
			opsSigned(t, s, code)
			if r := s.do(http.MethodPost, "/v1/contracts/"+code+"/terminate", opsToken, map[string]string{"note": "customer asked"}); r.Status != http.StatusOK {
				t.Fatalf("terminate: %d %s", r.Status, r.Body)
			}
			if !tt.notificationFirst {
				close(gate.open) // the answer came first: now the notification
			}
			eventually(t, 10*time.Second, "the PAPAY.TERMINATE delivery acknowledged", func() bool {
				for _, d := range ntDeliveries(s, code) {
					if d.EventType == "PAPAY.TERMINATE" && d.Done {
						return true
					}
				}
				return false
			})

			// History: one terminate row, source ops, naming who reported it.
			var source string
			var details map[string]any
			var raw []byte
			if err := s.DB.Pool.QueryRow(context.Background(), `SELECT source, details FROM contract_events
				WHERE out_contract_code = $1 AND event = 'terminate'`, code).Scan(&source, &raw); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(raw, &details); err != nil {
				t.Fatal(err)
			}
			// reported_by names another party that reported the
			// operator's termination; none when WeChat's answer did.
			var wantReporter any
			if tt.notificationFirst {
				wantReporter = "notification"
			}
			if source != "ops" || details["note"] != "customer asked" || details["reported_by"] != wantReporter {
				t.Fatalf("history terminate row: source %q details %v; want source ops, the note, reported_by %v", source, details, wantReporter)
			}

			// Metrics: the applied terminate is counted from source ops,
			// and nothing else applied a terminate.
			m := s.do(http.MethodGet, "/metrics", "", nil)
			applied := map[string]string{}
			for _, sm := range atMetricSample.FindAllStringSubmatch(string(m.Body), -1) {
				if sm[1] == "terminate" && sm[2] == "applied" {
					applied[sm[3]] = sm[4]
				}
			}
			if len(applied) != 1 || applied["ops"] != "1" {
				t.Fatalf("applied terminates by source %v; want exactly {ops: 1}\n%s", applied, m.Body)
			}

			// Logs: one line for the applied terminate, source ops, with
			// the same reporter as the history row.
			var lines []map[string]any
			eventually(t, 5*time.Second, "the terminate's log line", func() bool {
				lines = nil
				for _, l := range atLogLines(t, logs.String(), "contract transition") {
					if l["event"] == "terminate" && l["outcome"] == "applied" {
						lines = append(lines, l)
					}
				}
				return len(lines) > 0
			})
			if len(lines) != 1 || lines[0]["source"] != "ops" || lines[0]["reported_by"] != wantReporter || lines[0]["contract"] != code {
				t.Fatalf("log lines of the applied terminate %v; want one, source ops, reported_by %v, contract %s", lines, wantReporter, code)
			}
		})
	}
}

// The history's details name each value for what it is: an h5 session is a
// sign URL (WeChat answers nothing else), recorded as sign_url; an app
// session's id as session_id.
func TestIssueSessionDetailsNameTheSessionHandle(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{})
	for _, tt := range []struct {
		channel, key, launchField string
	}{
		{"app", "session_id", ""},
		{"mini_program", "session_id", "session_id"},
		{"h5", "sign_url", "url"},
		{"jsapi", "sign_url", "url"},
		{"web", "qr_code_url", "url"},
	} {
		code := "details-" + strings.ReplaceAll(tt.channel, "_", "-")
		r := s.do(http.MethodPost, "/v1/contracts/pre-sign", appToken, map[string]any{
			"channel": tt.channel, "out_contract_code": code, "plan_id": 123, "user_display_name": "Zhang San"})
		if r.Status != http.StatusCreated {
			t.Fatalf("%s pre-sign: %d %s", tt.channel, r.Status, r.Body)
		}
		var answer struct {
			Launch map[string]string `json:"launch"`
		}
		r.JSON(t, &answer)
		var raw []byte
		if err := s.DB.Pool.QueryRow(context.Background(), `SELECT details FROM contract_events
			WHERE out_contract_code = $1 AND event = 'issue_session'`, code).Scan(&raw); err != nil {
			t.Fatal(err)
		}
		var details map[string]any
		if err := json.Unmarshal(raw, &details); err != nil {
			t.Fatal(err)
		}
		handle, _ := details[tt.key].(string)
		if handle == "" {
			t.Fatalf("%s: issue_session details %v lack %s", tt.channel, details, tt.key)
		}
		for _, other := range []string{"session_id", "sign_url", "qr_code_url"} {
			if _, ok := details[other]; ok && other != tt.key {
				t.Errorf("%s: issue_session details %v also carry %s", tt.channel, details, other)
			}
		}
		want := answer.Launch[tt.launchField]
		if tt.channel == "app" {
			want = strings.TrimPrefix(answer.Launch["query"], "sessionId=")
		}
		if handle != want {
			t.Errorf("%s: details %s = %q, want the launch object's %q", tt.channel, tt.key, handle, want)
		}
	}
}
