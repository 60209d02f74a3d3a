package console

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/contractd/contractd/delivery"
	"github.com/contractd/contractd/domain"
)

// webhookRoutes adds the webhook pages when the console has Webhooks.
func (c *Console) webhookRoutes(m *http.ServeMux) {
	if c.opt.Webhooks == nil {
		return
	}
	m.HandleFunc("GET /ops/webhooks", c.authed(c.webhooksPage))
	m.HandleFunc("POST /ops/webhooks", c.authed(c.createWebhook))
	m.HandleFunc("GET /ops/webhooks/{id}", c.authed(c.webhookPage))
	m.HandleFunc("POST /ops/webhooks/{id}/pause", c.authed(c.pauseWebhook(true)))
	m.HandleFunc("POST /ops/webhooks/{id}/resume", c.authed(c.pauseWebhook(false)))
	m.HandleFunc("POST /ops/webhooks/{id}/test", c.authed(c.testWebhook))
	m.HandleFunc("POST /ops/webhooks/{id}/replay", c.authed(c.replayWebhook))
	m.HandleFunc("POST /ops/webhooks/{id}/rotate", c.authed(c.rotateWebhook))
	m.HandleFunc("POST /ops/webhooks/{id}/delete", c.authed(c.deleteWebhook))
}

// attemptsPerPage is how many attempts an endpoint's page shows at once.
const attemptsPerPage = 25

// webhooksData is the endpoints list's content, and the create form's
// values after a refusal.
type webhooksData struct {
	Endpoints   []domain.Endpoint
	URL         string
	Description string
}

// webhookData is an endpoint page's content.
type webhookData struct {
	E        domain.Endpoint
	Attempts []domain.Attempt
	// Cursor is this page of attempts' cursor ("" for the newest), Next
	// the next (older) page's ("" on the last).
	Cursor, Next string
	// Secret is the endpoint's secret in clear, only on the answer to its
	// creation or rotation; SecretWhy says which.
	Secret, SecretWhy string
	// Tested is the attempt of a test delivery just made.
	Tested *domain.Attempt
	// ConfirmDelete asks for the deletion's confirmation.
	ConfirmDelete bool
	// The replay form's values after a refusal.
	ReplayAfter, ReplayFrom, ReplayFromUTC string
}

func (c *Console) webhooksPage(w http.ResponseWriter, r *http.Request) {
	p := page{}
	switch r.URL.Query().Get("done") {
	case "deleted":
		p.Done = "The endpoint is deleted: nothing more is sent to it."
	}
	c.showWebhooks(w, r, http.StatusOK, p, webhooksData{})
}

func (c *Console) showWebhooks(w http.ResponseWriter, r *http.Request, status int, p page, d webhooksData) {
	eps, err := c.opt.Webhooks.List(r.Context())
	if err != nil {
		c.fail(w, r, err)
		return
	}
	d.Endpoints = eps
	p.Title, p.Nav, p.Data = "Webhook endpoints", "webhooks", d
	c.render(w, r, status, "webhooks.html", p)
}

// createWebhook registers an endpoint and answers, once, with its secret.
func (c *Console) createWebhook(w http.ResponseWriter, r *http.Request) {
	in := domain.EndpointInput{URL: strings.TrimSpace(r.PostForm.Get("url")), Description: strings.TrimSpace(r.PostForm.Get("description"))}
	created, err := c.opt.Webhooks.Create(r.Context(), sessionOf(r).Actor, in)
	if err != nil {
		if !shownOnPage(err) {
			c.fail(w, r, err)
			return
		}
		c.log.WarnContext(r.Context(), "console action failed", "action", "create webhook endpoint", "error", err.Error())
		c.showWebhooks(w, r, statusOf(err), page{Problem: "Creating the endpoint failed: " + problemText(err)},
			webhooksData{URL: in.URL, Description: in.Description})
		return
	}
	// Never the secret: only the endpoint's id goes to the log.
	c.log.InfoContext(r.Context(), "console created a webhook endpoint", "endpoint", created.Endpoint.ID)
	c.showWebhook(w, r, http.StatusCreated, created.Endpoint.ID, page{Done: "The endpoint is created. It receives what happens from now on."},
		func(d *webhookData) { d.Secret, d.SecretWhy = created.Secret, "created" })
}

// uuidPattern is the form of an endpoint's id.
var uuidPattern = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// endpointID is the endpoint a request names; what is not an endpoint id
// is answered as not found, as an unknown one is.
func endpointID(r *http.Request) (string, error) {
	id := r.PathValue("id")
	if !uuidPattern.MatchString(id) {
		return "", &domain.Error{Code: domain.CodeResourceNotFound, Message: "there is no webhook endpoint with this id"}
	}
	return strings.ToLower(id), nil
}

// loadWebhook reads an endpoint and one page of its attempts, newest first.
func (c *Console) loadWebhook(ctx context.Context, id, cursor string) (*webhookData, error) {
	e, err := c.opt.Webhooks.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	atts, next, err := c.opt.Webhooks.Attempts(ctx, id, cursor, attemptsPerPage)
	if err != nil {
		return nil, err
	}
	return &webhookData{E: e, Attempts: atts, Cursor: cursor, Next: next}, nil
}

