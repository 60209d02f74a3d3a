package delivery

import "github.com/prometheus/client_golang/prometheus"

// metrics are the delivery's Prometheus series.
type metrics struct {
	// attempts counts attempts by kind (events, ping) and outcome:
	// accepted (2xx), refused (another status), unanswered (no answer:
	// refused connection, timeout).
	attempts *prometheus.CounterVec
	// latency is how long attempts took, answered or not.
	latency *prometheus.HistogramVec
	// lagEvents and lagSeconds are each endpoint's lag, set by the
	// replica delivering it.
	lagEvents, lagSeconds *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "contractd_webhook_deliveries_total",
			Help: "Webhook delivery attempts, by kind (events, ping) and outcome (accepted, refused, unanswered)."}, []string{"kind", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "contractd_webhook_attempt_duration_seconds",
			Help:    "How long webhook delivery attempts took, by outcome.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}}, []string{"outcome"}),
		lagEvents: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "contractd_webhook_lag_events",
			Help: "Feed rows an endpoint has yet to receive (capped at 1,000,000), set by the replica delivering it."}, []string{"endpoint"}),
		lagSeconds: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "contractd_webhook_lag_seconds",
			Help: "Age of the oldest feed row an endpoint has yet to receive, set by the replica delivering it."}, []string{"endpoint"}),
	}
	if reg != nil {
		reg.MustRegister(m.attempts, m.latency, m.lagEvents, m.lagSeconds)
	}
	return m
}

// forget drops an endpoint's lag series once this replica no longer
// delivers it.
func (m *metrics) forget(id string) {
	m.lagEvents.DeleteLabelValues(id)
	m.lagSeconds.DeleteLabelValues(id)
}
