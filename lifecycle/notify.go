package lifecycle

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/contractd/contractd/domain"
	"github.com/contractd/contractd/store"
	"github.com/contractd/contractd/wechatpay"
)

// NotificationResult says what a notification came to.
type NotificationResult struct {
	NotificationID string
	EventType      string
	Key            domain.Key
	// Duplicate is true when the inbox already held this notification id:
	// it was counted and acknowledged, not applied again.
	Duplicate bool
	Outcome   string
}

// HandleNotification verifies and decrypts one notification exactly as
// received, then in ONE transaction records it in the inbox and applies its
// event. A duplicate (same notification id) is counted and acknowledged
// without being applied. A contract we never stored is created in the state
// WeChat reports. A verified notification that can never apply (a
// malformed envelope or resource, content breaking the field rules, another
// merchant's) is kept as rejected and acknowledged (rejectNotification).
// Errors: SIGN_ERROR for a bad signature, serial, clock or a probe;
// PARAM_ERROR for a resource that does not decrypt (a wrong APIv3 key is
// ours to fix, so WeChat's retries are wanted); UNKNOWN_EVENT_TYPE;
// UNAVAILABLE when the database cannot take it, in which case nothing was
// written and WeChat will retry.
func (s *Service) HandleNotification(ctx context.Context, header http.Header, body []byte) (NotificationResult, error) {
	n, err := s.parser.Parse(ctx, header, body)
	if err != nil && n != nil && errors.Is(err, wechatpay.ErrMalformed) {
		// Verified, so WeChat sent it, but it can never apply: keep it
		// rather than have WeChat retry it for a day.
		if n.Plaintext == nil {
			// The envelope is malformed (not JSON, no resource, a nonce
			// that cannot decrypt): nothing was decrypted.
			why := strings.TrimPrefix(strings.TrimPrefix(err.Error(), wechatpay.ErrMalformed.Error()+": "), "envelope ")
			return s.rejectNotification(ctx, n, body, []domain.FieldError{{Field: "envelope", Reason: why}})
		}
		// Decrypted, but its resource is no contract event
		// (out_contract_code missing, a time or id that does not parse).
		return s.rejectNotification(ctx, n, body, []domain.FieldError{{Field: "resource", Reason: err.Error()}})
	}
	if err != nil {
		s.metrics.notifications.WithLabelValues(rejection(err)).Inc()
		return NotificationResult{}, notificationError(err)
	}
	ev := n.Contract
	if problems := notificationProblems(n, s.opt.Mode); len(problems) > 0 {
		return s.rejectNotification(ctx, n, body, problems)
	}
	key, problem := s.route(ev)
	if problem != nil {
		// For another merchant, or without the sub-merchant an
		// institutional notification needs: it can never apply here.
		return s.rejectNotification(ctx, n, body, []domain.FieldError{*problem})
	}
	res := NotificationResult{NotificationID: n.ID, EventType: n.EventType, Key: key}
	ch := changeFromEvent(ev, domain.SourceNotification)
	ch.Details["notification_id"] = n.ID
	ch.Details["event_type"] = n.EventType

	got, err := s.store.ReceiveNotification(ctx, store.Notification{NotificationID: n.ID, EventType: n.EventType,
		SubMchID: key.SubMchID, OutContractCode: key.OutContractCode, CreateTime: n.CreateTime, Resource: n.Plaintext},
		contractFromEvent(key, ev), func(c *domain.Contract) (string, error) {
			isNew := c.IsNew()
			d, err := c.Apply(ctx, ch, s.opt.Now())
			if err != nil || !isNew {
				return d.Outcome.String(), err
			}
			return "created", nil
		})
	if err != nil {
		s.metrics.notifications.WithLabelValues("failed").Inc()
		return res, err
	}
	res.Outcome = got.Outcome
	if !got.First {
		res.Duplicate, res.Outcome = true, "duplicate"
	}
	s.recordDecisions(ctx, got.Decided)
	s.metrics.notifications.WithLabelValues(res.Outcome).Inc()
	return res, nil
}

// Bounds on fields of a notification that have no rule of their own in
// domain.
const (
	maxNotifiedIDLength     = 64 // notification id, contract_id
	maxNotifiedOpenIDLength = 128
)

