package lifecycle

import (
	"errors"

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

func (m *metrics) decidedAll(rs []domain.Record) {
	for _, r := range rs {
		m.transitions.WithLabelValues(string(r.Change.Event), string(r.Change.Source), r.Decision.Outcome.String()).Inc()
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