func (c *Console) showWebhook(w http.ResponseWriter, r *http.Request, status int, id string, p page, adjust func(d *webhookData)) {
	c.showWebhookPage(w, r, status, id, "", p, adjust)
}

func (c *Console) showWebhookPage(w http.ResponseWriter, r *http.Request, status int, id, cursor string, p page, adjust func(d *webhookData)) {
	d, err := c.loadWebhook(r.Context(), id, cursor)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	if adjust != nil {
		adjust(d)
	}
	p.Title, p.Nav, p.Data = "Webhook endpoint "+d.E.URL, "webhooks", d
	if d.ConfirmDelete {
		p.Title = "Confirm deletion of webhook endpoint " + d.E.URL
	}
	c.render(w, r, status, "webhook.html", p)
}

// webhookDone says what the action named by a page's done parameter did.
var webhookDone = map[string]string{
	"paused":   "The endpoint is paused: deliveries stop; the feed waits for it.",
	"resumed":  "The endpoint is resumed: deliveries start again where its cursor is.",
	"replayed": "The endpoint's cursor moved: deliveries continue from there.",
}

func (c *Console) webhookPage(w http.ResponseWriter, r *http.Request) {
	id, err := endpointID(r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	cursor := r.URL.Query().Get("cursor")
	if len(cursor) > maxCursor || !utf8.ValidString(cursor) || strings.ContainsFunc(cursor, unicode.IsControl) {
		c.fail(w, r, badParams([]domain.FieldError{{Field: "cursor", Reason: "must be a cursor of this page"}}))
		return
	}
	c.showWebhookPage(w, r, http.StatusOK, id, cursor, page{Done: webhookDone[r.URL.Query().Get("done")]}, nil)
}

func webhookURL(id, done string) string {
	u := "/ops/webhooks/" + url.PathEscape(id)
	if done != "" {
		u += "?done=" + done
	}
	return u
}

// webhookActionFailed shows the endpoint again with what went wrong; an
// unknown endpoint, or an internal error, is an error page.
func (c *Console) webhookActionFailed(w http.ResponseWriter, r *http.Request, id, what string, err error, adjust func(d *webhookData)) {
	if !shownOnPage(err) {
		c.fail(w, r, err)
		return
	}
	c.log.WarnContext(r.Context(), "console action failed", "action", what, "endpoint", id, "error", err.Error())
	c.showWebhook(w, r, statusOf(err), id, page{Problem: what + " failed: " + problemText(err)}, adjust)
}

// shownOnPage reports whether err is shown on the page the action came
// from: a refusal of the request, not an unknown endpoint or an internal
// error (an error page).
func shownOnPage(err error) bool {
	status := statusOf(err)
	return status != http.StatusNotFound && (status < 500 || status == http.StatusBadGateway || status == http.StatusServiceUnavailable)
}

// problemText says a refusal in the page's words: the domain's message and
// every field it names (html/template escapes it).
func problemText(err error) string {
	var de *domain.Error
	if !errors.As(err, &de) {
		return err.Error()
	}
	s := de.Message
	if len(de.Fields) > 0 {
		s += " (" + fieldList(de.Fields) + ")"
	}
	return s
}

func (c *Console) pauseWebhook(paused bool) http.HandlerFunc {
	what, done := "Resume", "resumed"
	if paused {
		what, done = "Pause", "paused"
	}
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := endpointID(r)
		if err != nil {
			c.fail(w, r, err)
			return
		}
		if _, err := c.opt.Webhooks.Update(r.Context(), sessionOf(r).Actor, id, domain.EndpointPatch{Paused: &paused}); err != nil {
			c.webhookActionFailed(w, r, id, what, err, nil)
			return
		}
		c.log.InfoContext(r.Context(), "console "+done+" a webhook endpoint", "endpoint", id)
		http.Redirect(w, r, webhookURL(id, done), http.StatusSeeOther)
	}
}

