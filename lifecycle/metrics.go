package lifecycle

import (
	"context"
	"errors"
	"log/slog"

	"github.com/contractd/contractd/domain"
	"github.com/contractd/contractd/wechatpay"
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	transitions   *prometheus.CounterVec
	notifications *prometheus.CounterVec
	wechatCalls   *prometheus.CounterVec
	swept         prometheus.Counter
	// reconcileSkipped counts contracts reconciliation could not ask WeChat
	// about, by the identifier they lack.
	reconcileSkipped *prometheus.CounterVec
	waits            *prometheus.CounterVec
	panics           *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, panics *prometheus.CounterVec) *metrics {
	m := &metrics{
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "contractd_transitions_total",
			Help: "Lifecycle events decided, by event, source and outcome."}, []string{"event", "source", "outcome"}),
		notifications: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "contractd_notifications_total",
			Help: "WeChat notifications received, by result."}, []string{"result"}),
		wechatCalls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "contractd_wechat_calls_total",
			Help: "Calls to WeChat Pay, by operation and result code."}, []string{"op", "result"}),
		swept: prometheus.NewCounter(prometheus.CounterOpts{Name: "contractd_sessions_expired_total",
			Help: "Sessions the sweeper marked expired."}),
		reconcileSkipped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "contractd_reconcile_skipped_total",
			Help: "Contracts reconciliation could not ask WeChat about, by the identifier they lack."}, []string{"missing"}),
		waits: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "contractd_lease_waits_total",
			Help: "Callers that found another caller's WeChat call under way for the same contract, by flow and how the wait ended."}, []string{"flow", "result"}),
		panics: panics,
	}
	collectors := []prometheus.Collector{m.transitions, m.notifications, m.wechatCalls, m.swept, m.reconcileSkipped, m.waits}
	if m.panics == nil {
		m.panics = NewPanicCounter()
		collectors = append(collectors, m.panics)
	}
	if reg != nil {
		reg.MustRegister(collectors...)
	}
	return m
}

// recordDecisions counts and logs decisions the store has persisted. The
// metrics labels and the log line take the source from the change as the
// domain recorded it (after attribution), the same value as the history
// row, so the three always agree on who drove a transition. Applied and
// ignored events are logged at info, repeats (which write no history) at
// debug.
func (s *Service) recordDecisions(ctx context.Context, rs []domain.Record) {
	for _, r := range rs {
		outcome := r.Decision.Outcome.String()
		s.metrics.transitions.WithLabelValues(string(r.Change.Event), string(r.Change.Source), outcome).Inc()
		level := slog.LevelInfo
		if r.Decision.Outcome == domain.OutcomeRepeat {
			level = slog.LevelDebug
		}
		attrs := []slog.Attr{slog.String("contract", r.Key.String()), slog.String("event", string(r.Change.Event)),
			slog.String("source", string(r.Change.Source)), slog.String("outcome", outcome),
			slog.String("from", string(r.Decision.From)), slog.String("to", string(r.Decision.To))}
		if by, ok := r.Change.Details["reported_by"].(string); ok {
			attrs = append(attrs, slog.String("reported_by", by))
		}
		s.log.LogAttrs(ctx, level, "contract transition", attrs...)
	}
}

func (m *metrics) called(op string, err error) {
	result := "ok"
	var ae *wechatpay.APIError
	if err != nil {
		result = "error"
		if errors.As(err, &ae) {
			result = ae.Code
		}
	}
	m.wechatCalls.WithLabelValues(op, result).Inc()
}
