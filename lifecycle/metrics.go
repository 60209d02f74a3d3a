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
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "contractd_transitions_total",
			Help: "Lifecycle events decided, by event, source and outcome."}, []string{"event", "source", "outcome"}),
		notifications: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "contractd_notifications_total",
			Help: "WeChat notifications received, by result."}, []string{"result"}),
		wechatCalls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "contractd_wechat_calls_total",
			Help: "Calls to WeChat Pay, by operation and result code."}, []string{"op", "result"}),
		swept: prometheus.NewCounter(prometheus.CounterOpts{Name: "contractd_sessions_expired_total",
			Help: "Sessions the sweeper marked expired."}),
	}
	if reg != nil {
		reg.MustRegister(m.transitions, m.notifications, m.wechatCalls, m.swept)
	}
	return m
}

func (m *metrics) decided(ch domain.Change, d domain.Decision) {
	m.transitions.WithLabelValues(string(ch.Event), string(ch.Source), d.Outcome.String()).Inc()
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
