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
// WeChat reports. Errors: SIGN_ERROR for a bad signature, serial, clock or a
// probe; PARAM_ERROR for a malformed body or a notification for another
// merchant; UNKNOWN_EVENT_TYPE; UNAVAILABLE when the database cannot take
// it, in which case nothing was written and WeChat will retry.
func (s *Service) HandleNotification(ctx context.Context, header http.Header, body []byte) (NotificationResult, error) {
	n, err := s.parser.Parse(ctx, header, body)
	if err != nil && n != nil && errors.Is(err, wechatpay.ErrMalformed) {
		// Verified and decrypted, but its resource is no contract event
		// (out_contract_code missing, a time or id that does not parse):
		// it can never apply, so keep it rather than have WeChat retry it.
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
	key, err := s.route(ev)
	if err != nil {
		s.metrics.notifications.WithLabelValues("foreign").Inc()
		return NotificationResult{}, err
	}
	res := NotificationResult{NotificationID: n.ID, EventType: n.EventType, Key: key}
	ch := changeFromEvent(ev, domain.SourceNotification)
	ch.Details["notification_id"] = n.ID
	ch.Details["event_type"] = n.EventType

	var decided []domain.Record
	first, outcome, err := s.store.ReceiveNotification(ctx, store.Notification{NotificationID: n.ID, EventType: n.EventType,
		SubMchID: key.SubMchID, OutContractCode: key.OutContractCode, CreateTime: n.CreateTime, Resource: n.Plaintext},
		contractFromEvent(key, ev), func(c *domain.Contract) (string, error) {
			isNew := c.IsNew()
			d, err := c.Apply(ctx, ch, s.opt.Now())
			decided = c.Decided()
			if err != nil || !isNew {
				return d.Outcome.String(), err
			}
			return "created", nil
		})
	if err != nil {
		s.metrics.notifications.WithLabelValues("failed").Inc()
		return res, err
	}
	res.Outcome = outcome
	if !first {
		res.Duplicate, res.Outcome = true, "duplicate"
	}
	s.recordDecisions(ctx, decided)
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
// sub_mchid) keep the rule of pre-sign, and ids are of sane length.
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
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Field < out[j].Field })
	return out
}

// rejectNotification keeps a verified notification that breaks field rules
// in the inbox as 'rejected' with the reason, counts it, and acknowledges it
// (WeChat would otherwise retry it until it gives up; it can never apply).
// Its id is kept as sent when it is sane text, else replaced by a digest of
// the body, so that redeliveries still count on one row.
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
	if domain.CheckText(id) != "" || utf8.RuneCountInString(id) > maxNotifiedIDLength {
		sum := sha256.Sum256(body)
		id = "sha256:" + hex.EncodeToString(sum[:])
	}
	first, err := s.store.RejectNotification(ctx, store.Notification{NotificationID: id, EventType: n.EventType,
		CreateTime: n.CreateTime, Resource: n.Plaintext}, reason)
	if err != nil {
		s.metrics.notifications.WithLabelValues("failed").Inc()
		return NotificationResult{}, err
	}
	res := NotificationResult{NotificationID: id, EventType: n.EventType, Outcome: "rejected"}
	if !first {
		res.Duplicate, res.Outcome = true, "duplicate"
	}
	s.metrics.notifications.WithLabelValues(res.Outcome).Inc()
	s.log.WarnContext(ctx, "notification rejected", "notification_id", id, "event_type", n.EventType, "reason", reason)
	return res, nil
}

// route finds the key of the contract a notification is about, and refuses
// one addressed to another merchant.
func (s *Service) route(ev wechatpay.ContractEvent) (domain.Key, error) {
	key := domain.Key{OutContractCode: ev.OutContractCode}
	merchant := ev.MchID
	if s.opt.Mode == domain.ModeInstitutional {
		key.SubMchID = ev.SubMchID
		if key.SubMchID == "" {
			return key, domain.Errorf(domain.CodeParamError, "institutional notification without sub_mchid")
		}
		if ev.SpMchID != "" {
			merchant = ev.SpMchID
		}
	}
	if merchant != "" && merchant != s.opt.MchID {
		return key, domain.Errorf(domain.CodeParamError, "notification for merchant %s, not this one", merchant)
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
