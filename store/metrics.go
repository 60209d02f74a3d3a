package store

import (
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// PoolCollector exports the connection pool's state as Prometheus metrics
// (contractd_db_pool_*): its configured size, the connections open, in use
// and idle, how often requests waited for a connection and the time acquiring took,
// which is what to watch when choosing CONTRACTD_DB_MAX_CONNS.
func PoolCollector(pool *pgxpool.Pool) prometheus.Collector {
	return poolCollector{pool: pool}
}

type poolCollector struct{ pool *pgxpool.Pool }

var (
	poolMaxDesc      = prometheus.NewDesc("contractd_db_pool_max_conns", "The pool's configured size (CONTRACTD_DB_MAX_CONNS).", nil, nil)
	poolTotalDesc    = prometheus.NewDesc("contractd_db_pool_conns", "Connections open, by whether a request holds them.", []string{"state"}, nil)
	poolAcquireDesc  = prometheus.NewDesc("contractd_db_pool_acquires_total", "Connections handed to requests.", nil, nil)
	poolWaitDesc     = prometheus.NewDesc("contractd_db_pool_waits_total", "Acquires that had to wait for a connection.", nil, nil)
	poolWaitTimeDesc = prometheus.NewDesc("contractd_db_pool_acquire_seconds_total", "Time requests spent acquiring connections, waits included.", nil, nil)
)

func (poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{poolMaxDesc, poolTotalDesc, poolAcquireDesc, poolWaitDesc, poolWaitTimeDesc} {
		ch <- d
	}
}

func (p poolCollector) Collect(ch chan<- prometheus.Metric) {
	st := p.pool.Stat()
	ch <- prometheus.MustNewConstMetric(poolMaxDesc, prometheus.GaugeValue, float64(st.MaxConns()))
	ch <- prometheus.MustNewConstMetric(poolTotalDesc, prometheus.GaugeValue, float64(st.AcquiredConns()), "acquired")
	ch <- prometheus.MustNewConstMetric(poolTotalDesc, prometheus.GaugeValue, float64(st.IdleConns()), "idle")
	ch <- prometheus.MustNewConstMetric(poolAcquireDesc, prometheus.CounterValue, float64(st.AcquireCount()))
	ch <- prometheus.MustNewConstMetric(poolWaitDesc, prometheus.CounterValue, float64(st.EmptyAcquireCount()))
	ch <- prometheus.MustNewConstMetric(poolWaitTimeDesc, prometheus.CounterValue, st.AcquireDuration().Seconds())
}
