package console

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/contractd/contractd/delivery"
	"github.com/contractd/contractd/domain"
)

func TestReplayTargetReadsOneOfTheFormsFields(t *testing.T) {
	at := time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC)
	cases := []struct {
		name  string
		form  url.Values
		want  delivery.ReplayTarget
		field string // the field refused, "" when accepted
	}{
		{"a feed cursor", url.Values{"after": {"ZjI6MDox"}}, delivery.ReplayTarget{After: "ZjI6MDox"}, ""},
		{"the feed's beginning", url.Values{"beginning": {"yes"}}, delivery.ReplayTarget{}, ""},
		{"an RFC3339 time in UTC", url.Values{"from": {"2026-01-02T15:04:05Z"}}, delivery.ReplayTarget{From: at}, ""},
		{"an RFC3339 time with an offset is read in UTC", url.Values{"from": {"2026-01-02T23:04:05+08:00"}}, delivery.ReplayTarget{From: at}, ""},
		{"a datetime-local with seconds is UTC", url.Values{"from_utc": {"2026-01-02T15:04:05"}}, delivery.ReplayTarget{From: at}, ""},
		{"a datetime-local without seconds is UTC", url.Values{"from_utc": {"2026-01-02T15:04"}}, delivery.ReplayTarget{From: at.Add(-5 * time.Second)}, ""},
		{"nothing", url.Values{}, delivery.ReplayTarget{}, "replay"},
		{"two at once", url.Values{"after": {"x"}, "from": {"2026-01-02T15:04:05Z"}}, delivery.ReplayTarget{}, "replay"},
		{"a cursor with a control character", url.Values{"after": {"a\x00b"}}, delivery.ReplayTarget{}, "after"},
		{"a time that is not RFC3339", url.Values{"from": {"yesterday"}}, delivery.ReplayTarget{}, "from"},
		{"a datetime-local that is not one", url.Values{"from_utc": {"2026-13-02T15:04"}}, delivery.ReplayTarget{}, "from_utc"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := replayTarget(tc.form)
			if tc.field == "" {
				if err != nil || got.After != tc.want.After || !got.From.Equal(tc.want.From) || got.From.Location() != time.UTC && !got.From.IsZero() {
					t.Fatalf("replayTarget = %+v, %v; want %+v", got, err, tc.want)
				}
				return
			}
			de, ok := err.(*domain.Error)
			if !ok || de.Code != domain.CodeParamError || len(de.Fields) != 1 || de.Fields[0].Field != tc.field {
				t.Fatalf("replayTarget error %v, want PARAM_ERROR on %s", err, tc.field)
			}
		})
	}
}

// renderWebhook renders an endpoint's page for a signed-in session.
func renderWebhook(t *testing.T, d *webhookData, p page) string {
	t.Helper()
	c := &Console{pages: parsePages(), log: slog.New(slog.DiscardHandler)}
	r := httptest.NewRequest(http.MethodGet, "/ops/webhooks/"+d.E.ID, nil)
	r = r.WithContext(t.Context())
	w := httptest.NewRecorder()
	p.Data = d
	c.render(w, r, http.StatusOK, "webhook.html", p)
	if w.Code != http.StatusOK {
		t.Fatalf("render: %d %s", w.Code, w.Body)
	}
	return w.Body.String()
}

func TestWebhookPageShowsTheSecretOnlyWhenGiven(t *testing.T) {
	const secret = "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlYw"
	e := domain.Endpoint{ID: "0b7e0c1e-7a51-4d4c-9d0a-1f1f5c1e2a3b", URL: "https://app.example/hooks", LagEvents: 3, LagSeconds: 1.25}
	with := renderWebhook(t, &webhookData{E: e, Secret: secret, SecretWhy: "created"}, page{})
	if !strings.Contains(with, secret) || !strings.Contains(with, "it is not shown again") {
		t.Fatal("the creation's answer does not show the secret once with its warning")
	}
	without := renderWebhook(t, &webhookData{E: e}, page{})
	if strings.Contains(without, "whsec_") || strings.Contains(without, "not shown again") {
		t.Fatal("an endpoint's page shows a secret it was not given")
	}
	if !strings.Contains(without, `id="lag-events">3<`) || !strings.Contains(without, `id="lag-seconds">1.2 s<`) {
		t.Fatal("the endpoint's page does not show its lag")
	}
}

func TestWebhookPagesEscapeWhatTheyShow(t *testing.T) {
	const hostile = `"><script>alert(1)</script>`
	e := domain.Endpoint{ID: "0b7e0c1e-7a51-4d4c-9d0a-1f1f5c1e2a3b", URL: "https://app.example/" + hostile, Description: hostile,
		LastAttempt: &domain.AttemptSummary{At: time.Now(), Status: 500, Error: hostile}}
	body := renderWebhook(t, &webhookData{E: e, Attempts: []domain.Attempt{{Kind: "events", Error: hostile, Response: hostile}}},
		page{Problem: "Replay failed: " + hostile})
	if strings.Contains(body, "<script>") {
		t.Fatalf("a hostile text reached the page unescaped:\n%s", body)
	}
	c := &Console{pages: parsePages(), log: slog.New(slog.DiscardHandler), opt: Options{}}
	w := httptest.NewRecorder()
	c.render(w, httptest.NewRequest(http.MethodGet, "/ops/webhooks", nil), http.StatusOK, "webhooks.html",
		page{Data: webhooksData{Endpoints: []domain.Endpoint{e}, URL: hostile, Description: hostile}})
	if strings.Contains(w.Body.String(), "<script>") {
		t.Fatalf("a hostile text reached the list unescaped:\n%s", w.Body)
	}
}

func TestEndpointIDRefusesWhatIsNotOne(t *testing.T) {
	for _, id := range []string{"x", "0b7e0c1e-7a51-4d4c-9d0a-1f1f5c1e2a3", "0b7e0c1e-7a51-4d4c-9d0a-1f1f5c1e2a3b'--"} {
		r := httptest.NewRequest(http.MethodGet, "/ops/webhooks/x", nil)
		r.SetPathValue("id", id)
		if _, err := endpointID(r); !domain.IsCode(err, domain.CodeResourceNotFound) || statusOf(err) != http.StatusNotFound {
			t.Errorf("endpointID(%q) = %v, want NOT_FOUND (404)", id, err)
		}
	}
}