// testWebhook sends one ping batch now and shows its attempt.
func (c *Console) testWebhook(w http.ResponseWriter, r *http.Request) {
	id, err := endpointID(r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	a, err := c.opt.Webhooks.Test(r.Context(), sessionOf(r).Actor, id)
	if err != nil {
		c.webhookActionFailed(w, r, id, "Test delivery", err, nil)
		return
	}
	c.log.InfoContext(r.Context(), "console tested a webhook endpoint", "endpoint", id, "status", a.Status)
	p := page{}
	if a.Accepted() {
		p.Done = fmt.Sprintf("Test delivery accepted: the receiver answered %d in %d ms.", a.Status, a.LatencyMS)
	} else {
		p.Problem = "Test delivery failed: " + attemptOutcome(a)
	}
	c.showWebhook(w, r, http.StatusOK, id, p, func(d *webhookData) { d.Tested = &a })
}

// attemptOutcome says how an attempt ended.
func attemptOutcome(a domain.Attempt) string {
	s := "no answer"
	if a.Status != 0 {
		s = fmt.Sprintf("the receiver answered %d", a.Status)
	}
	s += fmt.Sprintf(" after %d ms", a.LatencyMS)
	if a.Error != "" {
		s += ": " + a.Error
	}
	return s
}

// maxCursor bounds a feed or attempts cursor the console accepts.
const maxCursor = 512

// dateTimeLocal are the forms a datetime-local input sends.
var dateTimeLocal = []string{"2006-01-02T15:04", "2006-01-02T15:04:05", "2006-01-02T15:04:05.999999999"}

// replayTarget reads the replay form: exactly one of a feed cursor
// (after), the feed's beginning, an RFC3339 time (from) or a datetime-local
// time read as UTC (from_utc).
func replayTarget(form url.Values) (delivery.ReplayTarget, error) {
	after := strings.TrimSpace(form.Get("after"))
	from := strings.TrimSpace(form.Get("from"))
	fromUTC := strings.TrimSpace(form.Get("from_utc"))
	beginning := form.Get("beginning") == "yes"
	set := 0
	for _, b := range []bool{after != "", from != "", fromUTC != "", beginning} {
		if b {
			set++
		}
	}
	if set != 1 {
		return delivery.ReplayTarget{}, badParams([]domain.FieldError{{Field: "replay",
			Reason: "needs exactly one of a feed cursor, the feed's beginning, an RFC3339 time or a UTC date and time"}})
	}
	bad := func(field, reason string) (delivery.ReplayTarget, error) {
		return delivery.ReplayTarget{}, badParams([]domain.FieldError{{Field: field, Reason: reason}})
	}
	switch {
	case beginning:
		return delivery.ReplayTarget{}, nil
	case after != "":
		if len(after) > maxCursor || !utf8.ValidString(after) || strings.ContainsFunc(after, unicode.IsControl) {
			return bad("after", "must be a feed cursor this service issued")
		}
		return delivery.ReplayTarget{After: after}, nil
	case from != "":
		t, err := time.Parse(time.RFC3339, from)
		if err != nil {
			return bad("from", "must be an RFC3339 time such as 2026-01-02T15:04:05Z")
		}
		return delivery.ReplayTarget{From: t.UTC()}, nil
	}
	for _, layout := range dateTimeLocal {
		if t, err := time.ParseInLocation(layout, fromUTC, time.UTC); err == nil {
			return delivery.ReplayTarget{From: t}, nil
		}
	}
	return bad("from_utc", "must be a date and time (UTC) such as 2026-01-02T15:04:05")
}

// replayWebhook moves the endpoint's cursor, recorded with the operator.
func (c *Console) replayWebhook(w http.ResponseWriter, r *http.Request) {
	id, err := endpointID(r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	keep := func(d *webhookData) {
		d.ReplayAfter, d.ReplayFrom, d.ReplayFromUTC = r.PostForm.Get("after"), r.PostForm.Get("from"), r.PostForm.Get("from_utc")
	}
	t, err := replayTarget(r.PostForm)
	if err == nil {
		_, err = c.opt.Webhooks.Replay(r.Context(), sessionOf(r).Actor, id, t)
	}
	if err != nil {
		c.webhookActionFailed(w, r, id, "Replay", err, keep)
		return
	}
	c.log.InfoContext(r.Context(), "console replayed a webhook endpoint", "endpoint", id)
	http.Redirect(w, r, webhookURL(id, "replayed"), http.StatusSeeOther)
}

// rotateWebhook gives the endpoint a new secret and answers it, once.
func (c *Console) rotateWebhook(w http.ResponseWriter, r *http.Request) {
	id, err := endpointID(r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	created, err := c.opt.Webhooks.RotateSecret(r.Context(), sessionOf(r).Actor, id)
	if err != nil {
		c.webhookActionFailed(w, r, id, "Rotating the secret", err, nil)
		return
	}
	c.log.InfoContext(r.Context(), "console rotated a webhook endpoint's secret", "endpoint", id)
	c.showWebhook(w, r, http.StatusOK, id, page{Done: "The secret is rotated. The previous one keeps signing beside it for 24 hours."},
		func(d *webhookData) { d.Secret, d.SecretWhy = created.Secret, "rotated" })
}

// deleteWebhook asks for confirmation, then deletes the endpoint.
func (c *Console) deleteWebhook(w http.ResponseWriter, r *http.Request) {
	id, err := endpointID(r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	if r.PostForm.Get("confirm") != "yes" {
		c.showWebhook(w, r, http.StatusOK, id, page{}, func(d *webhookData) { d.ConfirmDelete = true })
		return
	}
	if err := c.opt.Webhooks.Delete(r.Context(), sessionOf(r).Actor, id); err != nil {
		c.webhookActionFailed(w, r, id, "Delete", err, nil)
		return
	}
	c.log.InfoContext(r.Context(), "console deleted a webhook endpoint", "endpoint", id)
	http.Redirect(w, r, "/ops/webhooks?done=deleted", http.StatusSeeOther)
}