// notificationProblems applies the field rules the API applies to a
// verified, decrypted notification: every string of the resource is text
// Postgres can take (no NUL, unpaired surrogate or invalid UTF-8, nothing
// over domain.MaxTextLength, no repeated key), out_contract_code (and
// sub_mchid) keep the rule of pre-sign, openids are visible ASCII as
// pre-sign requires, and ids are of sane length.
func notificationProblems(n *wechatpay.Notification, mode domain.Mode) []domain.FieldError {
	var out []domain.FieldError
	add := func(field, reason string) { out = append(out, domain.FieldError{Field: field, Reason: reason}) }
	if why := domain.CheckText(n.ID); why != "" {
		add("id", why)
	} else if utf8.RuneCountInString(n.ID) > maxNotifiedIDLength {
		add("id", fmt.Sprintf("must be at most %d characters", maxNotifiedIDLength))
	}
	for _, f := range domain.CheckJSONText(n.Plaintext) {
		add("resource."+f.Field, f.Reason)
	}
	ev := n.Contract
	if why := domain.CheckCode(ev.OutContractCode); why != "" {
		add("resource.out_contract_code", why)
	}
	if mode == domain.ModeInstitutional && ev.SubMchID != "" {
		if why := domain.CheckCode(ev.SubMchID); why != "" {
			add("resource.sub_mchid", why)
		}
	}
	if utf8.RuneCountInString(ev.ContractID) > maxNotifiedIDLength {
		add("resource.contract_id", fmt.Sprintf("must be at most %d characters", maxNotifiedIDLength))
	}
	for name, v := range map[string]string{"openid": ev.OpenID, "sp_openid": ev.SpOpenID, "sub_openid": ev.SubOpenID} {
		if utf8.RuneCountInString(v) > maxNotifiedOpenIDLength {
			add("resource."+name, fmt.Sprintf("must be at most %d characters", maxNotifiedOpenIDLength))
		} else if why := domain.CheckOpenID(v); why != "" && domain.CheckText(v) == "" {
			add("resource."+name, why)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Field < out[j].Field })
	return out
}

// rejectNotification keeps a verified notification that can never apply
// (it breaks field rules, is for another merchant, or its envelope is
// malformed) in the inbox as 'rejected' with the reason, counts it, and
// acknowledges it (WeChat would otherwise retry it until it gives up). Its
// id is kept as sent when it is sane text, else replaced by "sha256:" and
// the hex digest of the body, so that redeliveries still count on one row.
// What was received is kept: the decrypted resource, or the body itself
// when nothing could be decrypted.
func (s *Service) rejectNotification(ctx context.Context, n *wechatpay.Notification, body []byte, problems []domain.FieldError) (NotificationResult, error) {
	parts := make([]string, len(problems))
	for i, p := range problems {
		parts[i] = p.Field + " " + p.Reason
	}
	// The reason quotes the broken input (field names, WeChat's text): keep
	// it text Postgres takes, and short.
	reason := strings.ToValidUTF8(strings.ReplaceAll(strings.Join(parts, "; "), "\x00", `\u0000`), "\uFFFD")
	if len(reason) > 1024 {
		reason = strings.ToValidUTF8(reason[:1024], "") + "…"
	}
	id := n.ID
	if strings.TrimSpace(id) == "" || domain.CheckText(id) != "" || utf8.RuneCountInString(id) > maxNotifiedIDLength {
		sum := sha256.Sum256(body)
		id = "sha256:" + hex.EncodeToString(sum[:])
	}
	received := []byte(n.Plaintext)
	if received == nil {
		received = body
	}
	eventType := n.EventType
	if domain.CheckText(eventType) != "" || utf8.RuneCountInString(eventType) > maxNotifiedIDLength {
		eventType = ""
	}
	first, err := s.store.RejectNotification(ctx, store.Notification{NotificationID: id, EventType: eventType,
		CreateTime: n.CreateTime, Resource: received}, reason)
	if err != nil {
		s.metrics.notifications.WithLabelValues("failed").Inc()
		return NotificationResult{}, err
	}
	res := NotificationResult{NotificationID: id, EventType: eventType, Outcome: "rejected"}
	if !first {
		res.Duplicate, res.Outcome = true, "duplicate"
	}
	s.metrics.notifications.WithLabelValues(res.Outcome).Inc()
	s.log.WarnContext(ctx, "notification rejected", "notification_id", id, "event_type", eventType, "reason", reason)
	return res, nil
}

// route finds the key of the contract a notification is about, or says why
// it belongs to no contract of ours: it is addressed to another merchant,
// or, in institutional mode, names no sub-merchant.
func (s *Service) route(ev wechatpay.ContractEvent) (domain.Key, *domain.FieldError) {
	key := domain.Key{OutContractCode: ev.OutContractCode}
	merchant, field := ev.MchID, "resource.mchid"
	if s.opt.Mode == domain.ModeInstitutional {
		key.SubMchID = ev.SubMchID
		if key.SubMchID == "" {
			return key, &domain.FieldError{Field: "resource.sub_mchid", Reason: "is required in institutional mode"}
		}
		if ev.SpMchID != "" {
			merchant, field = ev.SpMchID, "resource.sp_mchid"
		}
	}
	if merchant != "" && merchant != s.opt.MchID {
		return key, &domain.FieldError{Field: field, Reason: fmt.Sprintf("names merchant %s, not this one (%s)", merchant, s.opt.MchID)}
	}
	return key, nil
}

// changeFromEvent turns WeChat's report into a lifecycle change.
func changeFromEvent(ev wechatpay.ContractEvent, src domain.Source) domain.Change {
	ch := domain.Change{Source: src, OccurredAt: ev.OperateTime, ContractID: ev.ContractID,
		OpenID: firstOf(ev.OpenID, ev.SpOpenID, ev.SubOpenID), TerminationMode: ev.TerminationMode,
		Details: map[string]any{"contract_id": ev.ContractID}}
	if !ev.OperateTime.IsZero() {
		ch.Details["operate_time"] = ev.OperateTime.UTC().Format(time.RFC3339)
	}
	ch.Event = domain.EventSign
	if ev.Kind == wechatpay.EventTerminate {
		ch.Event = domain.EventTerminate
		ch.Details["termination_mode"] = ev.TerminationMode
		if ev.TerminationNote != "" {
			ch.Details["termination_note"] = ev.TerminationNote
		}
	}
	if ev.ContractState != "" {
		ch.Details["contract_state"] = ev.ContractState
	}
	return ch
}

// contractFromEvent is the contract WeChat reports that we never stored.
func contractFromEvent(key domain.Key, ev wechatpay.ContractEvent) domain.Contract {
	c := domain.Contract{SubMchID: key.SubMchID, OutContractCode: key.OutContractCode, State: domain.StateCreated}
	if ev.Family == wechatpay.FamilyDomestic {
		c.Product, c.Channel = domain.ProductPasswordExempt, domain.ChannelMiniProgram
		if ev.ServiceID != 0 {
			id := ev.ServiceID
			c.ServiceID = &id
		}
	} else {
		c.Product = domain.ProductPapay
		if ev.PlanID != 0 {
			id := ev.PlanID
			c.PlanID = &id
		}
	}
	return c
}

func firstOf(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// notificationError maps the parser's sentinels to domain codes.
func notificationError(err error) error {
	code := domain.CodeParamError
	switch {
	case errors.Is(err, wechatpay.ErrProbeSignature), errors.Is(err, wechatpay.ErrStaleTimestamp),
		errors.Is(err, wechatpay.ErrUnknownSerial), errors.Is(err, wechatpay.ErrBadSignature),
		errors.Is(err, wechatpay.ErrMissingHeaders):
		code = domain.CodeSignError
	case errors.Is(err, wechatpay.ErrUnknownEventType):
		code = domain.CodeUnknownEventType
	}
	return &domain.Error{Code: code, Message: err.Error(), Err: err}
}

// rejection labels a parse failure for metrics.
func rejection(err error) string {
	for _, e := range []struct {
		err   error
		label string
	}{
		{wechatpay.ErrProbeSignature, "probe"}, {wechatpay.ErrStaleTimestamp, "stale"},
		{wechatpay.ErrUnknownSerial, "unknown_serial"}, {wechatpay.ErrBadSignature, "bad_signature"},
		{wechatpay.ErrMissingHeaders, "missing_headers"}, {wechatpay.ErrDecrypt, "decrypt"},
		{wechatpay.ErrUnknownEventType, "unknown_event"}, {wechatpay.ErrMalformed, "malformed"},
	} {
		if errors.Is(err, e.err) {
			return e.label
		}
	}
	return "other"
}
